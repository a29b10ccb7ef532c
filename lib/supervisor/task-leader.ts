import type { WardenError } from '../errors.js';
import { watchExit } from '../process/exit-backstop.js';
import { NativeChild, pollNativeExits } from '../process/native-spawn.js';
import { spawnFailure, spawnTask, type TaskChild } from '../process/spawn-task.js';
import type { TaskCgroup } from '../signal/cgroup.js';
import { readForkCountAtMost100msOld, readStat } from '../signal/proc.js';
import type { ResolvedSpec } from './options.js';
import type { TaskDeps } from './task-types.js';
import type { Containment } from './types.js';

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
    child.once('exit', (code, signal) => this.onExit(code, signal, false));
    watchExit(deps.reactor, spec.id, pid, this.startTime, spec.exitCheckMs, () => this.exited, () => this.onExit(null, null, true), child instanceof NativeChild ? pollNativeExits : undefined);
    return child;
  }

  /** Stops listening to the child (at settle). */
  detach(): void {
    this.child?.removeListener('error', this.onChildError);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, unobserved: boolean): void {
    if (this.exited) return;
    this.exited = true;
    if (this.pid !== undefined) this.deps.signaller.markReaped(this.pid);
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
