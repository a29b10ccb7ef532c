import { EventEmitter } from 'eventemitter3';
import { WardenError } from '../errors.js';
import { Reactor } from '../reactor/reactor.js';
import { CgroupTier, type TaskCgroup } from '../signal/cgroup.js';
import { isLinux, platformName } from '../signal/proc.js';
import { Signaller } from '../signal/signaller.js';
import { SpawnLedger } from '../signal/spawn-ledger.js';
import { nativeSpawnAvailable } from '../process/native-spawn.js';
import { reaperPath } from '../process/native-binding.js';
import { makeNonDumpable } from '../process/hardening.js';
import { ControlPlaneClient } from '../control-plane/client.js';
import { HandlerRegistry, type Handler, type HandlerContext } from '../comms/handlers.js';
import { defaultHandlers } from '../control-plane/handlers.js';
import { msOption, resolveSpec, type ResolvedSpec } from './options.js';
import type { CommsSettings, TaskHandlerContext } from './task-comms.js';
import type { ControlPlaneSettings } from './task-control-plane.js';
import { Task, type TaskDeps, type WardenRecord } from './task.js';
import type { TaskResult, TaskSpec } from './types.js';

export interface SupervisorOptions {
  /**
   * Containment to use: `'auto'` (default) takes a cgroup per task where the cgroup v2 hierarchy
   * is writable (root, or a delegated subtree), else the subreaper tier for isolated tasks where
   * warden-reaper was built (the native spawner's build), else process group + environment
   * cookie. `'subreaper'` skips cgroups and takes the subreaper tier (an error where it is not
   * built); `'group'` uses neither.
   */
  containment?: 'auto' | 'subreaper' | 'group';
  /**
   * How tasks start: `'auto'` (default) through posix_spawn(3) when warden's native spawner was
   * built at install (no copy of the supervisor's page tables per spawn: see README), else
   * through child_process; `'node'` always through child_process. The child sees the same fds,
   * environment, session and signal state either way.
   */
  spawner?: 'auto' | 'node';
  /**
   * Marks this process non-dumpable (prctl PR_SET_DUMPABLE 0) before any task starts, so tasks
   * running as the same user cannot read its memory or `/proc/<pid>/environ` (where a token
   * passed in the environment sits) nor ptrace it. Process-wide and for the rest of the process's
   * life (core dumps are off too), hence off by default; `warden run` turns it on when it holds a
   * control-plane token. Needs the native addon: throws WardenError `ERR_UNSUPPORTED` without it.
   */
  nonDumpable?: boolean;
  /** Bounds of each task's comms channel (fd 4). */
  comms?: CommsSettings;
  /**
   * The control plane tasks with a `ti` run against. Without it, tasks start at once (the
   * startup frame is sent right after spawn) and no HTTP call is made.
   */
  controlPlane?: ControlPlaneOptions;
}

export interface ControlPlaneOptions {
  /** The base under which `/execution/...` lives, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Bearer token. Never passed to a child. */
  token: string;
  /**
   * Per request. Default 5000. A heartbeat gets min(this, 3/4 of heartbeatIntervalMs), so a hung
   * one has failed before the next tick and each tick counts: `heartbeat-lost` comes within
   * heartbeatIntervalMs * (maxFailedHeartbeats + 1) of the last good heartbeat, whatever the server does.
   */
  requestTimeoutMs?: number;
  /** Default 5000; the first heartbeat goes one interval after the start was accepted. */
  heartbeatIntervalMs?: number;
  /** Consecutive failed heartbeats that end a task (`heartbeat-lost`). Default 3; at least 1. */
  maxFailedHeartbeats?: number;
  /** Retries of the start and of state calls (jittered exponential backoff). Default 5. */
  startRetries?: number;
  /** First backoff wait. Default 500. */
  minRetryMs?: number;
  /** After a task reported a terminal state, how long it may keep running. Default 20000. */
  overtimeMs?: number;
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
  /** How this supervisor starts tasks: `'native'` (posix_spawn) or `'node'` (child_process). */
  readonly spawner: 'native' | 'node';
  readonly tasks = new Map<string, Task>();
  private readonly cgroups: CgroupTier | undefined;
  /** warden-reaper's path when the subreaper tier is on. */
  private readonly reaper: string | undefined;
  private readonly leftoverCgroups = new Set<TaskCgroup>();
  private closing: Promise<void> | undefined;
  private readonly handlers = new Map<string, Handler<any, unknown, TaskHandlerContext>>(); // eslint-disable-line @typescript-eslint/no-explicit-any
  private readonly comms: CommsSettings;
  private readonly controlPlane: ControlPlaneSettings | undefined;
  /** The deps, with the registry, of tasks without a control plane (see `depsFor`); undefined: make anew. */
  private sharedDeps: TaskDeps | undefined;
  /** What every task gets from its supervisor, made once. */
  private readonly taskDeps: Omit<TaskDeps, 'handlers'>;

