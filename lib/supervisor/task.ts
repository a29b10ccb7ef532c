import { EventEmitter } from 'eventemitter3';
import { WardenError } from '../errors.js';
import { makeCookie } from '../process/spawn-task.js';
import type { MemberQuery } from '../signal/members.js';
import type { CommsChannel } from '../comms/channel.js';
import { terminalSize, type ResolvedSpec } from './options.js';
import { createTaskChannel, type TaskHandlerContext } from './task-comms.js';
import { openStartupGate, type TaskControlPlane } from './task-control-plane.js';
import { wireTaskIO, type TaskIO } from './task-io.js';
import { TaskLeader } from './task-leader.js';
import { TaskRecords } from './task-records.js';
import { settleTask } from './task-settle.js';
import { TaskSignal } from './task-signal.js';
import { TaskTeardown } from './task-teardown.js';
import type { LogLevel, TaskDeps, TaskEvents, WardenRecord } from './task-types.js';
import type { Containment, TaskResult, TerminationReason } from './types.js';

export type { LogLevel, WardenRecord, TaskEvents, TaskDeps } from './task-types.js';

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
 * 5. Under the subreaper tier, the result settles after warden-reaper exited too, unless leftovers
 *    were kept (it stays with them) or it outlived its bound (TaskLeader.waitForReaper).
 */
export class Task extends EventEmitter<TaskEvents> {
  readonly id: string;
  readonly spec: ResolvedSpec;
  readonly result: Promise<TaskResult>;
  readonly cookie: string;
  phase: 'running' | 'stopping' | 'settled' = 'running';

  private readonly abort: TaskSignal;
  private readonly t0 = performance.now();
  private resolveResult!: (r: TaskResult) => void;
  private reason: TerminationReason | undefined;
  private io: TaskIO | undefined;
  private readonly leader: TaskLeader;
  private readonly teardown: TaskTeardown;
  private readonly records: TaskRecords;
  private drainTimer: number | undefined;
  private drainExpired = false;
  private timeoutTimer: number | undefined;
  private error: WardenError | null = null;
  private spawnStatus: number | null = null;
  channel: CommsChannel<TaskHandlerContext> | undefined;
  control: TaskControlPlane | undefined;
  private graceCut = false;

  constructor(
    spec: ResolvedSpec,
    private readonly deps: TaskDeps,
  ) {
    super();
    this.spec = spec;
    this.id = spec.id;
    this.cookie = makeCookie(spec.id);
    this.result = new Promise((resolve) => (this.resolveResult = resolve));
    this.abort = new TaskSignal(this.id, () => this.reason ?? 'exited');
    const leader = (this.leader = new TaskLeader(spec, deps));
    this.teardown = new TaskTeardown({
      id: this.id,
      spec,
      cookie: this.cookie,
      deps,
      leader: () => leader,
      cgroup: () => leader.cgroup,
      containment: () => leader.containment,
      graceCut: () => this.graceCut,
      log: (level, event, fields) => this.log(level, event, fields),
    });
    // Opening the log file can fail: a usage error thrown to start()'s caller; nothing started.
    this.records = new TaskRecords(this, spec, {
      onRecord: deps.onRecord,
      wantsRecords: deps.wantsRecords,
      pause: () => this.io?.pauseLogged(),
      resume: () => this.io?.resumeLogged(),
    });
  }

  /** Values masked as `***` in the task's log records (registered by handlers and MaskSecret). */
  get secrets(): Set<string> {
    return this.records.secrets;
  }

  /** Aborted when the task settles (reason: WardenError ERR_CHANNEL_CLOSED); pass it to work done for the task. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get terminationReason(): TerminationReason | undefined {
    return this.reason;
  }

  /** The leader's pid; undefined until it was spawned, or when the spawn failed. */
  get pid(): number | undefined {
    return this.leader.pid;
  }

  /** The leader's process group. */
  get pgid(): number {
    return this.leader.pgid;
  }

  /** How the task is contained: its own cgroup, its own group and session, or pids only. */
  get containment(): Containment {
    return this.leader.containment;
  }

