import type { FaultMode } from './reference-faults.js';
import type { TaskInstanceState } from './types.js';

/** Shapes of the reference control plane's store (see reference-store.ts). */

export interface CreateTaskInstanceInput {
  /** Default: a random UUID. */
  id?: string;
  /** Default `example_dag`. */
  dag_id?: string;
  /** Default `manual__<creation time>`. */
  run_id?: string;
  /** Default `task`. */
  task_id?: string;
  /** Default -1 (not mapped). */
  map_index?: number;
  /** Default 1. */
  try_number?: number;
  /** Default 0: a failure is final (`should_retry: false`). */
  max_tries?: number;
  /** Default `queued`, the state a start accepts. */
  state?: TaskInstanceState;
  conf?: Record<string, unknown> | null;
  /** Set to resume from deferral: the run context carries them back. */
  next_method?: string | null;
  next_kwargs?: Record<string, unknown> | string | null;
}

/** One Execution API call as the server saw it. `status` is null when a fault hung or dropped it. */
export interface CallRecord {
  at: string;
  method: string;
  path: string;
  status: number | null;
  fault?: FaultMode;
}

/** A terminal-state PATCH the server accepted. */
export interface ReportedState {
  state: string;
  body: Record<string, unknown>;
  at: string;
}

export interface TaskInstanceView {
  id: string;
  dag_id: string;
  run_id: string;
  task_id: string;
  map_index: number;
  try_number: number;
  max_tries: number;
  state: TaskInstanceState;
  /** Cleared while running (moved to history): heartbeats get 410, other calls 404. */
  archived: boolean;
  hostname: string | null;
  unixname: string | null;
  pid: number | null;
  start_date: string | null;
  end_date: string | null;
  next_method: string | null;
  next_kwargs: Record<string, unknown> | string | null;
  conf: Record<string, unknown> | null;
  created_at: string;
  heartbeats: number;
  last_heartbeat_at: string | null;
  starts: number;
  /** The last terminal state reported through `PATCH .../state`, null when none was. */
  final_state: ReportedState | null;
  state_reports: number;
  rendered_fields: Record<string, unknown> | null;
  /** The most recent calls on this task instance, oldest first, at most `maxCallsPerTask`. */
  calls: CallRecord[];
}

export interface ReferenceStoreOptions {
  /** Bound on each collection (task instances, variables, connections, XComs). Default 10000. */
  maxEntries?: number;
  /** Calls kept per task instance; older ones are dropped. Default 1000. */
  maxCallsPerTask?: number;
}

export interface XComAddress {
  dag_id: string;
  run_id: string;
  task_id: string;
  key: string;
  /** Default -1. */
  map_index?: number;
}

export interface StoredVariable {
  value: string | null;
  description: string | null;
}

/** Outcome of an Execution API operation: the HTTP status and JSON body the server answers. */
export interface StoreResult {
  status: number;
  body?: unknown;
}
