import { WardenError } from '../errors.js';
import type { ControlPlaneClient } from './client.js';
import { ControlPlaneError } from './errors.js';
import { isSensitiveName } from './sensitive-names.js';
import type { FinishBody, TerminalStateName } from './types.js';

/** The task instance a task's requests act for; defaults of XCom addresses come from it. */
export interface TaskInstanceRef {
  id: string;
  dagId: string;
  runId: string;
  taskId: string;
  /** Default -1 (not mapped). */
  mapIndex?: number;
}

/**
 * What a default handler uses of its context. The comms channel's `HandlerContext` fits it;
 * `maskSecret` is looked up on the context, then on `context.context` (the channel's `context`
 * option), unless `DefaultHandlerOptions.maskSecret` is given.
 */
export interface DefaultHandlerContext {
  signal: AbortSignal;
  taskId: string;
  maskSecret?: (value: string) => void;
  context?: unknown;
}

// The body is whatever the child sent: each handler checks the fields it uses.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type DefaultHandler = (body: any, ctx: DefaultHandlerContext) => Promise<unknown>;

export interface DefaultHandlerOptions {
  /**
   * Receives a terminal state the task reported, with the exact body for
   * `ControlPlaneClient.finish()` (`{state, end_date, ...}` as Airflow's payloads). The handlers
   * never call the control plane for these: the supervisor owns that call (and its timing: at
   * once, or at exit for `TaskState`). A throw or rejection is answered to the child as an error.
   * Without it, the terminal-state types are not registered, so the child gets
   * `ERR_UNKNOWN_REQUEST` rather than a silent loss.
   */
  onTerminalState?: (state: TerminalStateName, body: FinishBody) => void | Promise<void>;
  /** Registers a value to mask in the task's logs; overrides the one found on the context. */
  maskSecret?: (value: string) => void;
  /** Name fragments that make a variable secret, on top of Airflow's defaults (sensitive-names.ts). */
  extraSensitiveNames?: readonly string[];
}

/** The terminal-state request types and the state each reports. */
export const TERMINAL_REQUEST_TYPES = ['SucceedTask', 'TaskState', 'RetryTask', 'DeferTask', 'RescheduleTask'] as const;

const TASK_STATE_VALUES = ['failed', 'skipped', 'removed'] as const;

/**
 * The default comms request handlers: they proxy a task's requests to the control plane through
 * `client`, with the task's signal, and report terminal states through `onTerminalState`.
 * Request and response shapes: docs/control-plane.md. A bad field is answered `ERR_BAD_REQUEST`;
 * an unknown variable, connection or XCom `ERR_NOT_FOUND`; a control-plane failure
 * `ERR_CONTROL_PLANE` with its status and body in `detail`.
 */
