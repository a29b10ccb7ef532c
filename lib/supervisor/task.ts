import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'eventemitter3';
import { WardenError, withoutStack } from '../errors.js';
import { watchExit } from '../process/exit-backstop.js';
import { shellStatus } from '../process/exit-status.js';
import { makeCookie, spawnFailure, spawnTask } from '../process/spawn-task.js';
import type { TaskCgroup } from '../signal/cgroup.js';
import type { MemberQuery } from '../signal/members.js';
import { readForkCountAtMost100msOld, readStat } from '../signal/proc.js';
import type { CommsChannel } from '../comms/channel.js';
import type { ResolvedSpec } from './options.js';
import { createTaskChannel, type TaskHandlerContext } from './task-comms.js';
import { openStartupGate, type TaskControlPlane } from './task-control-plane.js';
import { wireTaskIO, type TaskIO } from './task-io.js';
import { buildResult, exitDiagnostic } from './task-result.js';
import { TaskLog } from './task-log.js';
import { TaskTeardown } from './task-teardown.js';
import type { LogLevel, TaskDeps, TaskEvents, WardenRecord } from './task-types.js';
import type { Containment, TaskResult, TerminationReason } from './types.js';

export type { LogLevel, WardenRecord, TaskEvents, TaskDeps } from './task-types.js';

/** Secrets kept per task for masking; more are ignored (and logged once). */
const MAX_SECRETS = 1000;

/**
 * One task's life: spawn, run, end (on its own or through the teardown ladder), settle.
 *
 * Invariants:
 * 1. The result settles exactly once, after the leader's exit was seen (or the backstop found
 *    it gone), after any teardown finished, and after the pipes reached EOF or the drain bound.
 * 2. The termination reason is written once: the first cause wins.
 * 3. At most one teardown ladder runs per task.
 * 4. When the result settles, the reactor holds no handle of the task and the task's
 *    AbortSignal is aborted.
 */
export class Task extends EventEmitter<TaskEvents> {
  readonly id: string;
  readonly spec: ResolvedSpec;
  readonly result: Promise<TaskResult>;
  readonly cookie: string;
  pid: number | undefined;
  pgid = 0;
  containment: Containment;
  phase: 'running' | 'stopping' | 'settled' = 'running';

  private readonly abort = new AbortController();
  private readonly t0 = performance.now();
  private resolveResult!: (r: TaskResult) => void;
  private reason: TerminationReason | undefined;
  private child: ChildProcess | undefined;
  private cgroup: TaskCgroup | undefined;
  private startTime = 0;
  private forksAtSpawn: number | undefined;
  private io: TaskIO | undefined;
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private leaderExited = false;
  private readonly teardown: TaskTeardown;
  private drainTimer: number | undefined;
  private drainExpired = false;
  private timeoutTimer: number | undefined;
  private error: WardenError | null = null;
  private spawnStatus: number | null = null;
  /** Values masked as `***` in the task's log records (registered by handlers and MaskSecret). */
  readonly secrets = new Set<string>();
  channel: CommsChannel<TaskHandlerContext> | undefined;
  control: TaskControlPlane | undefined;
  private overtimeTimer: number | undefined;

  constructor(
    spec: ResolvedSpec,
    private readonly deps: TaskDeps,
  ) {
    super();
    this.spec = spec;
    this.id = spec.id;
    this.cookie = makeCookie(spec.id);
    this.containment = spec.isolate ? 'group+cookie' : 'pid+cookie';
    this.result = new Promise((resolve) => (this.resolveResult = resolve));
    this.teardown = new TaskTeardown({
      id: this.id,
      spec,
      cookie: this.cookie,
      deps,
      leader: () => ({ pid: this.pid, startTime: this.startTime, pgid: this.pgid, exited: this.leaderExited, forksAtSpawn: this.forksAtSpawn }),
      cgroup: () => this.cgroup,
      containment: () => this.containment,
      graceCut: () => this.graceCut,
      log: (level, event, fields) => this.log(level, event, fields),
    });
    // Opening the log file can fail: a usage error thrown to start()'s caller; nothing started.
    this.tlog = new TaskLog({
      path: spec.logFile,
      maxLineBytes: spec.maxLineBytes,
      onRecord: (r) => this.emit('log', r),
      onError: (e) => this.log('error', e.message, { code: e.code }),
      pause: () => this.io?.pauseLogged(),
      resume: () => this.io?.resumeLogged(),
    });
  }

  private readonly tlog: TaskLog;

