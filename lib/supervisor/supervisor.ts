import { EventEmitter } from 'eventemitter3';
import { WardenError } from '../errors.js';
import { Reactor } from '../reactor/reactor.js';
import { CgroupTier, type TaskCgroup } from '../signal/cgroup.js';
import { isLinux, platformName } from '../signal/proc.js';
import { Signaller } from '../signal/signaller.js';
import { resolveSpec } from './options.js';
import { Task, type WardenRecord } from './task.js';
import type { TaskResult, TaskSpec } from './types.js';

export interface SupervisorOptions {
  /**
   * Containment to use: `'auto'` (default) takes a cgroup per task where the cgroup v2 hierarchy
   * is writable (root, or a delegated subtree) and falls back to process group + environment
   * cookie; `'group'` never uses cgroups.
   */
  containment?: 'auto' | 'group';
}

export interface SupervisorEvents {
  /** Every supervisor-authored record of every task, and the supervisor's own. */
  record: (record: WardenRecord) => void;
  /** A task settled. */
  settled: (result: TaskResult) => void;
}

/**
 * Runs many tasks on one event loop: one reactor, one signaller, one timer wheel.
 *
 * Invariants:
 * 1. Every task it started is in `tasks` until its result settles, then removed.
 * 2. `close()` ends every task through the same teardown ladder (reason `supervisor-stop`), and
 *    resolves only when all have settled; afterwards the supervisor holds no handle and no timer.
 * 3. After `close()` was called, `start()` throws ERR_SUPERVISOR_CLOSED.
 */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly reactor: Reactor;
  readonly signaller: Signaller;
  readonly tasks = new Map<string, Task>();
  private readonly cgroups: CgroupTier | undefined;
  private readonly leftoverCgroups = new Set<TaskCgroup>();
  private closing: Promise<void> | undefined;

  constructor(options: SupervisorOptions = {}) {
    super();
    if (!isLinux) throw new WardenError('ERR_UNSUPPORTED_PLATFORM', `warden supervises process trees through /proc and runs on Linux only; this is ${platformName}.`);
    const containment = options.containment ?? 'auto';
    if (containment !== 'auto' && containment !== 'group') throw new TypeError(`warden: containment must be 'auto' or 'group', got ${JSON.stringify(containment)}.`);
    this.reactor = new Reactor((err) => this.log('error', `internal timer callback failed: ${(err as Error)?.message ?? String(err)}`));
    this.signaller = new Signaller((err) => this.log('error', err.message, { code: err.code }));
    this.cgroups = containment === 'auto' ? CgroupTier.detect() : undefined;
  }

  /** The strongest containment this supervisor can give a task. */
  get containment(): 'cgroup' | 'group+cookie' {
    return this.cgroups?.usable ? 'cgroup' : 'group+cookie';
  }

  /**
   * Starts a task. Throws (synchronously) only for an invalid spec or a closed supervisor; every
   * failure of the process itself (not found, not executable) is reported in `task.result`.
   */
  start(spec: TaskSpec): Task {
    if (this.closing) throw new WardenError('ERR_SUPERVISOR_CLOSED', 'this supervisor is closing or closed; create a new Supervisor to start more tasks.');
    const resolved = resolveSpec(spec);
    if (this.tasks.has(resolved.id)) throw new WardenError('ERR_INVALID_OPTION', `a task with id ${resolved.id} is already running under this supervisor; ids must be unique.`);
    const task = new Task(resolved, {
      reactor: this.reactor,
      signaller: this.signaller,
      cgroups: this.cgroups,
      onSettled: (t) => this.onSettled(t),
      keepCgroup: (cg) => this.keepForRemoval(cg),
    });
    task.on('record', (r) => this.emit('record', r));
    this.tasks.set(task.id, task);
    task.start();
    return task;
  }

  /** Starts a task and resolves with its result. */
  async run(spec: TaskSpec): Promise<TaskResult> {
    return this.start(spec).result;
  }

  /** Ends every task (reason `supervisor-stop`) and waits for all of them to settle. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        const pending = [...this.tasks.values()];
        for (const task of pending) task.terminate('supervisor-stop');
        await Promise.all(pending.map((t) => t.result));
        for (const cg of this.leftoverCgroups) if (cg.remove()) this.leftoverCgroups.delete(cg);
        this.reactor.wheel.clear();
      })();
    }
    return this.closing;
  }

  private onSettled(task: Task): void {
    this.tasks.delete(task.id);
    void task.result.then((r) => this.emit('settled', r));
    for (const cg of this.leftoverCgroups) if (cg.remove()) this.leftoverCgroups.delete(cg);
  }

  /** Internal: a cgroup that could not be removed yet (EBUSY) is retried on later settles. */
  keepForRemoval(cg: TaskCgroup): void {
    if (this.leftoverCgroups.size < 1024) this.leftoverCgroups.add(cg);
  }

  private log(level: WardenRecord['level'], event: string, fields: Record<string, unknown> = {}): void {
    this.emit('record', { timestamp: new Date().toISOString(), level, logger: 'warden', event, ...fields });
  }
}
