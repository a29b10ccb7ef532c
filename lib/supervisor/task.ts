import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'eventemitter3';
import { WardenError } from '../errors.js';
import { shellStatus } from '../process/exit-status.js';
import { makeCookie, spawnFailure, spawnTask, COOKIE_NAME } from '../process/spawn-task.js';
import type { Reactor } from '../reactor/reactor.js';
import type { CgroupTier, TaskCgroup } from '../signal/cgroup.js';
import { runKillLadder } from '../signal/kill-ladder.js';
import { findMembers, type MemberQuery } from '../signal/members.js';
import { isAliveStat, readStat } from '../signal/proc.js';
import type { Signaller } from '../signal/signaller.js';
import type { ResolvedSpec } from './options.js';
import { wireTaskIO, type TaskIO } from './task-io.js';
import type { Containment, TaskResult, TaskState, TeardownReport, TerminationReason } from './types.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';

/** A record the supervisor writes about a task (DESIGN 7, `logger: 'warden'`). */
export interface WardenRecord {
  timestamp: string;
  level: LogLevel;
  logger: 'warden';
  event: string;
  [field: string]: unknown;
}

export interface TaskEvents {
  spawn: (info: { pid: number; pgid: number; containment: Containment; cookie: string }) => void;
  stdout: (chunk: Buffer) => void;
  stderr: (chunk: Buffer) => void;
  /** One line of the fd 3 log channel, as text. */
  logline: (line: string) => void;
  record: (record: WardenRecord) => void;
  exit: (info: { exitCode: number | null; signal: NodeJS.Signals | null }) => void;
  teardown: (report: TeardownReport) => void;
  settled: (result: TaskResult) => void;
}

