import { writeFileSync } from 'node:fs';
import { Supervisor } from '../supervisor/supervisor.js';
import type { TaskResult, TaskSpec } from '../supervisor/types.js';
import { normalizeSignal, signalNumber } from '../signal/signals.js';
import { readFileSync } from 'node:fs';
import { WardenError } from '../errors.js';
import { makeNonDumpable } from '../process/hardening.js';
import type { ControlPlaneOptions } from '../supervisor/supervisor.js';
import { parseFlags, UsageError } from './args.js';

export const RUN_USAGE = `warden run [options] -- <command> [args...]
  --timeout-ms N        end the whole task tree after N ms (exit status 124)
  --grace-ms N          graceful signal -> SIGKILL delay (default 5000)
  --drain-ms N          post-exit pipe drain bound (default 2000)
  --kill-signal SIG     graceful signal (default SIGTERM)
  --no-isolate          stay in warden's process group
  --containment C       auto (default: cgroup, else subreaper, else group), subreaper or group
  --log-file PATH       append the task's JSON-lines log there
  --result-file PATH    write the final result as JSON
  --control-plane URL --ti ID     start, heartbeat and report state to a control plane at URL
                        (token from WARDEN_TOKEN, never passed to the task)
  --token-file PATH     read the token from a file instead of WARDEN_TOKEN
  --heartbeat-interval-ms N       (default 5000)
  --max-failed-heartbeats N       (default 3)
  --request-timeout-ms N          per control-plane request (default 5000)
  --stdin               give the task warden's stdin (default: /dev/null)
  --pty                 run the task in a terminal of its own (the size of warden's, or 80x24):
                        warden's stdin is typed into it (raw when warden's is a terminal, so
                        Ctrl-C reaches the task), its output is warden's stdout, resizes follow`;

const FLAGS = {
  'timeout-ms': { type: 'int' },
  'grace-ms': { type: 'int' },
  'drain-ms': { type: 'int' },
  'kill-signal': { type: 'string' },
  isolate: { type: 'bool' },
  'result-file': { type: 'string' },
  'log-file': { type: 'string' },
  'control-plane': { type: 'string' },
  ti: { type: 'string' },
  'token-file': { type: 'string' },
  'heartbeat-interval-ms': { type: 'int', min: 1 },
  'max-failed-heartbeats': { type: 'int', min: 1 },
  'request-timeout-ms': { type: 'int', min: 1 },
  stdin: { type: 'bool' },
  pty: { type: 'bool' },
  containment: { type: 'string' },
} as const;

const CONTAINMENTS = ['auto', 'subreaper', 'group'] as const;

/** Exit status of `warden run` for a result (DESIGN 8). */
export function runExitStatus(result: TaskResult, stoppedBy: NodeJS.Signals | undefined): number {
  if (stoppedBy) return 128 + (signalNumber(stoppedBy) ?? 0);
  if (result.error?.code === 'ERR_START_REFUSED') return 1;
  switch (result.reason) {
    case 'timeout':
      return 124;
    case 'server-terminated':
    case 'heartbeat-lost':
    case 'overtime':
      return 125;
    default:
      return result.status ?? 1;
  }
}