  constructor(options: SupervisorOptions = {}) {
    super();
    if (!isLinux) throw new WardenError('ERR_UNSUPPORTED_PLATFORM', `warden supervises process trees through /proc and runs on Linux only; this is ${platformName}.`);
    const containment = options.containment ?? 'auto';
    if (containment !== 'auto' && containment !== 'subreaper' && containment !== 'group') throw new TypeError(`warden: containment must be 'auto', 'subreaper' or 'group', got ${JSON.stringify(containment)}.`);
    const spawner = options.spawner ?? 'auto';
    if (spawner !== 'auto' && spawner !== 'node') throw new TypeError(`warden: spawner must be 'auto' or 'node', got ${JSON.stringify(spawner)}.`);
    this.spawner = spawner === 'auto' && nativeSpawnAvailable ? 'native' : 'node';
    // The reaper is started by the native spawner (it needs fd 5 and the command resolved first).
    const reaper = this.spawner === 'native' && containment !== 'group' ? reaperPath : undefined;
    if (containment === 'subreaper' && reaper === undefined) {
      throw new WardenError('ERR_UNSUPPORTED', `warden: containment 'subreaper' needs warden-reaper and the native spawner, ${this.spawner !== 'native' ? 'but tasks start through child_process here (spawner \'node\', WARDEN_SPAWNER=node, a worker thread, or no addon)' : 'but build/Release/warden-reaper was not built (npm install builds it with node-gyp)'}; use containment 'auto' or 'group'.`);
    }
    if (options.nonDumpable !== undefined && typeof options.nonDumpable !== 'boolean') throw new TypeError(`warden: nonDumpable must be a boolean, got ${JSON.stringify(options.nonDumpable)}.`);
    if (options.nonDumpable) makeNonDumpable();
    this.reactor = new Reactor((err) => this.log('error', `internal timer callback failed: ${(err as Error)?.message ?? String(err)}`));
    this.signaller = new Signaller((err) => this.log('error', err.message, { code: err.code }));
    this.cgroups = containment === 'auto' ? CgroupTier.detect() : undefined;
    this.reaper = reaper;
    this.comms = { ...(options.comms ?? {}) };
    this.controlPlane = options.controlPlane ? resolveControlPlane(options.controlPlane) : undefined;
    this.taskDeps = {
      comms: this.comms,
      controlPlane: this.controlPlane,
      reactor: this.reactor,
      signaller: this.signaller,
      nativeSpawn: this.spawner === 'native',
      ledger: new SpawnLedger(),
      cgroups: this.cgroups,
      reaper: this.reaper,
      onSettled: (t) => this.onSettled(t),
      keepCgroup: (cg) => this.keepForRemoval(cg),
      onRecord: (r) => this.emit('record', r),
      wantsRecords: () => this.listenerCount('record') > 0,
    };
  }

  /**
   * Registers the handler of a comms request type for every task this supervisor starts from now
   * on (tasks already running keep the handlers they started with). It replaces the default one
   * (the control-plane proxies, `MaskSecret`) of the same type. One executor handler per type:
   * registering a type a second time throws WardenError `ERR_INVALID_OPTION` (two modules
   * answering the same type is a bug worth hearing about), as does a bad type or handler.
   */
  handle(type: string, handler: Handler<any, unknown, TaskHandlerContext>): this { // eslint-disable-line @typescript-eslint/no-explicit-any
    if (typeof type !== 'string' || type === '') throw new WardenError('ERR_INVALID_OPTION', `handle(type, handler) needs a non-empty request type string, got ${JSON.stringify(type)}.`);
    if (typeof handler !== 'function') throw new WardenError('ERR_INVALID_OPTION', `the handler of ${type} must be a function, got ${typeof handler}.`);
    if (this.handlers.has(type)) throw new WardenError('ERR_INVALID_OPTION', `a handler for request type "${type}" is already registered on this supervisor; register each type once.`);
    this.handlers.set(type, handler);
    this.sharedDeps = undefined;
    return this;
  }

  /**
   * What a new task gets from its supervisor, with its handlers. A task with a control plane gets
   * a registry of its own (its default handlers are bound to its task instance; they reach the
   * task only once it runs); every other task shares one registry, and one deps object, made again
   * after each `handle()` so that running tasks keep the handlers they started with.
   */
  private depsFor(spec: ResolvedSpec, task: () => Task): TaskDeps {
    const cp = this.controlPlane;
    const ti = spec.ti;
    if (!cp || !ti) {
      return (this.sharedDeps ??= { ...this.taskDeps, handlers: this.fillRegistry(new HandlerRegistry(), { MaskSecret: maskSecretHandler }) });
    }
    const defaults = defaultHandlers(
      cp.client,
      { id: ti.id, dagId: ti.dagId ?? '', runId: ti.runId ?? '', taskId: ti.taskId ?? '', ...(ti.mapIndex !== undefined ? { mapIndex: ti.mapIndex } : {}) },
      {
        onTerminalState: (state, body) => task().control?.onTerminalState(state, body),
        maskSecret: (value) => task().maskSecret(value),
      },
    );
    return { ...this.taskDeps, handlers: this.fillRegistry(new HandlerRegistry(), defaults) };
  }