export function defaultHandlers(client: ControlPlaneClient, ti: TaskInstanceRef, options: DefaultHandlerOptions = {}): Record<string, DefaultHandler> {
  const extraNames = options.extraSensitiveNames ?? [];
  const maskerOf = (ctx: DefaultHandlerContext): ((value: string) => void) | undefined => {
    const nested = (ctx.context as { maskSecret?: unknown } | null | undefined)?.maskSecret;
    return options.maskSecret ?? ctx.maskSecret ?? (typeof nested === 'function' ? (nested as (value: string) => void) : undefined);
  };
  const mask = (ctx: DefaultHandlerContext, value: unknown): void => {
    const masker = maskerOf(ctx);
    if (masker && typeof value === 'string' && value !== '') masker(value);
  };

  const handlers: Record<string, DefaultHandler> = {
    GetVariable: async (body, ctx) => {
      const key = needString(body, 'GetVariable', 'key');
      const variable = await client.getVariable(key, ctx.signal);
      if (isSensitiveName(key, extraNames)) mask(ctx, variable.value);
      return { key: variable.key ?? key, value: variable.value };
    },

    PutVariable: async (body, ctx) => {
      const key = needString(body, 'PutVariable', 'key');
      const raw: unknown = body.value;
      const value = raw === null || typeof raw === 'string' ? raw : JSON.stringify(raw ?? null);
      const description = optional(body, 'PutVariable', 'description', 'string');
      if (isSensitiveName(key, extraNames)) mask(ctx, value);
      await client.putVariable(key, description === undefined ? { value } : { value, description }, ctx.signal);
      return { ok: true };
    },

    GetConnection: async (body, ctx) => {
      const connId = needString(body, 'GetConnection', 'conn_id');
      const conn = await client.getConnection(connId, ctx.signal);
      mask(ctx, conn.password);
      mask(ctx, conn.extra);
      for (const secret of sensitiveLeaves(conn.extra, extraNames)) mask(ctx, secret);
      return conn;
    },

    GetXCom: async (body, ctx) => {
      const key = needString(body, 'GetXCom', 'key');
      const a = xcomAddress(body, 'GetXCom', ti);
      return client.getXCom(a.dagId, a.runId, a.taskId, key, a.mapIndex, ctx.signal);
    },

    SetXCom: async (body, ctx) => {
      const key = needString(body, 'SetXCom', 'key');
      const a = xcomAddress(body, 'SetXCom', ti);
      const mappedLength = optional(body, 'SetXCom', 'mapped_length', 'integer');
      await client.setXCom(a.dagId, a.runId, a.taskId, key, body.value ?? null, { mapIndex: a.mapIndex, mappedLength }, ctx.signal);
      return { ok: true };
    },

    GetRenderedFields: async (_body, ctx) => ({ rendered_fields: await client.getRenderedFields(ti.id, ctx.signal) }),

    SetRenderedFields: async (body, ctx) => {
      const fields = body?.rendered_fields;
      if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) throw badRequest('SetRenderedFields', 'rendered_fields', 'an object');
      try {
        await client.setRenderedFields(ti.id, fields as Record<string, unknown>, ctx.signal);
      } catch (err) {
        // As Airflow: 410 means the TI was archived (cleared, retried); the fields have no home.
        if (!(err instanceof ControlPlaneError && err.status === 410)) throw err;
      }
      return { ok: true };
    },

    MaskSecret: async (body, ctx) => {
      for (const value of stringLeaves(body?.value)) mask(ctx, value);
      return { ok: true };
    },
  };

  const report = options.onTerminalState;
  if (report) {
    const terminal = (state: TerminalStateName, payload: FinishBody): Promise<{ ok: true }> =>
      Promise.resolve(report(state, payload)).then(() => ({ ok: true as const }));
    handlers.SucceedTask = async (body) => terminal('success', withOptional({ state: 'success', end_date: date(body, 'SucceedTask', 'end_date'),
      task_outlets: optional(body, 'SucceedTask', 'task_outlets', 'array') ?? [], outlet_events: optional(body, 'SucceedTask', 'outlet_events', 'array') ?? [] },
    body, 'SucceedTask', ['rendered_map_index']));
    handlers.TaskState = async (body) => {
      const state = body?.state;
      if (!TASK_STATE_VALUES.includes(state)) throw badRequest('TaskState', 'state', `one of ${TASK_STATE_VALUES.join(', ')}`);
      return terminal(state as TerminalStateName, withOptional({ state, end_date: date(body, 'TaskState', 'end_date') }, body, 'TaskState', ['rendered_map_index', 'retry_reason']));
    };
    handlers.RetryTask = async (body) => {
      const payload = withOptional({ state: 'up_for_retry', end_date: date(body, 'RetryTask', 'end_date') }, body, 'RetryTask', ['rendered_map_index', 'retry_reason']);
      const delay = optional(body, 'RetryTask', 'retry_delay_seconds', 'number');
      if (delay !== undefined) payload.retry_delay_seconds = delay;
      return terminal('up_for_retry', payload);
    };
    handlers.DeferTask = async (body) => {
      const payload: FinishBody = {
        state: 'deferred', classpath: needString(body, 'DeferTask', 'classpath'), next_method: needString(body, 'DeferTask', 'next_method'),
        trigger_kwargs: body.trigger_kwargs ?? {}, next_kwargs: body.next_kwargs ?? {},
      };
      if (body.trigger_timeout !== undefined && body.trigger_timeout !== null) payload.trigger_timeout = body.trigger_timeout;
      return terminal('deferred', withOptional(payload, body, 'DeferTask', ['rendered_map_index']));
    };
    handlers.RescheduleTask = async (body) => {
      if (body?.reschedule_date === undefined || body?.reschedule_date === null) throw badRequest('RescheduleTask', 'reschedule_date', 'a date');
      return terminal('up_for_reschedule', { state: 'up_for_reschedule', reschedule_date: date(body, 'RescheduleTask', 'reschedule_date'), end_date: date(body, 'RescheduleTask', 'end_date') });
    };
  }
  return handlers;
}