  /** Aborted when the task settles; pass it to anything done on the task's behalf. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get terminationReason(): TerminationReason | undefined {
    return this.reason;
  }

  /** Internal: starts the child. Called once by the supervisor. */
  start(): void {
    const { reactor, cgroups } = this.deps;
    this.cgroup = cgroups?.usable ? cgroups.create() : undefined;
    if (this.cgroup) this.containment = 'cgroup';
    const cg = this.cgroup;
    // Read before the fork: every member's pid is allocated after this point (see pidsSince).
    this.forksAtSpawn = readForkCountAtMost100msOld();
    const spawned = spawnTask(
      {
        ...this.spec,
        taskId: this.id,
        ...(cg && cgroups ? { wrap: <T>(fork: () => T): T => cgroups.spawnInside(cg, fork) } : {}),
      },
      this.cookie,
    );
    if ('error' in spawned) {
      queueMicrotask(() => this.failSpawn(spawned.error, spawned.status));
      return;
    }
    const child = (this.child = spawned.child);
    child.on('error', this.onChildError);
    const onClosed = (): void => this.maybeSettle();
    const comms = createTaskChannel(this, reactor, this.deps.handlers, this.deps.comms, () => this.io, onClosed);
    this.channel = comms.channel;
    this.io = wireTaskIO(this, reactor, child, this.spec, onClosed, { log: this.tlog, comms: comms.hooks });
    if (child.pid === undefined) return; // 'error' follows on the next tick.
    this.pid = child.pid;
    const st = readStat(child.pid);
    this.startTime = st?.startTime ?? 0;
    this.pgid = st?.pgid ?? (this.spec.isolate ? child.pid : this.deps.signaller.ownPgid);
    child.once('exit', (code, signal) => this.onLeaderExit(code, signal, false));
    if (this.spec.timeoutMs > 0) this.timeoutTimer = reactor.timer(this.id, this.spec.timeoutMs, () => this.terminate('timeout'));
    watchExit(reactor, this.id, child.pid, this.startTime, this.spec.exitCheckMs, () => this.leaderExited, () => {
      this.error = new WardenError('ERR_EXIT_UNOBSERVED', `the task's process ${this.pid} is gone but its exit was never reported (reaped elsewhere); its exit status is unknown.`);
      this.log('warning', this.error.message);
      this.onLeaderExit(null, null, true);
    });
    this.control = openStartupGate(this, this.deps.controlPlane);
    const info = { pid: child.pid, pgid: this.pgid, containment: this.containment, cookie: this.cookie };
    // Emitted on the next microtask so that listeners attached right after start() see it.
    queueMicrotask(() => {
      if (this.phase !== 'settled') this.emit('spawn', info);
    });
  }

  /** Writes to the task's stdin (spec.stdin). False when closed or full. */
  write(chunk: Buffer | string): boolean {
    return this.io?.writeStdin(chunk) ?? false;
  }

  /** Closes the task's stdin. */
  end(): void {
    this.io?.endStdin();
  }

  private graceCut = false;

  /**
   * Skips what is left of the grace period of a running teardown (SIGKILL within one poll
   * interval): what a second Ctrl-C means.
   */
  hurry(): void {
    if (this.phase !== 'stopping' || this.graceCut) return;
    this.graceCut = true;
    this.log('warning', 'asked again to stop: skipping the rest of the grace period');
  }

  /** Ends the task's whole tree (reason `cancelled`). */
  cancel(): void {
    this.terminate('cancelled');
  }

  /**
   * Ends the task's whole tree through the teardown ladder. The first reason given wins; a
   * second call while a teardown runs changes nothing.
   */
  terminate(reason: TerminationReason): void {
    if (this.phase === 'settled') return;
    this.setReason(reason);
    this.runLadder();
  }

  /** Ends the task with an error that explains why (a refused start, ...). */
  fail(error: WardenError, reason: TerminationReason): void {
    this.error ??= error;
    this.terminate(reason);
  }

  /** Schedules a task timer on the supervisor's wheel; it never runs after the task settled. */
  timer(ms: number, cb: () => void): number {
    return this.deps.reactor.timer(this.id, ms, cb);
  }

  /** After a terminal state was reported: the task has `ms` to exit, then it is ended (`overtime`). */
  armOvertime(ms: number): void {
    if (this.overtimeTimer !== undefined || this.phase === 'settled') return;
    this.overtimeTimer = this.timer(ms, () => {
      this.log('warning', `the task reported its final state but was still running ${ms} ms later`);
      this.terminate('overtime');
    });
  }

  /** Registers a value masked as `***` in every record of this task's log. */
  maskSecret(value: string): void {
    if (typeof value !== 'string' || value.length === 0) return;
    if (this.secrets.size >= MAX_SECRETS) return;
    this.secrets.add(value);
    this.tlog.masker.add(value);
    this.emit('secret', value);
  }

