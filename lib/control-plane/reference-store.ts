import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { WardenError } from '../errors.js';
import { FaultTable, type FaultRule, type FaultView } from './reference-faults.js';
import type { ConnectionResponse, RunContext, TaskInstanceState } from './types.js';
import type {
  CallRecord, CreateTaskInstanceInput, ReferenceStoreOptions, StoredVariable, StoreResult, TaskInstanceView, XComAddress,
} from './reference-types.js';

export type * from './reference-types.js';

/**
 * The reference control plane's state, usable without HTTP (tests and examples seed and inspect it
 * directly). Execution semantics follow Airflow 3's API server.
 *
 * Events: `call` (CallRecord & {tiId}) after each Execution API answer or fault, `fault`
 * ({method, path, mode}) when a fault is applied (for `hang`: the request is now held).
 *
 * Invariants:
 * - Each collection holds at most `maxEntries` entries; a write beyond is refused.
 * - A task instance keeps at most `maxCallsPerTask` call records.
 * - Views returned are copies: mutating them does not change the store.
 */
export class ReferenceStore extends EventEmitter {
  readonly faults = new FaultTable();
  readonly #tis = new Map<string, TaskInstanceView>();
  readonly #variables = new Map<string, StoredVariable>();
  readonly #connections = new Map<string, ConnectionResponse>();
  readonly #xcoms = new Map<string, unknown>();
  readonly #maxEntries: number;
  readonly #maxCalls: number;

  constructor(options: ReferenceStoreOptions = {}) {
    super();
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#maxCalls = options.maxCallsPerTask ?? 1000;
  }

