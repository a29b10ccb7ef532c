import { literalMessage, queryInt, validateBody, type Schema } from './reference-validate.js';
import type { ReferenceStore, StoreResult, TaskInstanceView } from './reference-store.js';
import { FAULT_MODES, type FaultMatch, type FaultMode } from './reference-faults.js';
import { TASK_INSTANCE_STATES, TERMINAL_STATE_NAMES, type TaskInstanceState, type ValidationErrorItem } from './types.js';

export interface RouteContext {
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body; undefined when the request had none. */
  body: unknown;
  store: ReferenceStore;
}

export interface Route {
  method: 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE';
  /** Segments after the area prefix; `:name` is one segment, `*name` the rest (at least one). */
  pattern: string;
  handle: (ctx: RouteContext) => StoreResult;
}

const invalid = (detail: ValidationErrorItem[]): StoreResult => ({ status: 422, body: { detail } });
const str = { kind: 'string', required: true } as const;
const optStr = { kind: 'string', nullable: true } as const;
const dateReq = { kind: 'datetime', required: true } as const;

const TERMINAL_NON_SUCCESS = ['failed', 'skipped', 'removed', 'upstream_failed'];
const STATE_BODIES: Record<string, Schema> = {
  success: { end_date: dateReq, task_outlets: { kind: 'array' }, outlet_events: { kind: 'array' }, rendered_map_index: optStr },
  up_for_retry: { end_date: dateReq, rendered_map_index: optStr, retry_delay_seconds: { kind: 'number', nullable: true, min: 0 }, retry_reason: optStr },
  deferred: {
    classpath: str, trigger_kwargs: { kind: 'object-or-string' }, trigger_timeout: { kind: 'json' }, next_method: str,
    next_kwargs: { kind: 'object-or-string' }, rendered_map_index: optStr, queue: optStr,
  },
  up_for_reschedule: { reschedule_date: dateReq, end_date: dateReq },
};
for (const state of TERMINAL_NON_SUCCESS) STATE_BODIES[state] = { end_date: dateReq, rendered_map_index: optStr, retry_reason: optStr };
const PATCHABLE_STATES = [...new Set([...TERMINAL_STATE_NAMES, ...TERMINAL_NON_SUCCESS])];

