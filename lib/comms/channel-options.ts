import { WardenError } from '../errors.js';
import type { CommsLog, HandlerRegistry } from './handlers.js';
import type { DeadlineTimers } from './inflight-requests.js';
import { DEFAULT_MAX_FRAME_BYTES, DEFAULT_REQUEST_TIMEOUT_MS } from './protocol.js';

/** What the socket's owner (the reactor) lends a channel. The channel never touches the socket itself. */
export interface ChannelIO {
  /** Hands bytes to the socket. False = the socket is full: the channel waits for `onDrain()`. */
  write(buf: Buffer): boolean;
  pauseReading(): void;
  resumeReading(): void;
  /**
   * Asks the owner to release the socket: the channel is done with it (`why` says why). Bytes
   * already passed to `write` are the channel's last words; an owner that wants them delivered
   * ends the socket before destroying it, within its drain bound. Never called after `onEnd()`.
   */
  close(why: string): void;
}

/** What the log says when a channel closes for good on a protocol error. */
export const CLOSED_NOTE = 'the channel is closed and the task goes on without comms';

/**
 * Records per kind of per-request event (`comms.bad-request`, `comms.busy`, ...) a channel writes;
 * beyond it they are only counted (`errors` in `comms.closed`), so a misbehaving task cannot
 * flood its own log through the supervisor.
 */
export const MAX_NOTES_PER_EVENT = 10;

export interface CommsChannelOptions<C = unknown> {
  io: ChannelIO;
  taskId: string;
  /** Handlers by request type. The registry's request map only types registration. */
  handlers: HandlerRegistry<any, C>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The task's signal. Its abort ends the channel like `close()`. */
  signal?: AbortSignal;
  /** Largest length field (id + body) accepted or sent. Default 16 MiB; at least 1024. */
  maxFrameBytes?: number;
  /**
   * Requests handled at once; more are answered `ERR_BUSY` on arrival. A handler that answers
   * synchronously (returns a value, not a promise) is never in flight. Default 64; at least 1.
   */
  maxInflightRequests?: number;
  /**
   * Time a handler gets before the request is answered `ERR_HANDLER_TIMEOUT` and its `ctx.signal`
   * aborts; its slot is then free even if the handler ignores the signal. Default 30000;
   * 0 = no limit (handlers end only with the channel).
   */
  handlerTimeoutMs?: number;
  /**
   * Bound on response bytes not yet taken by the socket. Above it, reading (and handling requests)
   * pauses until the queue is down to half of it. Handlers already running still add their
   * responses, so the queue can pass the bound by at most `maxInflightRequests` responses (each at
   * most `maxFrameBytes`) plus one error response. Default 8 MiB; 0 pauses on any backlog.
   */
  maxQueuedWriteBytes?: number;
  /** Receives the channel's own records (`comms.*` events). Default: dropped. */
  log?: CommsLog;
  /** Passed to handlers as `ctx.context`. */
  context?: C;
  /** Where the handler-deadline timer lives. Default: an unref'd setTimeout per channel. */
  timers?: DeadlineTimers;
}

export interface CommsStats {
  /** Request frames received, well-formed or not. */
  requests: number;
  /** Responses handed to the socket. */
  responses: number;
  /** Error responses produced, by code. */
  errors: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  /** High-water mark of bytes waiting to be taken by the socket. */
  maxQueuedBytes: number;
  /** Times reading was paused because the child was not taking its responses. */
  readPauses: number;
}

export interface ResolvedChannelOptions {
  maxFrameBytes: number;
  maxInflightRequests: number;
  handlerTimeoutMs: number;
  maxQueuedWriteBytes: number;
}

/** Checks the options at the public boundary (throws WardenError `ERR_INVALID_OPTION`) and fills in defaults. */
export function resolveChannelOptions<C>(options: CommsChannelOptions<C>): ResolvedChannelOptions {
  if (options === null || typeof options !== 'object' || options.io === null || typeof options.io !== 'object') {
    throw new WardenError('ERR_INVALID_OPTION', 'CommsChannel needs an options object with an io adapter (write, pauseReading, resumeReading, close)');
  }
  if (typeof options.taskId !== 'string' || typeof options.handlers?.get !== 'function') {
    throw new WardenError('ERR_INVALID_OPTION', 'CommsChannel needs a string taskId and a HandlerRegistry in handlers');
  }
  return {
    maxFrameBytes: intOption('maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 1024, 0xffff_ffff),
    maxInflightRequests: intOption('maxInflightRequests', options.maxInflightRequests, 64, 1, 2 ** 32),
    handlerTimeoutMs: intOption('handlerTimeoutMs', options.handlerTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 0, 2 ** 31 - 1),
    maxQueuedWriteBytes: intOption('maxQueuedWriteBytes', options.maxQueuedWriteBytes, 8 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
  };
}

function intOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new WardenError('ERR_INVALID_OPTION', `${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}