/** `warden run`: resolves with the exit status; never calls process.exit. */
export async function runCommand(argv: readonly string[]): Promise<number> {
  const { flags, rest } = parseFlags(argv, FLAGS);
  if (rest.length === 0) throw new UsageError(`warden run needs a command after its options.\n${RUN_USAGE}`);
  const containment = flags.containment === undefined ? 'auto' : String(flags.containment);
  if (!(CONTAINMENTS as readonly string[]).includes(containment)) {
    throw new UsageError(`--containment: '${containment}' is not one of ${CONTAINMENTS.join(', ')}.`);
  }
  if (flags['kill-signal'] !== undefined && !normalizeSignal(String(flags['kill-signal']))) {
    throw new UsageError(`--kill-signal: unknown signal '${flags['kill-signal']}'. Use a name such as SIGTERM or SIGINT.`);
  }
  const spec: TaskSpec = {
    command: rest[0]!,
    args: rest.slice(1),
    stdout: process.stdout,
    stderr: process.stderr,
    isolate: flags.isolate !== false,
    stdin: flags.stdin === true,
  };
  if (flags['timeout-ms'] !== undefined) spec.timeoutMs = flags['timeout-ms'] as number;
  if (flags['grace-ms'] !== undefined) spec.graceMs = flags['grace-ms'] as number;
  if (flags['drain-ms'] !== undefined) spec.drainMs = flags['drain-ms'] as number;
  if (flags['kill-signal'] !== undefined) spec.killSignal = normalizeSignal(String(flags['kill-signal']))!;
  if (flags.pty === true) {
    spec.pty = process.stdout.isTTY && process.stdout.columns && process.stdout.rows ? { cols: process.stdout.columns, rows: process.stdout.rows } : true;
  }

  // A reader that went away (`warden run ... | head`) must not crash warden: the task goes on.
  const ignore = (): void => {};
  process.stdout.on('error', ignore);
  process.stderr.on('error', ignore);
  if (typeof flags['log-file'] === 'string') spec.logFile = flags['log-file'];
  const controlPlane = controlPlaneFromFlags(flags);
  if (controlPlane) spec.ti = { id: String(flags.ti) };
  // A token in warden's environment (or read from a file into its memory) must stay out of the
  // task's reach: /proc/<warden>/environ and /proc/<warden>/mem are readable by the same user
  // unless warden is non-dumpable.
  const holdsToken = controlPlane !== undefined || process.env.WARDEN_TOKEN !== undefined;
  if (holdsToken) {
    try {
      makeNonDumpable();
    } catch (err) {
      process.stderr.write(`warden: warning: tasks running as this user can read the token from warden's memory: ${(err as Error).message}\n`);
    }
  }
  let supervisor: Supervisor;
  try {
    supervisor = new Supervisor({ containment: containment as (typeof CONTAINMENTS)[number], ...(controlPlane ? { controlPlane } : {}) });
  } catch (err) {
    if (err instanceof WardenError && err.code === 'ERR_UNSUPPORTED') throw new UsageError(`--containment ${containment}: ${err.message}`);
    throw err;
  }
  let stoppedBy: NodeJS.Signals | undefined;
  let task;
  try {
    task = supervisor.start(spec);
  } catch (err) {
    await supervisor.close();
    if (err instanceof WardenError && err.code === 'ERR_LOG_FILE') throw new UsageError(err.message);
    throw err;
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stoppedBy) {
      // A second Ctrl-C: no more patience for the graceful step.
      task.hurry();
      return;
    }
    stoppedBy = sig;
    process.stderr.write(`warden: ${sig}: ending the task's whole tree (again to skip the grace period)\n`);
    task.terminate('supervisor-stop');
  };
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let stdinPump: ((chunk: Buffer) => void) | undefined;
  const stdinEnd = (): void => task.end();
  const stdinResume = (): void => {
    process.stdin.resume();
  };
  // pty mode: keystrokes go to the task's terminal as they are typed (raw: its line discipline,
  // not ours, turns Ctrl-C into SIGINT for the task), and its size follows ours.
  const raw = spec.pty !== undefined && spec.pty !== false && process.stdin.isTTY === true;
  if (raw) process.stdin.setRawMode(true);
  const onResize = (): void => {
    if (process.stdout.columns && process.stdout.rows) task.resize(process.stdout.columns, process.stdout.rows);
  };
  if (spec.pty && process.stdout.isTTY) process.stdout.on('resize', onResize);
  if (spec.stdin || spec.pty) {
    // Backpressure: stop reading our stdin while the task's is full.
    stdinPump = (chunk) => {
      if (!task.write(chunk)) {
        process.stdin.pause();
        task.once('drain', stdinResume);
      }
    };
    process.stdin.on('data', stdinPump);
    process.stdin.once('end', stdinEnd);
  }
  try {
    const result = await task.result;
    await supervisor.close();
    if (typeof flags['result-file'] === 'string') writeFileSync(flags['result-file'], `${JSON.stringify(publicResult(result), null, 2)}\n`);
    if (result.error) process.stderr.write(`warden: ${result.error.message}\n`);
    for (const message of result.logErrors ?? []) process.stderr.write(`warden: the task log failed after start (the task went on): ${message}\n`);
    return runExitStatus(result, stoppedBy);
  } finally {
    for (const s of signals) process.removeListener(s, onSignal);
    process.stdout.removeListener('resize', onResize);
    if (raw) process.stdin.setRawMode(false);
    if (stdinPump) {
      process.stdin.removeListener('data', stdinPump);
      process.stdin.removeListener('end', stdinEnd);
      task.removeListener('drain', stdinResume);
      process.stdin.pause();
      process.stdin.unref?.();
    }
    process.stdout.removeListener('error', ignore);
    process.stderr.removeListener('error', ignore);
  }
}

/** The result as the result file shows it (DESIGN 8), with the teardown details kept. */
export function publicResult(r: TaskResult): Record<string, unknown> {
  return {
    state: r.state,
    exitCode: r.exitCode,
    signal: r.signal,
    reason: r.reason,
    durationMs: r.durationMs,
    signalled: r.signalled,
    escapees: r.escapees,
    survivors: r.survivors,
    pipesForceClosed: r.pipesForceClosed,
    status: r.status,
    taskId: r.taskId,
    pid: r.pid,
    containment: r.containment,
    error: r.error,
    logErrors: r.logErrors ?? [],
    teardown: r.teardown,
  };
}

function controlPlaneFromFlags(flags: Record<string, string | number | boolean>): ControlPlaneOptions | undefined {
  const url = flags['control-plane'];
  const ti = flags.ti;
  if (url === undefined && ti === undefined) {
    for (const f of ['token-file', 'heartbeat-interval-ms', 'max-failed-heartbeats', 'request-timeout-ms']) {
      if (flags[f] !== undefined) throw new UsageError(`--${f} needs --control-plane URL and --ti ID.`);
    }
    return undefined;
  }
  if (typeof url !== 'string' || typeof ti !== 'string') throw new UsageError('--control-plane URL and --ti ID go together.');
  let token: string | undefined;
  if (typeof flags['token-file'] === 'string') {
    try {
      token = readFileSync(flags['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file ${flags['token-file']}: cannot read it (${(err as Error).message}).`);
    }
  } else token = process.env.WARDEN_TOKEN;
  if (!token) throw new UsageError('the control-plane token is missing: set WARDEN_TOKEN or pass --token-file PATH.');
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--control-plane must be an absolute http(s) URL, got '${url}'.`);
  }
  const cp: ControlPlaneOptions = { url, token };
  if (flags['heartbeat-interval-ms'] !== undefined) cp.heartbeatIntervalMs = flags['heartbeat-interval-ms'] as number;
  if (flags['max-failed-heartbeats'] !== undefined) cp.maxFailedHeartbeats = flags['max-failed-heartbeats'] as number;
  if (flags['request-timeout-ms'] !== undefined) cp.requestTimeoutMs = flags['request-timeout-ms'] as number;
  return cp;
}