/** Routes under `/execution/`, shaped like Airflow 3's Execution API. */
export const executionRoutes: Route[] = [
  {
    method: 'PATCH', pattern: 'task-instances/:id/run',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, { state: { kind: 'string', required: true, oneOf: ['running'] }, hostname: str, unixname: str, pid: { kind: 'int', required: true }, start_date: dateReq }, { extra: 'forbid' });
      return errors.length ? invalid(errors) : store.start(params.id!, body as never);
    },
  },
  {
    method: 'PUT', pattern: 'task-instances/:id/heartbeat',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, { hostname: str, pid: { kind: 'int', required: true } }, { extra: 'forbid' });
      return errors.length ? invalid(errors) : store.heartbeat(params.id!, body as never);
    },
  },
  {
    method: 'PATCH', pattern: 'task-instances/:id/state',
    handle: ({ params, body, store }) => {
      const head = validateBody(body, { state: { kind: 'string', required: true, oneOf: PATCHABLE_STATES } }, { extra: 'allow' });
      if (head.length) return invalid(head);
      const state = (body as { state: string }).state;
      const errors = validateBody(body, { state: str, ...STATE_BODIES[state] }, { extra: 'forbid' });
      return errors.length ? invalid(errors) : store.updateState(params.id!, body as never);
    },
  },
  {
    method: 'PUT', pattern: 'task-instances/:id/rtif',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, {}, { extra: 'allow' });
      return errors.length ? invalid(errors) : store.putRenderedFields(params.id!, body as Record<string, unknown>);
    },
  },
  { method: 'GET', pattern: 'task-instances/:id/rtif', handle: ({ params, store }) => store.getRenderedFields(params.id!) },
  {
    method: 'GET', pattern: 'variables/*key',
    handle: ({ params, store }) => {
      const v = store.getVariable(params.key!);
      if (!v) return { status: 404, body: { detail: { reason: 'not_found', message: `Variable with key '${params.key}' not found` } } };
      return { status: 200, body: { key: params.key, value: v.value } };
    },
  },
  {
    method: 'PUT', pattern: 'variables/*key',
    handle: ({ params, body, store }) => {
      // Airflow's VariablePostBody: `value`, also accepted under its alias `val`; required, nullable.
      const b = body as Record<string, unknown> | undefined;
      const usesAlias = b !== null && typeof b === 'object' && !('value' in b) && 'val' in b;
      const field = usesAlias ? 'val' : 'value';
      const errors = validateBody(body, { [field]: { kind: 'string', required: true, nullable: true }, description: optStr }, { extra: 'forbid' });
      if (errors.length) return invalid(errors);
      store.putVariable(params.key!, b![field] as string | null, (b!.description ?? null) as string | null);
      return { status: 201, body: { message: 'Variable successfully set' } };
    },
  },
  {
    method: 'GET', pattern: 'connections/:id',
    handle: ({ params, store }) => {
      const c = store.getConnection(params.id!);
      if (!c) return { status: 404, body: { detail: { reason: 'not_found', message: `Connection with ID ${params.id} not found` } } };
      return { status: 200, body: c };
    },
  },
  {
    method: 'GET', pattern: 'xcoms/:dag_id/:run_id/:task_id/*key',
    handle: ({ params, query, store }) => {
      const mapIndex = queryInt(query, 'map_index');
      if (mapIndex.error) return invalid([mapIndex.error]);
      const address = { dag_id: params.dag_id!, run_id: params.run_id!, task_id: params.task_id!, key: params.key!, map_index: mapIndex.value ?? -1 };
      const found = store.getXCom(address);
      if (!found.found) {
        const message = `XCom with key='${address.key}' map_index=${address.map_index} not found for task '${address.task_id}' in DAG run '${address.run_id}' of '${address.dag_id}'`;
        return { status: 404, body: { detail: { reason: 'not_found', message } } };
      }
      return { status: 200, body: { key: address.key, value: found.value } };
    },
  },
  {
    method: 'POST', pattern: 'xcoms/:dag_id/:run_id/:task_id/*key',
    handle: ({ params, query, body, store }) => {
      const mapIndex = queryInt(query, 'map_index');
      const mappedLength = queryInt(query, 'mapped_length');
      const errors = [mapIndex.error, mappedLength.error].filter((e): e is ValidationErrorItem => e !== undefined);
      if (errors.length) return invalid(errors);
      store.setXCom({ dag_id: params.dag_id!, run_id: params.run_id!, task_id: params.task_id!, key: params.key!, map_index: mapIndex.value ?? -1 }, body ?? null);
      return { status: 201, body: { message: 'XCom successfully set' } };
    },
  },
];

const tiNotFound = (id: string): StoreResult => ({ status: 404, body: { detail: { reason: 'not_found', message: `No task instance ${id}` } } });
const orNotFound = (id: string, view: TaskInstanceView | undefined): StoreResult => (view ? { status: 200, body: view } : tiNotFound(id));
const stateField = { kind: 'string', oneOf: TASK_INSTANCE_STATES } as const;