  /** A supervisor-authored record about this task. */
  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    const record = wardenOnly(level, event, { task: this.id, ...fields });
    // Masked here too: `record` listeners see what the log shows, never a registered secret.
    this.emit('record', this.tlog.masker.size > 0 ? (this.tlog.masker.maskRecord(record) as WardenRecord) : record);
    this.tlog.record(record);
  }

  private setReason(reason: TerminationReason): void {
    if (this.reason === undefined) this.reason = reason;
  }

  private onChildError = (err: Error): void => {
    if (this.pid === undefined && !this.leaderExited) {
      const f = spawnFailure(this.spec.command, err);
      this.failSpawn(f.error, f.status);
      return;
    }
    this.log('warning', `child process error: ${err.message}`);
  };

  private failSpawn(error: WardenError, status: number): void {
    if (this.phase === 'settled') return;
    this.setReason('spawn-failed');
    this.error = error;
    this.spawnStatus = status;
    this.leaderExited = true;
    this.log('error', error.message, { code: error.code });
    this.settle();
  }

  private onLeaderExit(code: number | null, signal: NodeJS.Signals | null, unobserved: boolean): void {
    if (this.leaderExited) return;
    this.leaderExited = true;
    if (this.pid !== undefined) this.deps.signaller.markReaped(this.pid);
    this.exitCode = code;
    this.exitSignal = signal;
    this.deps.reactor.cancelTimer(this.id, this.timeoutTimer);
    this.setReason('exited');
    if (!unobserved) this.emit('exit', { exitCode: code, signal });
    if (this.teardown.state === 'none' && this.spec.killLeftovers && this.teardown.hasMembers()) {
      this.log('warning', 'the leader exited and left processes behind: tearing them down');
      this.runLadder();
      return;
    }
    this.afterLeaderOrLadder();
  }

  /** The task's members as a query for the signal layer (also used by the demo and specs). */
  memberQuery(): MemberQuery {
    return this.teardown.query();
  }

  private runLadder(): void {
    if (this.teardown.state !== 'none' || this.pid === undefined || this.phase === 'settled') return;
    this.phase = 'stopping';
    this.teardown.run(this.reason ?? 'cancelled', (report) => {
      if (report) this.emit('teardown', report);
      this.afterLeaderOrLadder();
    });
  }

  private afterLeaderOrLadder(): void {
    if (this.teardown.state === 'running' || !this.leaderExited) return;
    if (this.io && this.io.openPipes() > 0 && this.drainTimer === undefined && !this.drainExpired) {
      this.drainTimer = this.deps.reactor.timer(this.id, this.spec.drainMs, () => {
        this.drainExpired = true;
        this.maybeSettle();
      });
    }
    this.maybeSettle();
  }

  private maybeSettle(): void {
    if (this.phase === 'settled' || !this.leaderExited) return;
    if (this.teardown.state === 'running') return;
    if (this.io && this.io.openPipes() > 0 && !this.drainExpired) return;
    this.settle();
  }

  private settle(): void {
    if (this.phase === 'settled') return;
    this.phase = 'settled';
    const forced = this.io ? this.io.release() : this.deps.reactor.releaseTask(this.id);
    const pipesForceClosed = forced.some((n) => n !== 'stdin');
    if (pipesForceClosed) this.log('warning', `pipes force-closed ${this.spec.drainMs} ms after the leader exited (held open by a process outside warden's reach)`, { pipes: forced });
    this.child?.removeListener('error', this.onChildError);
    const survivors = this.teardown.countSurvivors();
    if (this.cgroup && (survivors > 0 || !(this.deps.cgroups?.recycle(this.cgroup) ?? this.cgroup.remove()))) this.deps.keepCgroup(this.cgroup);
    const result = buildResult({
      taskId: this.id,
      reason: this.reason ?? 'exited',
      exitCode: this.exitCode,
      signal: this.exitSignal,
      status: this.spawnStatus ?? shellStatus(this.exitCode, this.exitSignal),
      pid: this.pid,
      containment: this.containment,
      durationMs: performance.now() - this.t0,
      survivors,
      pipesForceClosed,
      report: this.teardown.report,
      error: this.error,
    });
    this.abort.abort(withoutStack(() => new WardenError('ERR_CHANNEL_CLOSED', `task ${this.id} ended (${result.reason})`)));
    if (this.pid !== undefined) {
      const record = { ...exitDiagnostic(this.exitCode, this.exitSignal, this.teardown.report, pipesForceClosed, this.spec.drainMs), task: this.id } as WardenRecord;
      this.emit('record', record);
      this.tlog.record(record);
    }
    const finish = (final: TaskResult): void => {
      void this.tlog.close().then(() => {
        const logErrors = this.tlog.errors.map((e) => e.message);
        this.deps.onSettled(this);
        const out = logErrors.length > 0 ? { ...final, logErrors } : final;
        this.emit('settled', out);
        this.resolveResult(out);
      });
    };
    if (this.control) {
      void this.control.finalize(result).then(finish, () => finish(result));
    } else finish(result);
  }
}

function wardenOnly(level: LogLevel, event: string, fields: Record<string, unknown>): WardenRecord {
  return { timestamp: new Date().toISOString(), level, logger: 'warden', event, ...fields };
}