function badRequest(type: string, field: string, expected: string): WardenError {
  return new WardenError('ERR_BAD_REQUEST', `${type}: field "${field}" must be ${expected}; fix the request the task sent.`, { detail: { type, field } });
}

function needString(body: unknown, type: string, field: string): string {
  const value = (body as Record<string, unknown> | null | undefined)?.[field];
  if (typeof value !== 'string' || value === '') throw badRequest(type, field, 'a non-empty string');
  return value;
}

type Kind = 'string' | 'integer' | 'number' | 'array';
function optional(body: unknown, type: string, field: string, kind: 'string'): string | undefined;
function optional(body: unknown, type: string, field: string, kind: 'integer' | 'number'): number | undefined;
function optional(body: unknown, type: string, field: string, kind: 'array'): unknown[] | undefined;
function optional(body: unknown, type: string, field: string, kind: Kind): unknown {
  const value = (body as Record<string, unknown> | null | undefined)?.[field];
  if (value === undefined || value === null) return undefined;
  const ok = kind === 'string' ? typeof value === 'string'
    : kind === 'integer' ? Number.isSafeInteger(value)
      : kind === 'number' ? typeof value === 'number' && Number.isFinite(value)
        : Array.isArray(value);
  if (!ok) throw badRequest(type, field, kind === 'integer' ? 'an integer' : `a${kind === 'array' ? 'n' : ''} ${kind}`);
  return value;
}

/** An ISO date from a string or a Date (msgpack timestamps decode to Date); absent means now. */
function date(body: unknown, type: string, field: string): string {
  const value = (body as Record<string, unknown> | null | undefined)?.[field];
  if (value === undefined || value === null) return new Date().toISOString();
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString();
  if (typeof value === 'string' && !Number.isNaN(Date.parse(value))) return value;
  throw badRequest(type, field, 'an ISO 8601 date-time string or a Date');
}

function withOptional(payload: FinishBody, body: unknown, type: string, fields: string[]): FinishBody {
  for (const field of fields) {
    const value = optional(body, type, field, 'string');
    if (value !== undefined) payload[field] = value;
  }
  return payload;
}

function xcomAddress(body: unknown, type: string, ti: TaskInstanceRef): { dagId: string; runId: string; taskId: string; mapIndex: number } {
  const taskId = optional(body, type, 'task_id', 'string');
  const mapIndex = optional(body, type, 'map_index', 'integer');
  return {
    dagId: optional(body, type, 'dag_id', 'string') ?? ti.dagId,
    runId: optional(body, type, 'run_id', 'string') ?? ti.runId,
    taskId: taskId ?? ti.taskId,
    // The task's own XComs default to its own map index; another task's to -1 (not mapped).
    mapIndex: mapIndex ?? (taskId === undefined || taskId === ti.taskId ? (ti.mapIndex ?? -1) : -1),
  };
}

/** String leaves of a value, bounded (depth 16, 1000 strings): what MaskSecret registers. */
function stringLeaves(value: unknown, out: string[] = [], depth = 0): string[] {
  if (out.length >= 1000 || depth > 16) return out;
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) stringLeaves(v, out, depth + 1);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) stringLeaves(v, out, depth + 1);
  return out;
}

/** String values under sensitive keys of a connection's JSON `extra`. */
function sensitiveLeaves(extra: string | null, extraNames: readonly string[]): string[] {
  if (typeof extra !== 'string' || extra === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(extra);
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (value: unknown, depth: number): void => {
    if (depth > 16 || out.length >= 1000 || value === null || typeof value !== 'object') return;
    for (const [k, v] of Object.entries(value)) {
      if (isSensitiveName(k, extraNames)) stringLeaves(v, out);
      else walk(v, depth + 1);
    }
  };
  walk(parsed, 0);
  return out;
}
