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
import type { CommsChannel } from '../comms/channel.js';
import type { HandlerRegistry } from '../comms/handlers.js';
import type { ResolvedSpec } from './options.js';
import { createTaskChannel, type CommsSettings, type TaskHandlerContext } from './task-comms.js';
import { TaskControlPlane, type ControlPlaneSettings } from './task-control-plane.js';
import { wireTaskIO, type TaskIO } from './task-io.js';
import { buildResult } from './task-result.js';
import { TaskLog } from './task-log.js';
import { exitRecord, type LogRecord } from '../logs/records.js';
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
  /** Every record of the task's log (stdout, stderr, fd 3 and warden's own), masked. */
  log: (record: LogRecord) => void;
  /** Warden's own records about the task (also in `log`). */
  record: (record: WardenRecord) => void;
  exit: (info: { exitCode: number | null; signal: NodeJS.Signals | null }) => void;
  teardown: (report: TeardownReport) => void;
  settled: (result: TaskResult) => void;
  /** A value registered for masking. */
  secret: (value: string) => void;
}

export interface TaskDeps {
  reactor: Reactor;
  signaller: Signaller;
  cgroups: CgroupTier | undefined;
  /** A task cgroup that could not be removed yet (retried later). */
  keepCgroup(cg: TaskCgroup): void;
  /** Called once the task has settled and released everything. */
  onSettled(task: Task): void;
  handlers: HandlerRegistry<any, TaskHandlerContext>; // eslint-disable-line @typescript-eslint/no-explicit-any
  comms: CommsSettings;
  controlPlane: ControlPlaneSettings | undefined;
}

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
    this.armBackstop();
    const cp = this.deps.controlPlane;
    if (cp && this.spec.ti) {
      this.control = new TaskControlPlane(this, cp, this.spec.ti, (runContext) => {
        for (const c of runContext.connections ?? []) {
          if (c.password) this.maskSecret(c.password);
          if (c.extra) this.maskSecret(c.extra);
        }
        this.channel?.sendStartup({ taskId: this.id, tiId: this.spec.ti!.id, tryNumber: this.spec.ti!.tryNumber ?? 1, runContext });
      });
      this.control.start();
    } else {
      // No control plane: the task may start at once.
      this.channel.sendStartup({ taskId: this.id, tiId: this.spec.ti?.id ?? null, tryNumber: this.spec.ti?.tryNumber ?? 1 });
    }
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

  /** Members found by the last look (leftover check or teardown); undefined: never looked. */
  private lastMemberCount: number | undefined;

  private hasMembers(): boolean {
    if (this.cgroup) return this.cgroup.populated();
    this.lastMemberCount = findMembers(this.memberQuery()).length;
    return this.lastMemberCount > 0;
  }

  /**
   * Members alive at settle. The cgroup answers cheaply; otherwise the last look is reused when
   * it found nothing (nothing left could have forked since), and the table is scanned only when
   * something was left.
   */
  private countSurvivors(): number {
    if (this.pid === undefined) return 0;
    if (this.cgroup) return this.cgroup.procs().filter((p) => isAliveStat(readStat(p))).length;
    const known = this.report ? this.report.survivors : this.lastMemberCount;
    if (known === 0) return 0;
    return findMembers(this.memberQuery()).length;
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
      // The teardown scans the whole table even with a cgroup: belt and braces.
      query: { ...this.memberQuery(), skipCookieScan: false },
      containment: this.containment,
      reason: this.reason ?? 'cancelled',
      killSignal: this.spec.killSignal,
      graceMs: this.spec.graceMs,
      maxKillRounds: this.spec.maxKillRounds,
      leaderUnreaped: () => !this.leaderExited,
      graceCut: () => this.graceCut,
      killableCgroup: () => (this.cgroup && cgroups && !cgroups.containsSelf(this.cgroup) ? this.cgroup : undefined),
      sleep: (ms) => new Promise<void>((resolve) => reactor.timer(this.id, ms, resolve)),
      log: (level, event, fields) => this.log(level, event, fields),
    }).then(
      (report) => {
        this.ladderState = 'done';
        this.report = report;
        this.lastMemberCount = report.survivors;
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
    const survivors = this.countSurvivors();
    if (this.cgroup && (survivors > 0 || !this.cgroup.remove())) this.deps.keepCgroup(this.cgroup);
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
      report: this.report,
      error: this.error,
    });
    this.abort.abort(new WardenError('ERR_CHANNEL_CLOSED', `task ${this.id} ended (${result.reason})`));
    if (this.pid !== undefined) {
      const signalledByWarden = this.report !== null && this.report.signals.some((x) => x.outcome === 'sent' && x.signal === this.exitSignal);
      const diag = exitRecord({ exitCode: this.exitCode, signal: this.exitSignal, signalledByWarden, pipesForceClosed, drainMs: this.spec.drainMs });
      const record = { ...diag, task: this.id } as WardenRecord;
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
