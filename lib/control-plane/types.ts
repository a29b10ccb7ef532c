/**
 * JSON shapes of the Execution API that warden speaks, after Apache Airflow 3's
 * (`airflow/api_fastapi/execution_api/datamodels`). Field names are Airflow's, snake_case, so a real
 * Airflow API server and the reference control plane accept the same bodies.
 */

/** A date-time on the wire: ISO 8601 with a zone (`2025-01-01T00:00:00.000Z`). */
export type IsoDateTime = string;

/** Task-instance states the server can hold. */
export type TaskInstanceState =
  | 'scheduled'
  | 'queued'
  | 'running'
  | 'restarting'
  | 'success'
  | 'failed'
  | 'skipped'
  | 'removed'
  | 'up_for_retry'
  | 'up_for_reschedule'
  | 'upstream_failed'
  | 'deferred'
  | 'none';

export const TASK_INSTANCE_STATES: readonly TaskInstanceState[] = [
  'scheduled', 'queued', 'running', 'restarting', 'success', 'failed', 'skipped', 'removed',
  'up_for_retry', 'up_for_reschedule', 'upstream_failed', 'deferred', 'none',
];

/** States a `PATCH task-instances/{id}/state` may set. */
export type TerminalStateName = 'success' | 'failed' | 'skipped' | 'removed' | 'up_for_retry' | 'deferred' | 'up_for_reschedule';

export const TERMINAL_STATE_NAMES: readonly TerminalStateName[] = [
  'success', 'failed', 'skipped', 'removed', 'up_for_retry', 'deferred', 'up_for_reschedule',
];

/** `TIEnterRunningPayload` minus `state`, which the client adds (`'running'`). */
export interface StartTaskBody {
  hostname: string;
  unixname: string;
  pid: number;
  start_date: IsoDateTime | Date;
}

/** `TIHeartbeatInfo`. */
export interface HeartbeatBody {
  hostname: string;
  pid: number;
}

/**
 * Body of `PATCH task-instances/{id}/state`. The extra fields depend on `state`, as Airflow's union
 * of payloads: `success` {task_outlets?, outlet_events?, rendered_map_index?}; `failed` | `skipped`
 * | `removed` {rendered_map_index?, retry_reason?}; `up_for_retry` {retry_delay_seconds?,
 * retry_reason?, rendered_map_index?}; `deferred` {classpath, next_method, trigger_kwargs?,
 * trigger_timeout?, next_kwargs?, rendered_map_index?} (no end_date); `up_for_reschedule`
 * {reschedule_date, end_date}.
 */
export interface FinishBody {
  state: TerminalStateName;
  end_date?: IsoDateTime | Date;
  [field: string]: unknown;
}

/** The dag run part of `TIRunContext`. */
export interface DagRunInfo {
  dag_id: string;
  run_id: string;
  logical_date: IsoDateTime | null;
  data_interval_start: IsoDateTime | null;
  data_interval_end: IsoDateTime | null;
  run_after: IsoDateTime;
  start_date: IsoDateTime;
  end_date: IsoDateTime | null;
  run_type: string;
  state: string;
  conf: Record<string, unknown> | null;
  consumed_asset_events: unknown[];
  [field: string]: unknown;
}

/** `TIRunContext`: the 200 answer to a start. */
export interface RunContext {
  dag_run: DagRunInfo;
  task_reschedule_count: number;
  max_tries: number;
  variables: VariableResponse[];
  connections: ConnectionResponse[];
  xcom_keys_to_clear: string[];
  /** Whether a failure of this try may become `up_for_retry`. */
  should_retry: boolean;
  next_method?: string | null;
  next_kwargs?: Record<string, unknown> | string | null;
  [field: string]: unknown;
}

/** `VariableResponse`. */
export interface VariableResponse {
  key: string;
  value: string | null;
}

/** `VariablePostBody` (Airflow's field `val` is sent under its alias `value`). */
export interface PutVariableBody {
  value: string | null;
  description?: string | null;
}

/** `ConnectionResponse`. */
export interface ConnectionResponse {
  conn_id: string;
  conn_type: string;
  host: string | null;
  schema: string | null;
  login: string | null;
  password: string | null;
  port: number | null;
  extra: string | null;
}

/** `XComResponse`. */
export interface XComResponse {
  key: string;
  value: unknown;
}

/** Airflow/FastAPI error body: `detail` is a string, a `{reason, message, ...}` map or a list of validation errors. */
export interface ApiErrorBody {
  detail: string | { reason?: string; message?: string; [field: string]: unknown } | ValidationErrorItem[];
}

/** One pydantic/FastAPI validation error. */
export interface ValidationErrorItem {
  type: string;
  loc: (string | number)[];
  msg: string;
  input?: unknown;
  ctx?: Record<string, unknown>;
}
