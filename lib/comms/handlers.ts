/**
 * Request handlers by type. A channel looks a handler up per request; the supervisor registers the
 * defaults (proxies to the control plane) and executors add or replace types.
 */
import { WardenError } from '../errors.js';
import type { AnyRequests, RequestMapOf } from './protocol.js';

export type CommsLogLevel = 'debug' | 'info' | 'warning' | 'error';
/** Where a channel reports what it did; `fields` always carries `taskId`. */
export type CommsLog = (level: CommsLogLevel, event: string, fields: Record<string, unknown>) => void;

/** What a handler gets besides the request body. */
export interface HandlerContext<C = unknown> {
  readonly taskId: string;
  /** The request's id on the wire (1..2^32-1), unique among the task's in-flight requests. */
  readonly requestId: number;
  readonly type: string;
  /**
   * Aborts when the handler's answer is no longer wanted: the channel ended (EOF, child exit,
   * `close()`), the task's signal aborted, or `handlerTimeoutMs` passed. Pass it to every fetch
   * and timer the handler starts. Its `reason` is a WardenError (`ERR_CHANNEL_CLOSED` or
   * `ERR_HANDLER_TIMEOUT`).
   */
  readonly signal: AbortSignal;
  /** The channel's `context` option, as given (e.g. the task's control-plane client). */
  readonly context: C;
  readonly log: CommsLog;
}

/**
 * Answers one request type. The resolved value becomes `{ok: value}` (`undefined` is sent as nil).
 * Throw a WardenError to answer with its code (`ERR_NOT_FOUND` for an unknown key, ...); any other
 * throw is answered `ERR_HANDLER` with the error's message.
 */
export type Handler<Req = Record<string, unknown>, Res = unknown, C = unknown> = (
  body: Req & { type: string },
  ctx: HandlerContext<C>,
) => Res | Promise<Res>;

/**
 * Handlers by request type, typed by a request map `M` (see `RequestMapOf`) and a context type `C`.
 *
 * Invariants:
 * - At most one handler per type. `handle` refuses a type that already has one (two modules
 *   registering the same type is a bug worth hearing about); `replace` is the explicit override.
 * - Types are non-empty strings and handlers functions; anything else throws at registration,
 *   never at request time.
 */
export class HandlerRegistry<M extends RequestMapOf<M> = AnyRequests, C = unknown> {
  readonly #handlers = new Map<string, Handler<Record<string, unknown>, unknown, C>>();

  /** Registers the handler for `type`. Throws WardenError `ERR_INVALID_OPTION` if `type` already has one. */
  handle<K extends keyof M & string>(type: K, handler: Handler<M[K]['request'], M[K]['response'], C>): this {
    check(type, handler);
    if (this.#handlers.has(type)) {
      throw new WardenError('ERR_INVALID_OPTION', `a handler for request type "${type}" is already registered; use replace() to override it`);
    }
    this.#handlers.set(type, handler as Handler<Record<string, unknown>, unknown, C>);
    return this;
  }

  /** Registers the handler for `type`, replacing any earlier one. */
  replace<K extends keyof M & string>(type: K, handler: Handler<M[K]['request'], M[K]['response'], C>): this {
    check(type, handler);
    this.#handlers.set(type, handler as Handler<Record<string, unknown>, unknown, C>);
    return this;
  }

  /** Removes the handler for `type`; returns whether there was one. */
  delete(type: string): boolean {
    return this.#handlers.delete(type);
  }

  has(type: string): boolean {
    return this.#handlers.has(type);
  }

  get(type: string): Handler<Record<string, unknown>, unknown, C> | undefined {
    return this.#handlers.get(type);
  }

  /** Registered types, in registration order. */
  types(): string[] {
    return [...this.#handlers.keys()];
  }
}

function check(type: unknown, handler: unknown): void {
  if (typeof type !== 'string' || type.length === 0) {
    throw new WardenError('ERR_INVALID_OPTION', `a request type must be a non-empty string, got ${JSON.stringify(type)}`);
  }
  if (typeof handler !== 'function') {
    throw new WardenError('ERR_INVALID_OPTION', `the handler for request type "${type}" must be a function, got ${typeof handler}`);
  }
}

/** Wraps a log sink so that it cannot throw into the channel's callbacks. */
export function safeLog(log: CommsLog | undefined): CommsLog {
  if (log === undefined) return () => {};
  return (level, event, fields) => {
    try {
      log(level, event, fields);
    } catch {
      // A failing log sink loses this record only; the channel goes on.
    }
  };
}

/**
 * A log for per-request events that writes at most `maxPerEvent` records per event name (the
 * last of them marked `more`), adding `taskId`; later ones are dropped (the caller counts them).
 */
export function boundedLog(log: CommsLog, taskId: string, maxPerEvent: number): CommsLog {
  const seen = new Map<string, number>();
  return (level, event, fields) => {
    const n = (seen.get(event) ?? 0) + 1;
    seen.set(event, n);
    if (n > maxPerEvent) return;
    const last = n === maxPerEvent ? { more: `later ${event} records of this channel are left out; comms.closed counts the error responses` } : undefined;
    log(level, event, { taskId, ...fields, ...last });
  };
}