  createTaskInstance(input: CreateTaskInstanceInput = {}): TaskInstanceView {
    const id = input.id ?? randomUUID();
    if (this.#tis.has(id)) throw new WardenError('ERR_INVALID_OPTION', `task instance ${id} already exists; pick another id.`);
    this.#bound(this.#tis);
    const now = new Date().toISOString();
    const ti: TaskInstanceView = {
      id, dag_id: input.dag_id ?? 'example_dag', run_id: input.run_id ?? `manual__${now}`, task_id: input.task_id ?? 'task',
      map_index: input.map_index ?? -1, try_number: input.try_number ?? 1, max_tries: input.max_tries ?? 0,
      state: input.state ?? 'queued', archived: false, hostname: null, unixname: null, pid: null, start_date: null, end_date: null,
      next_method: input.next_method ?? null, next_kwargs: input.next_kwargs ?? null, conf: input.conf ?? null, created_at: now,
      heartbeats: 0, last_heartbeat_at: null, starts: 0, final_state: null, state_reports: 0, rendered_fields: null, calls: [],
    };
    this.#tis.set(id, ti);
    return structuredClone(ti);
  }

  getTaskInstance(id: string): TaskInstanceView | undefined {
    const ti = this.#tis.get(id);
    return ti && structuredClone(ti);
  }

  listTaskInstances(): TaskInstanceView[] {
    return [...this.#tis.values()].map((ti) => structuredClone(ti));
  }

  /** What a scheduler reset or a user's REST PATCH does: set the state, nothing else. */
  forceState(id: string, state: TaskInstanceState): TaskInstanceView | undefined {
    const ti = this.#tis.get(id);
    if (!ti) return undefined;
    ti.state = state;
    return structuredClone(ti);
  }

  /**
   * Deletes the task instance (a DAG run deleted while its task runs): every later call on it,
   * heartbeats included, gets 404. Its call log goes with it; `call` events still name it.
   */
  deleteTaskInstance(id: string): boolean {
    return this.#tis.delete(id);
  }

  /** Clear while running: the row moves to history; heartbeats now get 410. */
  archive(id: string): TaskInstanceView | undefined {
    const ti = this.#tis.get(id);
    if (!ti) return undefined;
    ti.archived = true;
    return structuredClone(ti);
  }

  putVariable(key: string, value: string | null, description: string | null = null): void {
    if (!this.#variables.has(key)) this.#bound(this.#variables);
    this.#variables.set(key, { value, description });
  }

  getVariable(key: string): StoredVariable | undefined {
    const v = this.#variables.get(key);
    return v && { ...v };
  }

  deleteVariable(key: string): boolean {
    return this.#variables.delete(key);
  }

  putConnection(conn: Partial<ConnectionResponse> & { conn_id: string; conn_type: string }): ConnectionResponse {
    if (!this.#connections.has(conn.conn_id)) this.#bound(this.#connections);
    const full: ConnectionResponse = {
      conn_id: conn.conn_id, conn_type: conn.conn_type, host: conn.host ?? null, schema: conn.schema ?? null,
      login: conn.login ?? null, password: conn.password ?? null, port: conn.port ?? null, extra: conn.extra ?? null,
    };
    this.#connections.set(conn.conn_id, full);
    return { ...full };
  }

  getConnection(connId: string): ConnectionResponse | undefined {
    const c = this.#connections.get(connId);
    return c && { ...c };
  }

  setXCom(address: XComAddress, value: unknown): void {
    const k = xcomKey(address);
    if (!this.#xcoms.has(k)) this.#bound(this.#xcoms);
    this.#xcoms.set(k, structuredClone(value));
  }

  /** `{found: false}` when absent, so a stored null stays distinguishable. */
  getXCom(address: XComAddress): { found: boolean; value: unknown } {
    const k = xcomKey(address);
    return this.#xcoms.has(k) ? { found: true, value: structuredClone(this.#xcoms.get(k)) } : { found: false, value: undefined };
  }

  addFault(rule: FaultRule): FaultView {
    return this.faults.add(rule);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  /** Serves every call a `hold` fault keeps waiting; returns how many there were. */
  releaseHeld(): number {
    return this.faults.release();
  }

  // --- Execution API semantics (bodies already validated by the routes) ---

  start(id: string, body: { hostname: string; unixname: string; pid: number; start_date: string }): StoreResult {
    const ti = this.#live(id);
    if (!ti) return notFound();
    const previous = ti.state;
    const duplicate = previous === 'running' && ti.hostname === body.hostname && ti.unixname === body.unixname && ti.pid === body.pid;
    if (!duplicate && previous !== 'queued' && previous !== 'restarting') {
      return { status: 409, body: { detail: { reason: 'invalid_state', message: 'TI was not in a state where it could be marked as running', previous_state: previous } } };
    }
    const resuming = ti.next_kwargs !== null && ti.next_kwargs !== undefined;
    Object.assign(ti, { state: 'running', hostname: body.hostname, unixname: body.unixname, pid: body.pid, end_date: null });
    if (!resuming || ti.start_date === null) ti.start_date = body.start_date;
    if (!duplicate) ti.starts += 1;
    const xcomKeys = ti.next_method ? [] : this.#xcomKeysOf(ti);
    const context: RunContext = {
      dag_run: {
        dag_id: ti.dag_id, run_id: ti.run_id, logical_date: ti.created_at, data_interval_start: ti.created_at, data_interval_end: ti.created_at,
        run_after: ti.created_at, start_date: ti.created_at, end_date: null, clear_number: 0, run_type: 'manual', state: 'running',
        conf: ti.conf, triggering_user_name: null, consumed_asset_events: [], partition_key: null,
      },
      task_reschedule_count: 0, max_tries: ti.max_tries, variables: [], connections: [], xcom_keys_to_clear: xcomKeys,
      should_retry: previous === 'restarting' || (ti.max_tries > 0 && ti.try_number <= ti.max_tries),
    };
    if (ti.next_method) Object.assign(context, { next_method: ti.next_method, next_kwargs: ti.next_kwargs, start_date: ti.start_date });
    return { status: 200, body: context };
  }

  heartbeat(id: string, body: { hostname: string; pid: number }): StoreResult {
    const ti = this.#tis.get(id);
    if (!ti) return notFound();
    if (ti.archived) {
      return { status: 410, body: { detail: { reason: 'not_found', message: 'Task Instance not found, it may have been moved to the Task Instance History table' } } };
    }
    if (ti.hostname !== body.hostname || ti.pid !== body.pid) {
      return { status: 409, body: { detail: { reason: 'running_elsewhere', message: 'TI is already running elsewhere', current_hostname: ti.hostname, current_pid: ti.pid } } };
    }
    if (ti.state !== 'running') {
      return { status: 409, body: { detail: { reason: 'not_running', message: 'TI is no longer in the running state and task should terminate', current_state: ti.state } } };
    }
    ti.heartbeats += 1;
    ti.last_heartbeat_at = new Date().toISOString();
    return { status: 204 };
  }

  updateState(id: string, body: Record<string, unknown> & { state: string }): StoreResult {
    const ti = this.#live(id);
    if (!ti) return notFound();
    if (ti.state === body.state) return { status: 200 };
    if (ti.state !== 'running') {
      return { status: 409, body: { detail: { reason: 'invalid_state', message: 'TI was not in the running state so it cannot be updated', previous_state: ti.state } } };
    }
    ti.state = body.state as TaskInstanceState;
    if (typeof body.end_date === 'string') ti.end_date = body.end_date;
    if (body.state === 'deferred') {
      ti.next_method = body.next_method as string;
      ti.next_kwargs = (body.next_kwargs ?? {}) as Record<string, unknown> | string;
    } else {
      ti.next_method = null;
      ti.next_kwargs = null;
    }
    ti.final_state = { state: body.state, body: structuredClone(body), at: new Date().toISOString() };
    ti.state_reports += 1;
    return { status: 204 };
  }

  putRenderedFields(id: string, fields: Record<string, unknown>): StoreResult {
    const ti = this.#tis.get(id);
    if (!ti) return { status: 404, body: { detail: 'Not Found' } };
    if (ti.archived) return { status: 410, body: { detail: { reason: 'not_found', message: 'Task Instance was archived (cleared or retried)' } } };
    ti.rendered_fields = structuredClone(fields);
    return { status: 201, body: { message: 'Rendered task instance fields successfully set' } };
  }

  getRenderedFields(id: string): StoreResult {
    const ti = this.#live(id);
    if (!ti) return notFound();
    return { status: 200, body: structuredClone(ti.rendered_fields ?? {}) };
  }

  /** Appends to the task instance's bounded call log (when the id is known) and emits `call`. */
  recordCall(tiId: string | undefined, record: CallRecord): void {
    const ti = tiId === undefined ? undefined : this.#tis.get(tiId);
    if (ti) {
      ti.calls.push(record);
      if (ti.calls.length > this.#maxCalls) ti.calls.splice(0, ti.calls.length - this.#maxCalls);
    }
    this.emit('call', { ...record, tiId });
  }

  #live(id: string): TaskInstanceView | undefined {
    const ti = this.#tis.get(id);
    return ti && !ti.archived ? ti : undefined;
  }

  #xcomKeysOf(ti: TaskInstanceView): string[] {
    const keys: string[] = [];
    for (const k of this.#xcoms.keys()) {
      const [dag, run, task, mapIndex, key] = JSON.parse(k) as [string, string, string, number, string];
      if (dag === ti.dag_id && run === ti.run_id && task === ti.task_id && (ti.map_index < 0 || mapIndex === ti.map_index)) keys.push(key);
    }
    return keys;
  }

  #bound(map: Map<string, unknown>): void {
    if (map.size >= this.#maxEntries) {
      throw new WardenError('ERR_INVALID_OPTION', `the reference control plane holds at most ${this.#maxEntries} entries per collection; delete some or raise maxEntries.`);
    }
  }
}

function notFound(): StoreResult {
  return { status: 404, body: { detail: { reason: 'not_found', message: 'Task Instance not found' } } };
}

function xcomKey(a: XComAddress): string {
  return JSON.stringify([a.dag_id, a.run_id, a.task_id, a.map_index ?? -1, a.key]);
}
