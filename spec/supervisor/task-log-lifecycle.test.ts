/**
 * Issue 5 through a real Supervisor: the log file's life (opened at start or refused, failing
 * later, closed after the last record), secrets masked across writes, and warden's own records
 * (signals, escapees, exit diagnostics, forced pipes) in the same log.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import type { LogRecord } from '../../lib/logs/records.js';
import type { WardenRecord } from '../../lib/supervisor/task.js';
import { guardLeaks, liveWithToken, TOKEN_NAME, until } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { waitFor, withSupervisor } from '../helpers/tasks.js';

const { env, token } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-task-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const newLog = (): string => join(dir, `task-${++seq}.jsonl`);

function readLog(path: string): LogRecord[] {
  return readFileSync(path, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as LogRecord);
}

/** This process's file descriptors that point at `path`. */
function fdsTo(path: string): string[] {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false; // closed meanwhile (the directory's own fd)
    }
  });
}

/** Pids of this process's children, from every thread's /proc children list. */
function childPids(): number[] {
  return readdirSync('/proc/self/task')
    .flatMap((tid) => readFileSync(`/proc/self/task/${tid}/children`, 'latin1').trim().split(/\s+/))
    .filter((p) => p !== '')
    .map(Number)
    .sort((a, b) => a - b);
}

function steps(...list: object[]): { command: string; args: string[] } {
  return { command: process.execPath, args: [fixture('write-fds.mjs'), JSON.stringify(list)] };
}

const wardenEvents = (records: LogRecord[]): string[] => records.filter((r) => r.logger === 'warden' && r.level !== 'debug').map((r) => r.event);

describe('the log file at start', () => {
  it.each([
    ['in a directory that does not exist', (): string => join(dir, 'no-such-dir', 'task.jsonl')],
    ['that is a directory', (): string => dir],
  ])('a log file %s: start() throws ERR_LOG_FILE naming the path, and no process is started', async (_what, pathOf) => {
    await withSupervisor({}, async (sup) => {
      const path = pathOf();
      const marker = join(dir, `started-${++seq}`);
      const before = childPids();
      let thrown: unknown;
      try {
        sup.start({ command: 'touch', args: [marker], env: env(), logFile: path });
      } catch (err) {
        thrown = err;
      }
      // Checked before any await: a child forked by start() would be listed until it is reaped.
      expect(childPids()).toEqual(before);
      expect(thrown).toBeInstanceOf(WardenError);
      expect((thrown as WardenError).code).toBe('ERR_LOG_FILE');
      expect((thrown as WardenError).message).toContain(path);
      expect(sup.tasks.size).toBe(0);
      expect(sup.reactor.taskCount).toBe(0);
      // The supervisor is not wedged: the same command with a good log file runs.
      expect((await sup.run({ command: 'touch', args: [`${marker}-later`], env: env(), logFile: newLog() })).state).toBe('success');
      expect(existsSync(`${marker}-later`)).toBe(true);
      expect(existsSync(marker)).toBe(false);
    });
  });
});

describe('a log file that fails after start', () => {
  it('ENOSPC on every write (/dev/full): one clear error in logErrors and a warden record; the task ends with its own state; records still emitted', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'seq 1 20000; echo on stderr >&2; exit 0'], env: env(), logFile: '/dev/full' });
      const logged: LogRecord[] = [];
      const wardens: WardenRecord[] = [];
      task.on('log', (r) => logged.push(r));
      task.on('record', (r) => wardens.push(r));
      const result = await task.result;
      expect(result).toMatchObject({ state: 'success', reason: 'exited', status: 0, error: null, pipesForceClosed: false });
      expect(result.logErrors).toHaveLength(1);
      expect(result.logErrors![0]).toMatch(/^writing the task log file \/dev\/full failed: ENOSPC: no space left on device/);
      expect(result.logErrors![0]).toMatch(/the task goes on/);
      const fileErrors = wardens.filter((r) => r.code === 'ERR_LOG_FILE');
      expect(fileErrors).toHaveLength(1);
      expect(fileErrors[0]).toMatchObject({ level: 'error', logger: 'warden', event: result.logErrors![0], task: task.id });
      // Every record still reached the listeners, the exit diagnostic after the task's own (the
      // file error is reported when the failed write returns, which may be after it).
      const stdout = logged.filter((r) => r.logger === 'task.stdout').map((r) => r.event);
      expect(stdout).toHaveLength(20000);
      expect(stdout.every((line, i) => line === String(i + 1))).toBe(true);
      expect(logged.filter((r) => r.logger === 'task.stderr').map((r) => r.event)).toEqual(['on stderr']);
      const lastOwn = logged.filter((r) => r.code !== 'ERR_LOG_FILE').at(-1);
      expect(lastOwn).toMatchObject({ logger: 'warden', event: 'exited with code 0', exitCode: 0 });
      expect(fdsTo('/dev/full')).toEqual([]);
    });
  });
});