  /** The defaults first, then the executor's handlers over them. */
  private fillRegistry(
    registry: HandlerRegistry<any, TaskHandlerContext>, // eslint-disable-line @typescript-eslint/no-explicit-any
    defaults: Record<string, unknown>,
  ): HandlerRegistry<any, TaskHandlerContext> { // eslint-disable-line @typescript-eslint/no-explicit-any
    for (const [type, fn] of Object.entries(defaults)) registry.replace(type, fn as never);
    for (const [type, fn] of this.handlers) registry.replace(type, fn);
    return registry;
  }

  /** The strongest containment this supervisor can give a task. */
  get containment(): 'cgroup' | 'subreaper' | 'group+cookie' {
    return this.cgroups?.usable ? 'cgroup' : this.reaper !== undefined ? 'subreaper' : 'group+cookie';
  }

  /**
   * Starts a task. Throws (synchronously) only for an invalid spec or a closed supervisor; every
   * failure of the process itself (not found, not executable) is reported in `task.result`.
   */
  start(spec: TaskSpec): Task {
    if (this.closing) throw new WardenError('ERR_SUPERVISOR_CLOSED', 'this supervisor is closing or closed; create a new Supervisor to start more tasks.');
    const resolved = resolveSpec(spec);
    if (this.tasks.has(resolved.id)) throw new WardenError('ERR_INVALID_OPTION', `a task with id ${resolved.id} is already running under this supervisor; ids must be unique.`);
    if (resolved.ti && !this.controlPlane) {
      throw new WardenError('ERR_INVALID_OPTION', `task ${resolved.id} names a task instance (ti) but this supervisor has no control plane; pass {controlPlane: {url, token}} to new Supervisor().`);
    }
    const task: Task = new Task(resolved, this.depsFor(resolved, () => task));
    this.tasks.set(task.id, task);
    task.start();
    return task;
  }

  /**
   * Starts a task and resolves with its result; an invalid spec or a closed supervisor rejects.
   * Returns the task's own result promise (no async wrapper: one promise hop less per task).
   */
  run(spec: TaskSpec): Promise<TaskResult> {
    try {
      return this.start(spec).result;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Ends every task (reason `supervisor-stop`) and waits for all of them to settle. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        const pending = [...this.tasks.values()];
        for (const task of pending) task.terminate('supervisor-stop');
        await Promise.all(pending.map((t) => t.result));
        for (const cg of this.leftoverCgroups) if (cg.remove()) this.leftoverCgroups.delete(cg);
        this.cgroups?.drain();
        this.reactor.wheel.clear();
      })();
    }
    return this.closing;
  }

  private onSettled(task: Task): void {
    this.tasks.delete(task.id);
    if (this.listenerCount('settled') > 0) void task.result.then((r) => this.emit('settled', r));
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

/** MaskSecret for tasks without a control plane: one function for all of them. */
async function maskSecretHandler(body: { value?: unknown }, ctx: HandlerContext<TaskHandlerContext>): Promise<{ ok: true }> {
  if (typeof body.value !== 'string') throw new WardenError('ERR_BAD_REQUEST', 'MaskSecret needs a string value');
  ctx.context.maskSecret(body.value);
  return { ok: true };
}

function resolveControlPlane(o: ControlPlaneOptions): ControlPlaneSettings {
  if (o === null || typeof o !== 'object') throw new TypeError('warden: controlPlane must be an object {url, token}.');
  const requestTimeoutMs = msOption('controlPlane.requestTimeoutMs', o.requestTimeoutMs, 5000, 1);
  const heartbeatIntervalMs = msOption('controlPlane.heartbeatIntervalMs', o.heartbeatIntervalMs, 5000, 1);
  const retries = msOption('controlPlane.startRetries', o.startRetries, 5, 0);
  const minRetryMs = msOption('controlPlane.minRetryMs', o.minRetryMs, 500, 0);
  const base = { baseUrl: o.url, token: o.token, minRetryMs, maxRetryMs: Math.max(minRetryMs, 16_000) };
  return {
    client: new ControlPlaneClient({ ...base, requestTimeoutMs, retries }),
    heartbeatClient: new ControlPlaneClient({ ...base, requestTimeoutMs: Math.min(requestTimeoutMs, Math.max(1, Math.floor((heartbeatIntervalMs * 3) / 4))), retries: 0 }),
    heartbeatIntervalMs,
    maxFailedHeartbeats: msOption('controlPlane.maxFailedHeartbeats', o.maxFailedHeartbeats, 3, 1),
    overtimeMs: msOption('controlPlane.overtimeMs', o.overtimeMs, 20_000, 0),
  };
}