export interface TaskDeps {
  reactor: Reactor;
  signaller: Signaller;
  cgroups: CgroupTier | undefined;
  /** A task cgroup that could not be removed yet (retried later). */
  keepCgroup(cg: TaskCgroup): void;
  /** Called once the task has settled and released everything. */
  onSettled(task: Task): void;
}

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
  private io: TaskIO | undefined;
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private leaderExited = false;
  private ladderState: 'none' | 'running' | 'done' = 'none';
  private report: TeardownReport | null = null;
  private drainTimer: number | undefined;
  private drainExpired = false;
  private timeoutTimer: number | undefined;
  private backstopStrikes = 0;
  private error: WardenError | null = null;
  private spawnStatus: number | null = null;
  /** A terminal state set by a later layer (the task reporting one over comms, the control plane). */
  stateOverride: TaskState | undefined;

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
  }

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
    this.cgroup = cgroups?.usable ? cgroups.create(this.id) : undefined;
    if (this.cgroup) this.containment = 'cgroup';
    const cg = this.cgroup;
    const spawned = spawnTask(
      {
        taskId: this.id,
        command: this.spec.command,
        args: this.spec.args,
        cwd: this.spec.cwd,
        env: this.spec.env,
        secretEnv: this.spec.secretEnv,
        isolate: this.spec.isolate,
        stdin: this.spec.stdin,
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
    this.io = wireTaskIO(this, reactor, child, this.spec, () => this.maybeSettle());
    if (child.pid === undefined) return; // 'error' follows on the next tick.
    this.pid = child.pid;
    const st = readStat(child.pid);
    this.startTime = st?.startTime ?? 0;
    this.pgid = st?.pgid ?? (this.spec.isolate ? child.pid : this.deps.signaller.ownPgid);
    child.once('exit', (code, signal) => this.onLeaderExit(code, signal, false));
    if (this.spec.timeoutMs > 0) this.timeoutTimer = reactor.timer(this.id, this.spec.timeoutMs, () => this.terminate('timeout'));
    this.armBackstop();
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

  /** A supervisor-authored record about this task. */
  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    this.emit('record', { timestamp: new Date().toISOString(), level, logger: 'warden', event, task: this.id, ...fields });
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

  private armBackstop(): void {
    this.deps.reactor.timer(this.id, this.spec.exitCheckMs, () => {
      if (this.leaderExited || this.pid === undefined) return;
      const st = readStat(this.pid);
      const gone = st === undefined || st.startTime !== this.startTime;
      this.backstopStrikes = gone ? this.backstopStrikes + 1 : 0;
      if (this.backstopStrikes >= 2) {
        this.error = new WardenError('ERR_EXIT_UNOBSERVED', `the task's process ${this.pid} is gone but its exit was never reported (reaped elsewhere); its exit status is unknown.`);
        this.log('warning', this.error.message);
        this.onLeaderExit(null, null, true);
        return;
      }
      this.armBackstop();
    });
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
    if (this.ladderState === 'none' && this.spec.killLeftovers && this.hasMembers()) {
      this.log('warning', 'the leader exited and left processes behind: tearing them down');
      this.runLadder();
      return;
    }
    this.afterLeaderOrLadder();
  }

  private hasMembers(): boolean {
    if (this.cgroup) return this.cgroup.populated();
    return findMembers(this.memberQuery()).length > 0;
  }

  memberQuery(): MemberQuery {
    return {
      rootPid: this.pid ?? -1,
      rootStartTime: this.startTime,
      pgid: this.pgid,
      isolated: this.spec.isolate,
      cookie: Buffer.from(`${COOKIE_NAME}=${this.cookie}`),
      ...(this.cgroup ? { cgroup: this.cgroup, skipCookieScan: true } : {}),
    };
  }

  private runLadder(): void {
    if (this.ladderState !== 'none' || this.pid === undefined || this.phase === 'settled') return;
    this.phase = 'stopping';
    this.ladderState = 'running';
    const reactor = this.deps.reactor;
    const cgroups = this.deps.cgroups;
    void runKillLadder({
      signaller: this.deps.signaller,
      query: this.memberQuery(),
      containment: this.containment,
      reason: this.reason ?? 'cancelled',
      killSignal: this.spec.killSignal,
      graceMs: this.spec.graceMs,
      maxKillRounds: this.spec.maxKillRounds,
      leaderUnreaped: () => !this.leaderExited,
      killableCgroup: () => (this.cgroup && cgroups && !cgroups.containsSelf(this.cgroup) ? this.cgroup : undefined),
      sleep: (ms) => new Promise<void>((resolve) => reactor.timer(this.id, ms, resolve)),
      log: (level, event, fields) => this.log(level, event, fields),
    }).then(
      (report) => {
        this.ladderState = 'done';
        this.report = report;
        this.emit('teardown', report);
        this.afterLeaderOrLadder();
      },
      (err: unknown) => {
        this.ladderState = 'done';
        this.log('error', `teardown failed: ${(err as Error)?.message ?? String(err)}`);
        this.afterLeaderOrLadder();
      },
    );
  }

  private afterLeaderOrLadder(): void {
    if (this.ladderState === 'running' || !this.leaderExited) return;
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
    if (this.ladderState === 'running') return;
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
    let survivors = 0;
    if (this.pid !== undefined) {
      survivors = this.cgroup ? this.cgroup.procs().filter((p) => isAliveStat(readStat(p))).length : findMembers({ ...this.memberQuery() }).length;
    }
    if (this.cgroup && (survivors > 0 || !this.cgroup.remove())) this.deps.keepCgroup(this.cgroup);
    const status = this.spawnStatus ?? shellStatus(this.exitCode, this.exitSignal);
    const reason = this.reason ?? 'exited';
    const state: TaskState = this.stateOverride ?? (reason === 'exited' && status === 0 ? 'success' : 'failed');
    const result: TaskResult = {
      taskId: this.id,
      state,
      reason,
      exitCode: this.exitCode,
      signal: this.exitSignal,
      status,
      pid: this.pid,
      containment: this.containment,
      durationMs: Math.round((performance.now() - this.t0) * 100) / 100,
      signalled: this.report?.signalled ?? 0,
      escapees: this.report?.escapees ?? 0,
      survivors,
      pipesForceClosed,
      teardown: this.report,
      error: this.error ? this.error.toJSON() : null,
    };
    this.abort.abort(new WardenError('ERR_CHANNEL_CLOSED', `task ${this.id} ended (${reason})`));
    this.deps.onSettled(this);
    this.emit('settled', result);
    this.resolveResult(result);
  }
}
