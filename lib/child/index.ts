/**
 * `warden/child`: the task's side of warden, for Node tasks. Light on purpose: it imports only the
 * frame codec, the protocol's names, the error class and the native addon's loader (for the
 * spin-then-sleep wait), never the supervisor.
 *
 *     import { connect } from 'warden/child';
 *     const warden = await connect();            // waits for the supervisor's StartupDetails
 *     const { value } = await warden.request('GetVariable', { key: 'greeting' });
 *     warden.log.info('greeted', { value });
 *
 * Tasks in other languages speak the same protocol on fds 3 and 4: see docs/protocol.md.
 */
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { WardenError } from '../errors.js';
import {
  COMMS_FD_ENV, DEFAULT_MAX_FRAME_BYTES, DEFAULT_REQUEST_TIMEOUT_MS,
  type AnyRequests, type RequestMapOf, type StartupDetails,
} from '../comms/protocol.js';
import { ChildConnection, type RequestOptions } from './connection.js';
import { createTaskLog, type TaskLog } from './task-log.js';
import { nativeBinding } from '../process/native-binding.js';
import { DEFAULT_SPIN_MICROS, MAX_SPIN_MICROS, SpinWait, type SpinStats } from './spin-wait.js';

export { WardenError } from '../errors.js';
export type { WardenErrorCode } from '../errors.js';
export {
  COMMS_FD_ENV, LOG_FD_ENV, STARTUP_FRAME_ID, STARTUP_TYPE, MAX_REQUEST_ID, DEFAULT_MAX_FRAME_BYTES,
  type AnyRequests, type DefaultRequests, type ErrorBody, type RequestBody, type RequestMapOf,
  type RequestSpec, type ResponseBody, type StartupDetails,
} from '../comms/protocol.js';
export {
  encodeFrame, decodeBody, FrameDecoder, FRAME_HEADER_BYTES,
  type DecodedFrame, type Frame, type FrameMalformed, type FrameTooLarge, type FrameVisitor,
} from '../comms/frame-codec.js';
export { createTaskLog, type TaskLog, type TaskLogLevel } from './task-log.js';
export type { RequestOptions } from './connection.js';
export type { SpinStats } from './spin-wait.js';

/** Environment variable that sets the default of `ConnectOptions.spinMicros` (0 turns spinning off). */
export const SPIN_MICROS_ENV = 'WARDEN_COMMS_SPIN_US';

export interface ConnectOptions {
  /** Where to find `WARDEN_COMMS_FD` and `WARDEN_LOG_FD`. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Largest frame accepted or sent (length field: id + body). Default 16 MiB; must match the supervisor's. */
  maxFrameBytes?: number;
  /** Default per-request timeout (ms) for `request()`. Default 30000; 0 = no limit. */
  requestTimeoutMs?: number;
  /**
   * How long `connect()` waits for the StartupDetails frame before rejecting with
   * `ERR_REQUEST_TIMEOUT`. Default 0 = as long as it takes: the supervisor sends it once the
   * control plane accepted the task, which may take its retries, and it bounds the task anyway.
   */
  startupTimeoutMs?: number;
  /**
   * Budget (microseconds, 0..10000) of the spin-then-sleep wait: after a request that is alone in
   * flight leaves, the task polls its socket this long for the answer before its event loop goes
   * to sleep, which cuts a round trip to a fast handler to about a third (README, "Waiting for an
   * answer"). It backs off by itself while answers take longer than the budget. Default 50, or
   * `WARDEN_COMMS_SPIN_US` when set; 0 = never spin. Spinning is off anyway when this process
   * may use only one CPU, and where warden's native addon is not built.
   */
  spinMicros?: number;
}