/** Routes under `/admin/`: what a scheduler, a user or a test does to the server's state. */
export const adminRoutes: Route[] = [
  {
    method: 'POST', pattern: 'task-instances',
    handle: ({ body, store }) => {
      const errors = validateBody(body ?? {}, {
        id: { kind: 'string', minLength: 1 }, dag_id: { kind: 'string', minLength: 1 }, run_id: { kind: 'string', minLength: 1 },
        task_id: { kind: 'string', minLength: 1 }, map_index: { kind: 'int', min: -1 }, try_number: { kind: 'int', min: 0 },
        max_tries: { kind: 'int', min: 0 }, state: stateField, conf: { kind: 'object', nullable: true },
        next_method: optStr, next_kwargs: { kind: 'object-or-string', nullable: true },
      }, { extra: 'forbid' });
      if (errors.length) return invalid(errors);
      const input = (body ?? {}) as { id?: string };
      if (input.id !== undefined && store.getTaskInstance(input.id)) {
        return { status: 409, body: { detail: { reason: 'already_exists', message: `Task instance ${input.id} already exists` } } };
      }
      return { status: 201, body: store.createTaskInstance(input) };
    },
  },
  { method: 'GET', pattern: 'task-instances', handle: ({ store }) => ({ status: 200, body: store.listTaskInstances() }) },
  { method: 'GET', pattern: 'task-instances/:id', handle: ({ params, store }) => orNotFound(params.id!, store.getTaskInstance(params.id!)) },
  {
    method: 'PATCH', pattern: 'task-instances/:id',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, { state: stateField, archived: { kind: 'bool' } }, { extra: 'forbid' });
      if (errors.length) return invalid(errors);
      const { state, archived } = body as { state?: TaskInstanceState; archived?: boolean };
      if (state === undefined && archived !== true) {
        return invalid([{ type: 'missing', loc: ['body', 'state'], msg: 'Give state, or archived: true', input: body }]);
      }
      if (!store.getTaskInstance(params.id!)) return tiNotFound(params.id!);
      if (state !== undefined) store.forceState(params.id!, state);
      if (archived === true) store.archive(params.id!);
      return orNotFound(params.id!, store.getTaskInstance(params.id!));
    },
  },
  {
    method: 'DELETE', pattern: 'task-instances/:id',
    handle: ({ params, store }) => (store.deleteTaskInstance(params.id!) ? { status: 204 } : tiNotFound(params.id!)),
  },
  {
    method: 'PUT', pattern: 'variables/*key',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, { value: { kind: 'string', required: true, nullable: true }, description: optStr }, { extra: 'forbid' });
      if (errors.length) return invalid(errors);
      const { value, description } = body as { value: string | null; description?: string | null };
      store.putVariable(params.key!, value, description ?? null);
      return { status: 200, body: { key: params.key, value, description: description ?? null } };
    },
  },
  {
    method: 'DELETE', pattern: 'variables/*key',
    handle: ({ params, store }) => (store.deleteVariable(params.key!) ? { status: 204 } : { status: 404, body: { detail: { reason: 'not_found', message: `No variable ${params.key}` } } }),
  },
  {
    method: 'PUT', pattern: 'connections/:id',
    handle: ({ params, body, store }) => {
      const errors = validateBody(body, {
        conn_type: str, host: optStr, schema: optStr, login: optStr, password: optStr,
        port: { kind: 'int', nullable: true, min: 0, max: 65535 }, extra: optStr,
      }, { extra: 'forbid' });
      if (errors.length) return invalid(errors);
      return { status: 200, body: store.putConnection({ ...(body as { conn_type: string }), conn_id: params.id! }) };
    },
  },
  {
    method: 'POST', pattern: 'faults',
    handle: ({ body, store }) => {
      const errors = validateBody(body, { match: str, mode: { kind: 'string', required: true, oneOf: FAULT_MODES }, count: { kind: 'int', min: 1 } }, { extra: 'forbid' });
      const match = (body as { match?: unknown } | undefined)?.match;
      if (!errors.length && typeof match === 'string' && !['start', 'heartbeat', 'state', 'any'].includes(match) && !match.startsWith('/')) {
        errors.push({ type: 'value_error', loc: ['body', 'match'], msg: `${literalMessage(['start', 'heartbeat', 'state', 'any'])}, or a path prefix starting with '/'`, input: match });
      }
      if (errors.length) return invalid(errors);
      const rule = body as { match: FaultMatch; mode: FaultMode; count?: number };
      return { status: 201, body: store.addFault(rule) };
    },
  },
  { method: 'GET', pattern: 'faults', handle: ({ store }) => ({ status: 200, body: store.faults.list() }) },
  { method: 'POST', pattern: 'faults/release', handle: ({ store }) => ({ status: 200, body: { released: store.releaseHeld() } }) },
  { method: 'DELETE', pattern: 'faults', handle: ({ store }) => (store.clearFaults(), { status: 204 }) },
];

/**
 * Finds the route for `segments` (decoded path segments after the area prefix). `methodMismatch`
 * is true when a route matches the path but not the method (405).
 */
export function matchRoute(routes: Route[], method: string, segments: string[]): { route?: Route; params: Record<string, string>; methodMismatch: boolean } {
  let methodMismatch = false;
  for (const route of routes) {
    const params = matchPattern(route.pattern, segments);
    if (!params) continue;
    if (route.method === method) return { route, params, methodMismatch: false };
    methodMismatch = true;
  }
  return { params: {}, methodMismatch };
}

function matchPattern(pattern: string, segments: string[]): Record<string, string> | undefined {
  const parts = pattern.split('/');
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part.startsWith('*')) {
      if (segments.length <= i || segments.slice(i).some((s) => s === '')) return undefined;
      params[part.slice(1)] = segments.slice(i).join('/');
      return params;
    }
    const seg = segments[i];
    if (seg === undefined || seg === '') return undefined;
    if (part.startsWith(':')) params[part.slice(1)] = seg;
    else if (part !== seg) return undefined;
  }
  return segments.length === parts.length ? params : undefined;
}