describe('secrets', () => {
  it('a secret registered with MaskSecret over comms, and one with task.maskSecret, split across two writes of one line: *** in the file and events, the raw value nowhere', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const viaComms = `comms-${randomBytes(8).toString('hex')}`;
      const viaTask = `task-${randomBytes(8).toString('hex')}`;
      const half = (s: string): [string, string] => [s.slice(0, s.length >> 1), s.slice(s.length >> 1)];
      const task = sup.start({ command: process.execPath, args: [fixture('mask-secret.mjs'), viaComms, viaTask], env: env(), stdin: true, logFile: path });
      const logged: LogRecord[] = [];
      task.on('log', (r) => logged.push(r));
      // The child waits on stdin between the halves of a line, so each half is a read of its own.
      let raw = '';
      const splits: string[] = [];
      task.on('stdout', (chunk) => {
        raw += chunk.toString();
        if (raw.endsWith(`comms secret ${half(viaComms)[0]}`) || raw.endsWith(`task secret ${half(viaTask)[0]}`)) {
          splits.push(raw.slice(raw.lastIndexOf(' ') + 1));
          task.write('next\n');
        } else if (raw.endsWith('ready\n')) {
          task.maskSecret(viaTask);
          task.write('next\n');
        }
      });
      const result = await task.result;
      expect(result.state).toBe('success');
      expect(splits).toEqual([half(viaComms)[0], half(viaTask)[0]]);

      const text = readFileSync(path, 'utf8');
      const records = readLog(path);
      expect(records.filter((r) => r.logger.startsWith('task')).map((r) => r.event)).toEqual(expect.arrayContaining(['comms secret *** end', 'task secret *** end', 'fd 3 says ***']));
      expect(records.find((r) => r.event === 'fd 3 says ***')).toMatchObject({ level: 'warning', nested: { token: '***' } });
      const emitted = JSON.stringify(logged);
      for (const piece of [viaComms, viaTask, ...half(viaComms), ...half(viaTask)]) {
        expect(text).not.toContain(piece);
        expect(emitted).not.toContain(piece);
      }
      expect(logged.map((r) => r.event)).toEqual(expect.arrayContaining(['comms secret *** end', 'task secret *** end', 'fd 3 says ***']));
    });
  });
});