/** A task connected to its supervisor. */
export interface WardenChild<M extends RequestMapOf<M> = AnyRequests> {
  /** The StartupDetails frame's body: task id, attempt, run context. */
  readonly startup: StartupDetails;
  /**
   * Sends one request and resolves with the response's `ok` value. Rejects with a WardenError: the
   * response's own `code`/`message`/`detail` (`ERR_NOT_FOUND`, `ERR_BUSY`, ...),
   * `ERR_REQUEST_TIMEOUT` after `timeoutMs`, `ERR_CHANNEL_CLOSED` if the channel ends first,
   * `ERR_FRAME_TOO_LARGE` for a body over `maxFrameBytes`. Any number may be in flight; the
   * supervisor answers those beyond its `maxInflightRequests` (default 64) with `ERR_BUSY`.
   * Throws `ERR_INVALID_OPTION` synchronously for a bad `type`, `body` or `timeoutMs`.
   */
  request<K extends keyof M & string>(type: K, body?: M[K]['request'], options?: RequestOptions): Promise<M[K]['response']>;
  /** The task log on `WARDEN_LOG_FD` (stderr with a one-time notice when it is missing). */
  readonly log: TaskLog;
  /** True once the channel has ended, from either side. */
  readonly closed: boolean;
  /** Ends the channel now: pending requests reject with `ERR_CHANNEL_CLOSED`, the supervisor sees EOF. */
  close(): Promise<void>;
  /** The spin-then-sleep wait's budget and counts; undefined when it is off (see `spinMicros`). */
  readonly spin: (Readonly<SpinStats> & { readonly micros: number }) | undefined;
}

/** Size of the one buffer the comms socket reads into. */
const READ_BUFFER_BYTES = 64 * 1024;

let shared: { fd: number; child: Promise<WardenChild<any>> } | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Opens the comms channel named by `WARDEN_COMMS_FD` and resolves once the supervisor's
 * StartupDetails frame has arrived (user code must not run before it). One channel per process:
 * later calls for the same fd get the same promise.
 *
 * Rejects with WardenError `ERR_NOT_UNDER_WARDEN` when the variable is missing or names no usable
 * fd, `ERR_CHANNEL_CLOSED` when the channel ends before the startup frame, `ERR_REQUEST_TIMEOUT`
 * after `startupTimeoutMs`. Throws `ERR_INVALID_OPTION` synchronously for bad options.
 *
 * Once connected the library keeps the process alive only while a request is pending. The fd is
 * inherited by the task's own children unless they close it; the supervisor sees EOF when the last
 * holder exits.
 */
export function connect<M extends RequestMapOf<M> = AnyRequests>(options: ConnectOptions = {}): Promise<WardenChild<M>> {
  const maxFrameBytes = intOption('maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 4);
  const requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 0);
  const startupTimeoutMs = intOption('startupTimeoutMs', options.startupTimeoutMs, 0, 0);
  const env = options.env ?? process.env;
  const spinMicros = spinOption(options.spinMicros, env[SPIN_MICROS_ENV]);
  const raw = env[COMMS_FD_ENV];
  if (raw === undefined || raw === '') {
    return Promise.reject(new WardenError('ERR_NOT_UNDER_WARDEN', `${COMMS_FD_ENV} is not set, so this task is not running under warden and has no comms channel. Start it with \`warden run -- <command>\` or a warden Supervisor; code that must also run alone can skip connect() when process.env.${COMMS_FD_ENV} is undefined.`));
  }
  const fd = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(fd)) {
    return Promise.reject(new WardenError('ERR_NOT_UNDER_WARDEN', `${COMMS_FD_ENV}=${JSON.stringify(raw)} is not an fd number; it is set by warden when it starts the task, so do not set it by hand`));
  }
  if (shared !== undefined && shared.fd === fd) return shared.child as Promise<WardenChild<M>>;
  let socket: net.Socket;
  let connection: ChildConnection | undefined;
  try {
    // Reads go into one reused buffer and straight to the connection (`onread`), not through the
    // readable stream: no stream bookkeeping and no fresh 64 KiB allocation per read, much of what
    // a round trip costs on this side. Safe to refill: nothing decoded keeps a view of it.
    const onread: net.OnReadOpts = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes, buf) => {
        connection?.receive(buf as Buffer, bytes);
        return true;
      },
    };
    socket = new net.Socket({ fd, readable: true, writable: true, onread } as net.SocketConstructorOpts);
  } catch (cause) {
    return Promise.reject(new WardenError('ERR_NOT_UNDER_WARDEN', `${COMMS_FD_ENV}=${fd} names no open socket or pipe (${cause instanceof Error ? cause.message : String(cause)}); the task must be started by warden, which passes the channel as fd ${fd}`, { cause }));
  }
  const spinWait = spinMicros > 0 && nativeBinding !== undefined && availableParallelism() > 1
    ? new SpinWait(fd, spinMicros, nativeBinding.spinReadable)
    : undefined;
  const conn = new ChildConnection(socket, { maxFrameBytes, requestTimeoutMs, startupTimeoutMs, fd, spinWait });
  connection = conn;
  const child = conn.ready().then((startup) => makeChild<M>(conn, startup, createTaskLog({ env }), requestTimeoutMs, spinWait === undefined ? undefined : { micros: spinMicros, stats: spinWait.stats }));
  shared = { fd, child };
  return child;
}