  /** Internal: starts the child. Called once by the supervisor. */
  start(): void {
    const { reactor } = this.deps;
    const child = this.leader.spawn(this.cookie, {
      spawnFailed: (error, status) => this.failSpawn(error, status),
      exited: (code, signal, unobserved) => this.onLeaderExit(code, signal, unobserved),
      childError: (err) => this.log('warning', `child process error: ${err.message}`),
    });
    if (!child) return;
    const onClosed = (): void => this.maybeSettle();
    const comms = createTaskChannel(this, reactor, this.deps.handlers, this.deps.comms, () => this.io, onClosed);
    this.channel = comms.channel;
    this.io = wireTaskIO(this, reactor, child, this.spec, onClosed, { log: this.records.log, comms: comms.hooks });
    const pid = this.leader.pid;
    if (pid === undefined) return; // 'error' follows on the next tick.
    if (this.spec.timeoutMs > 0) this.timeoutTimer = reactor.timer(this.id, this.spec.timeoutMs, () => this.terminate('timeout'));
    this.control = openStartupGate(this, this.deps.controlPlane);
    const info = { pid, pgid: this.pgid, containment: this.containment, cookie: this.cookie };
    // Emitted on the next microtask so that listeners attached right after start() see it.
    queueMicrotask(() => {
      if (this.phase !== 'settled') this.emit('spawn', info);
    });
  }

  /** Writes to the task's stdin (spec.stdin). False when closed or full. */
  write(chunk: Buffer | string): boolean {
    return this.io?.writeStdin(chunk) ?? false;
  }

  /**
   * pty mode: resizes the task's terminal to `cols` x `rows` (the task gets SIGWINCH). Returns
   * false when the task has no terminal (not pty mode, not started, or it has ended). Throws a
   * TypeError for a size outside 1..65535.
   */
  resize(cols: number, rows: number): boolean {
    const size = [terminalSize('cols', cols, 0), terminalSize('rows', rows, 0)] as const;
    return this.phase !== 'settled' && this.leader.resizeTerminal(...size);
  }

  /** Closes the task's stdin. */
  end(): void {
    this.io?.endStdin();
  }

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

  /** Registers a value masked as `***` in every record of this task's log. */
  maskSecret(value: string): void {
    this.records.maskSecret(value);
  }

  /** A supervisor-authored record about this task (built only when someone receives it). */
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    this.records.warden(level, event, fields);
  }

  private setReason(reason: TerminationReason): void {
    if (this.reason === undefined) this.reason = reason;
  }

  private failSpawn(error: WardenError, status: number): void {
    if (this.phase === 'settled') return;
    this.setReason('spawn-failed');
    this.error = error;
    this.spawnStatus = status;
    this.log('error', error.message, { code: error.code });
    this.settle();
  }

  private onLeaderExit(code: number | null, signal: NodeJS.Signals | null, unobserved: boolean): void {
    if (unobserved) {
      this.error = new WardenError('ERR_EXIT_UNOBSERVED', `the task's process ${this.pid} is gone but its exit was never reported (reaped elsewhere); its exit status is unknown.`);
      this.log('warning', this.error.message);
    }
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
    if (this.teardown.state === 'running' || !this.leader.exited) return;
    if (this.io && this.io.openPipes() > 0 && this.drainTimer === undefined && !this.drainExpired) {
      this.drainTimer = this.deps.reactor.timer(this.id, this.spec.drainMs, () => {
        this.drainExpired = true;
        this.maybeSettle();
      });
    }
    this.maybeSettle();
  }

  private maybeSettle(): void {
    if (this.phase === 'settled' || !this.leader.exited) return;
    if (this.teardown.state === 'running') return;
    if (this.io && this.io.openPipes() > 0 && !this.drainExpired) return;
    // Subreaper tier: settle once warden-reaper is gone too (unless it stays with kept leftovers).
    const leftoversKept = (): boolean => !this.spec.killLeftovers && this.teardown.hasMembers();
    if (this.leader.waitForReaper(leftoversKept, () => this.maybeSettle(), (text) => this.log('warning', text))) return;
    this.settle();
  }

  private settle(): void {
    if (this.phase === 'settled') return;
    this.phase = 'settled';
    settleTask({
      id: this.id,
      spec: this.spec,
      deps: this.deps,
      leader: this.leader,
      teardown: this.teardown,
      io: this.io,
      records: this.records,
      channel: this.channel,
      control: this.control,
      reason: this.reason,
      error: this.error,
      spawnStatus: this.spawnStatus,
      startedAt: this.t0,
      log: (level, event, fields) => this.log(level, event, fields),
      abortSignal: () => this.abort.abort(),
      done: (result) => {
        this.deps.onSettled(this);
        this.emit('settled', result);
        this.resolveResult(result);
      },
    });
  }
}