describe("warden's own records in the task's log", () => {
  it('a teardown: the signals sent and to whom, the escapees found, the exit it caused; the file closed after the last record', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({ command: fixture('tree.sh'), env: env(), graceMs: 200, logFile: path });
      await waitFor(task);
      expect(fdsTo(path)).toHaveLength(1); // the check below can fail
      task.cancel();
      const result = await task.result;
      expect(fdsTo(path)).toEqual([]);
      expect(result).toMatchObject({ reason: 'cancelled', signal: 'SIGTERM', survivors: 0, escapees: 2 });

      const records = readLog(path);
      const warden = records.filter((r) => r.logger === 'warden');
      const sent = warden.find((r) => r.event.startsWith('sent SIGTERM'));
      expect(sent).toMatchObject({ level: 'info', event: `sent SIGTERM to the task's process group ${task.pgid} and 2 escapee(s)`, reason: 'cancelled' });
      expect([...(sent!.escapees as number[])].sort()).toEqual([...result.teardown!.escapeePids].sort());
      // The subshell and its sleep ignore SIGTERM: the ladder escalates, and says so.
      expect(wardenEvents(records)).toContainEqual(expect.stringMatching(/^escalated to SIGKILL after 200 ms: \d+ round\(s\)$/));
      expect(records.at(-1)).toMatchObject({ logger: 'warden', level: 'warning', event: 'killed by SIGTERM, sent by warden', signal: 'SIGTERM', signalledByWarden: true, task: task.id });
    });
  });

  it('a task that SIGKILLs itself: "killed by SIGKILL that warden did not send: likely out of memory"', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({ ...steps({ fd: 1, text: 'about to go\n' }, { kill: 'SIGKILL' }), env: env(), logFile: path });
      const logged: LogRecord[] = [];
      task.on('log', (r) => logged.push(r));
      const result = await task.result;
      expect(result).toMatchObject({ reason: 'exited', signal: 'SIGKILL', status: 137, state: 'failed', teardown: null });
      expect(fdsTo(path)).toEqual([]);
      const records = readLog(path);
      const diagnostic = records.at(-1)!;
      expect(diagnostic).toMatchObject({ logger: 'warden', level: 'error', signal: 'SIGKILL', exitCode: null, signalledByWarden: false });
      expect(diagnostic.event).toMatch(/^killed by SIGKILL that warden did not send: likely out of memory/);
      expect(records.map((r) => r.event)).toContain('about to go');
      expect(logged.at(-1)).toEqual(diagnostic);
    });
  });

  it('pipes held open after the leader exits: force-closed after drainMs, said so; the partial last line is still kept', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      // killLeftovers off: the sleep keeps every pipe open, so only drainMs ends the wait.
      const task = sup.start({ command: 'bash', args: ['-c', 'sleep 300 & printf "no newline before the exit"; exit 0'], env: env(), drainMs: 300, killLeftovers: false, logFile: path });
      const result = await task.result;
      expect(result).toMatchObject({ state: 'success', pipesForceClosed: true, survivors: 1 });
      expect(fdsTo(path)).toEqual([]);
      // The holder is the test's to clean up, found by its token.
      const needle = Buffer.from(`${TOKEN_NAME}=${token()}`);
      for (const pid of liveWithToken(needle)) process.kill(pid, 'SIGKILL');
      expect(await until(() => liveWithToken(needle).length === 0)).toBe(true);

      const records = readLog(path).filter((r) => r.level !== 'debug');
      const at = (pred: (r: LogRecord) => boolean): number => records.findIndex(pred);
      const partial = at((r) => r.logger === 'task.stdout' && r.event === 'no newline before the exit');
      const forced = at((r) => r.logger === 'warden' && r.event === "pipes force-closed 300 ms after the leader exited (held open by a process outside warden's reach)");
      expect(partial).toBeGreaterThanOrEqual(0);
      expect(forced).toBeGreaterThan(partial);
      expect(records[forced]).toMatchObject({ level: 'warning', pipes: expect.arrayContaining(['stdout', 'stderr', 'log']) });
      expect(records.at(-1)).toMatchObject({
        logger: 'warden',
        level: 'warning',
        event: 'exited with code 0; its output pipes were force-closed after 300 ms (drainMs) because a process it started still held them open',
        pipesForceClosed: true,
      });
    });
  });

  it('the file is closed after the last record of an ordinary exit too', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({ command: 'bash', args: ['-c', 'echo ready; read -r _; exit 4'], env: env(), stdin: true, logFile: path });
      await waitFor(task);
      expect(fdsTo(path)).toHaveLength(1);
      task.write('go\n');
      const result = await task.result;
      expect(fdsTo(path)).toEqual([]);
      expect(result).toMatchObject({ state: 'failed', status: 4 });
      expect(readLog(path).at(-1)).toMatchObject({ logger: 'warden', level: 'error', event: 'exited with code 4', exitCode: 4 });
    });
  });
});
