import type { WardenError } from '../errors.js';
import { watchExit } from '../process/exit-backstop.js';
import { NativeChild, nativeChildGone } from '../process/native-spawn.js';
import { spawnFailure, spawnTask, type TaskChild } from '../process/spawn-task.js';
import type { TaskCgroup } from '../signal/cgroup.js';
import { readForkCountAtMost100msOld, readStat } from '../signal/proc.js';
import { signalName } from '../signal/signals.js';
import type { Readable } from 'node:stream';
import type { ResolvedSpec } from './options.js';
import type { TaskDeps } from './task-types.js';
import type { Containment } from './types.js';

/** The reactor name of warden-reaper's status socket (fd 5). */
export const REAPER_STREAM = 'reaper';
/** Longest wait for warden-reaper's own exit once the task has no process left (waitForReaper). */
const REAPER_EXIT_WAIT_MS = 1000;
/** Longest status line read from the reaper; more is ignored (the reaper's own exit decides). */
const MAX_STATUS_LINE = 128;

/** What the leader reports to its task. None of these is called twice, nor after `exited` is set. */
export interface LeaderEvents {
  /** The spawn failed (missing command, bad cwd, ...); reported on a later microtask or tick. */
  spawnFailed(error: WardenError, status: number): void;
  /** The leader exited: seen by Node (`unobserved` false) or found gone by the backstop. */
  exited(code: number | null, signal: NodeJS.Signals | null, unobserved: boolean): void;
  /** The child process object reported an error after the spawn succeeded. */
  childError(err: Error): void;
}

/**
 * A task's leader process: forked into the task's containment (its own cgroup when the tier is
 * usable, else its own group and session, or the supervisor's group when not isolated), its
 * identity (pid, start time, group) and its exit, however that is learnt.
 *
 * Invariants:
 * 1. `forksAtSpawn` is read before the fork: every member's pid is allocated after it.
 * 2. `exited` goes false -> true once; `exitCode`/`exitSignal` are set with it and never after.
 * 3. The leader's pid is passed to the signaller as reaped as soon as its exit is seen.
 * 4. Under the subreaper tier the leader process is warden-reaper and "the leader exited" means
 *    the command did: its status comes from the reaper's status socket (fd 5), or, when the
 *    reaper ended without saying (killed), from the reaper's own exit once that socket has ended.
 *    The reaper may outlive the command (it reaps the task's orphans); its pid counts as reaped,
 *    and its group as gone, only once it has exited itself.
 */
export class TaskLeader {
  child: TaskChild | undefined;
  pid: number | undefined;
  /** /proc start time of the leader (0 when it could not be read). */
  startTime = 0;
  pgid = 0;
  forksAtSpawn: number | undefined;
  /** The leader's number in the supervisor's SpawnLedger (0 until forked). */
  spawnSeq = 0;
  cgroup: TaskCgroup | undefined;
  containment: Containment;
  exited = false;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  /** Subreaper tier: warden-reaper itself has exited (it may outlive the command). */
  private reaperExited = false;
  private onReaperExited: (() => void) | undefined;
  /** waitForReaper's state. */
  private reaperWait: 'none' | 'waiting' | 'done' = 'none';
  private events: LeaderEvents | undefined;

  constructor(
    private readonly spec: ResolvedSpec,
    private readonly deps: TaskDeps,
  ) {
    this.containment = spec.isolate ? 'group+cookie' : 'pid+cookie';
  }

  /** Forks the leader. Returns the child, or undefined when the spawn failed (reported later). */
  spawn(cookie: string, events: LeaderEvents): TaskChild | undefined {
    this.events = events;
    const { spec, deps } = this;
    const cgroups = deps.cgroups;
    const cg = (this.cgroup = cgroups?.usable ? cgroups.create() : undefined);
    if (cg) this.containment = 'cgroup';
    // The subreaper tier: for isolated tasks without a cgroup, when the reaper was built.
    const reaper = !cg && spec.isolate && deps.nativeSpawn ? deps.reaper : undefined;
    if (reaper !== undefined) this.containment = 'subreaper';
    this.forksAtSpawn = readForkCountAtMost100msOld();
    const spawned = spawnTask(
      {
        taskId: spec.id,
        command: spec.command,
        args: spec.args,
        cwd: spec.cwd,
        env: spec.env,
        secretEnv: spec.secretEnv,
        isolate: spec.isolate,
        stdin: spec.stdin,
        native: deps.nativeSpawn,
        ...(reaper !== undefined ? { reaper } : {}),
        ...(spec.pty ? { pty: spec.pty } : {}),
        ...(cg && cgroups ? { wrap: <T>(fork: () => T): T => cgroups.spawnInside(cg, fork) } : {}),
      },
      cookie,
    );
    if ('error' in spawned) {
      queueMicrotask(() => this.failSpawn(spawned.error, spawned.status));
      return undefined;
    }
    const child = (this.child = spawned.child);
    child.on('error', this.onChildError);
    if (child.pid === undefined) return child; // 'error' follows on the next tick.
    const pid = (this.pid = child.pid);
    this.spawnSeq = deps.ledger.record(pid);
    const st = readStat(pid);
    this.startTime = st?.startTime ?? 0;
    this.pgid = st?.pgid ?? (spec.isolate ? pid : deps.signaller.ownPgid);
    if (reaper !== undefined) this.watchReaper(child, pid);
    else child.once('exit', (code, signal) => this.onExit(code, signal, false));
    const done = reaper !== undefined ? () => this.reaperExited : () => this.exited;
    watchExit(deps.reactor, spec.id, pid, this.startTime, spec.exitCheckMs, done, () => this.onLeaderGone(pid), child instanceof NativeChild ? () => nativeChildGone(child) : undefined);
    return child;
  }