function makeChild<M extends RequestMapOf<M>>(
  connection: ChildConnection, startup: StartupDetails, log: TaskLog, defaultTimeoutMs: number, spin: { micros: number; stats: SpinStats } | undefined,
): WardenChild<M> {
  return {
    get spin() {
      return spin === undefined ? undefined : { micros: spin.micros, ...spin.stats };
    },
    startup,
    log,
    get closed() {
      return connection.closed;
    },
    request(type, body, options) {
      if (typeof type !== 'string' || type.length === 0) {
        throw new WardenError('ERR_INVALID_OPTION', `request type must be a non-empty string, got ${JSON.stringify(type)}`);
      }
      const payload: unknown = body ?? {};
      if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
        throw new WardenError('ERR_INVALID_OPTION', `the body of a ${type} request must be a plain object, got ${Array.isArray(payload) ? 'an array' : typeof payload}`);
      }
      const timeoutMs = intOption('timeoutMs', options?.timeoutMs, defaultTimeoutMs, 0);
      return connection.request(type, payload as Record<string, unknown>, timeoutMs) as Promise<M[typeof type]['response']>;
    },
    close: () => connection.close(),
  };
}

/** `spinMicros`: the option (checked), else the environment variable (a bad one warns), else the default. */
function spinOption(value: number | undefined, fromEnv: string | undefined): number {
  if (value !== undefined) {
    if (!Number.isInteger(value) || value < 0 || value > MAX_SPIN_MICROS) {
      throw new WardenError('ERR_INVALID_OPTION', `spinMicros must be an integer from 0 to ${MAX_SPIN_MICROS}, got ${String(value)}`);
    }
    return value;
  }
  if (fromEnv === undefined || fromEnv === '') return DEFAULT_SPIN_MICROS;
  const n = /^\d+$/.test(fromEnv) ? Number(fromEnv) : NaN;
  if (n <= MAX_SPIN_MICROS) return n;
  // Set by whoever runs the task, not by its code: a typo there must not fail the task.
  process.emitWarning(`${SPIN_MICROS_ENV}=${JSON.stringify(fromEnv)} is not a number of microseconds from 0 to ${MAX_SPIN_MICROS}; using the default (${DEFAULT_SPIN_MICROS})`, { code: 'WARDEN_BAD_SPIN_MICROS' });
  return DEFAULT_SPIN_MICROS;
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
    throw new WardenError('ERR_INVALID_OPTION', `${name} must be an integer from ${min} to ${2 ** 31 - 1}, got ${String(value)}`);
  }
  return value;
}