  /** Subreaper tier: warden-reaper has not exited yet (it goes once the task has no process left). */
  get reaperAlive(): boolean {
    return this.containment === 'subreaper' && !this.reaperExited && this.pid !== undefined;
  }

  /**
   * Subreaper tier, when the task would settle: once nothing of the task is left, warden-reaper
   * exits on its own a moment later, and settling before that would leave it to be seen by
   * whoever scans right after. So this waits for it, at most REAPER_EXIT_WAIT_MS, and calls
   * `then` once when it is gone or the bound passed (`late` says the latter). Not when
   * `leftoversKept()` (killLeftovers off and members alive): the reaper stays with them.
   * Returns true while waiting; false when the task may settle now.
   */
  waitForReaper(leftoversKept: () => boolean, then: () => void, late: (text: string) => void): boolean {
    if (!this.reaperAlive || this.reaperWait === 'done') return false;
    if (this.reaperWait === 'waiting') return true;
    if (leftoversKept()) {
      this.reaperWait = 'done';
      return false;
    }
    this.reaperWait = 'waiting';
    const timer = this.deps.reactor.timer(this.spec.id, REAPER_EXIT_WAIT_MS, () => {
      this.reaperWait = 'done';
      this.onReaperExited = undefined;
      late(`warden-reaper (pid ${this.pid}) had not exited ${REAPER_EXIT_WAIT_MS} ms after the task's last process; settling without it`);
      then();
    });
    this.onReaperExited = () => {
      this.deps.reactor.cancelTimer(this.spec.id, timer);
      this.reaperWait = 'done';
      then();
    };
    return true;
  }

  /** pty mode: sets the terminal's size (the task gets SIGWINCH). False without a live terminal. */
  resizeTerminal(cols: number, rows: number): boolean {
    return this.spec.pty !== undefined && this.child instanceof NativeChild && this.child.resize(cols, rows) === 0;
  }

  /** Whether the leader's process group is still held by a live (or unreaped) leader process. */
  get groupHeld(): boolean {
    return this.containment === 'subreaper' ? !this.reaperExited : !this.exited;
  }

  /**
   * Subreaper tier: the command's exit from the reaper's status line (`exit <code> <signal>`);
   * failing that, the reaper's own exit once its status socket has ended.
   */
  private watchReaper(child: TaskChild, pid: number): void {
    let reaperStatus: [number | null, NodeJS.Signals | null] | undefined;
    let statusEnded = false;
    let line = '';
    const fallBack = (): void => {
      if (reaperStatus !== undefined && statusEnded) this.onExit(reaperStatus[0], reaperStatus[1], false);
    };
    child.once('exit', (code, signal) => {
      this.reaperExited = true;
      this.deps.signaller.markReaped(pid);
      reaperStatus = [code, signal];
      fallBack();
      const cb = this.onReaperExited;
      this.onReaperExited = undefined;
      cb?.();
    });
    const status = child.stdio[5] as Readable | null | undefined;
    if (!status) {
      statusEnded = true;
      return;
    }
    this.deps.reactor.addStream(this.spec.id, REAPER_STREAM, status as never, {
      data: (chunk) => {
        if (this.exited || line.length > MAX_STATUS_LINE) return;
        line += chunk.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl < 0) return;
        const m = /^exit (-?\d+) (\d+)$/.exec(line.slice(0, nl));
        if (!m) return; // not the reaper's: the fallback (its exit status) decides
        const sig = Number(m[2]);
        this.onExit(sig > 0 ? null : Number(m[1]), sig > 0 ? (signalName(sig) as NodeJS.Signals) : null, false);
      },
      end: () => {
        statusEnded = true;
        fallBack();
      },
      error: () => {
        statusEnded = true;
        fallBack();
      },
    });
  }

  /** The exit backstop found the leader process (the reaper, under that tier) gone without an exit event. */
  private onLeaderGone(pid: number): void {
    if (this.containment === 'subreaper') {
      this.reaperExited = true;
      this.deps.signaller.markReaped(pid);
    }
    this.onExit(null, null, true);
    const cb = this.onReaperExited;
    this.onReaperExited = undefined;
    cb?.();
  }

  /** Stops listening to the child (at settle). */
  detach(): void {
    this.child?.removeListener('error', this.onChildError);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, unobserved: boolean): void {
    if (this.exited) return;
    this.exited = true;
    if (this.pid !== undefined && this.containment !== 'subreaper') this.deps.signaller.markReaped(this.pid);
    this.exitCode = code;
    this.exitSignal = signal;
    this.events?.exited(code, signal, unobserved);
  }

  private failSpawn(error: WardenError, status: number): void {
    if (this.exited) return;
    this.exited = true;
    this.events?.spawnFailed(error, status);
  }

  private readonly onChildError = (err: Error): void => {
    if (this.pid === undefined && !this.exited) {
      const f = spawnFailure(this.spec.command, err);
      this.failSpawn(f.error, f.status);
      return;
    }
    this.events?.childError(err);
  };
}
