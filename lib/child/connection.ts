/**
 * The child's end of the comms channel: request/response over the fd named by `WARDEN_COMMS_FD`.
 */
import type { Socket } from 'node:net';
import { WardenError } from '../errors.js';
import { decodeBody, encodeFrame, FrameDecoder, type DecodedFrame } from '../comms/frame-codec.js';
import { STARTUP_FRAME_ID, STARTUP_TYPE, type StartupDetails } from '../comms/protocol.js';
import { Deadlines, type DeadlineEntry } from './deadlines.js';
import { RequestIdAllocator } from './request-ids.js';

export interface RequestOptions {
  /** How long to wait for the response before rejecting with `ERR_REQUEST_TIMEOUT`. Default: the connection's `requestTimeoutMs` (30000); 0 = no limit. */
  timeoutMs?: number;
}

interface Pending extends DeadlineEntry {
  readonly id: number;
  readonly type: string;
  readonly timeoutMs: number;
  resolve: (value: unknown) => void;
  reject: (err: WardenError) => void;
}

export interface ConnectionOptions {
  maxFrameBytes: number;
  requestTimeoutMs: number;
  /** 0 = wait for the startup frame as long as it takes. */
  startupTimeoutMs: number;
}

/**
 * Invariants:
 * - The socket is ref'd exactly while the startup frame is awaited or a request is pending, so the
 *   library alone never keeps the process alive once user code is done.
 * - Each request promise settles once: with its response, on its timeout, or when the channel ends
 *   (`ERR_CHANNEL_CLOSED`). After the end, no frame is written and new requests reject at once.
 * - Frames of one tick leave in one socket write.
 */
export class ChildConnection {
  readonly #socket: Socket;
  readonly #options: ConnectionOptions;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<number, Pending>();
  readonly #ids = new RequestIdAllocator();
  readonly #deadlines = new Deadlines<Pending>((pending) => this.#expire(pending));
  readonly #ready: Promise<StartupDetails>;
  readonly #closed: Promise<void>;
  #resolveReady!: (startup: StartupDetails) => void;
  #rejectReady!: (err: WardenError) => void;
  #startupTimer: NodeJS.Timeout | undefined;
  #started = false;
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  #endError: WardenError | undefined;

  constructor(socket: Socket, options: ConnectionOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#decoder = new FrameDecoder({ maxFrameBytes: options.maxFrameBytes });
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {}); // connect() hands the rejection to the caller
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', this.#onData);
    socket.on('end', () => this.#end(closedError('the supervisor closed the comms channel')));
    socket.on('error', (err) => this.#end(closedError(`the comms channel failed (${err.message})`, err)));
    socket.on('close', () => this.#end(closedError('the comms channel closed')));
    if (options.startupTimeoutMs > 0) {
      this.#startupTimer = setTimeout(() => {
        this.#end(new WardenError('ERR_REQUEST_TIMEOUT', `no StartupDetails frame arrived within startupTimeoutMs (${options.startupTimeoutMs}); is the supervisor serving this task's comms channel?`));
      }, options.startupTimeoutMs);
    }
  }

  /** Resolves with the startup frame's body; rejects if the channel ends first. */
  ready(): Promise<StartupDetails> {
    return this.#ready;
  }

  get closed(): boolean {
    return this.#endError !== undefined;
  }

  /** Precondition: `type` and `body` were checked by the caller. */
  request(type: string, body: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    if (this.#endError !== undefined) return Promise.reject(closedError(`cannot send ${type}: ${this.#endError.message}`));
    let id: number;
    let frame: Buffer;
    try {
      id = this.#ids.next(this.#pending);
      const message: Record<string, unknown> = { type, ...body };
      message['type'] = type;
      frame = encodeFrame(id, message, this.#options.maxFrameBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    const pending: Pending = {
      id, type, timeoutMs, resolve: noop, reject: noop, deadline: 0, prev: undefined, next: undefined, list: undefined,
    };
    return new Promise((resolve, reject) => {
      pending.resolve = resolve;
      pending.reject = reject;
      if (timeoutMs > 0) this.#deadlines.add(pending, timeoutMs);
      if (this.#pending.size === 0) this.#socket.ref();
      this.#pending.set(id, pending);
      this.#out.push(frame);
      this.#outBytes += frame.length;
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        process.nextTick(this.#flush);
      }
    });
  }

  /** Ends the channel from this side: pending requests reject, the supervisor sees EOF. */
  close(): Promise<void> {
    this.#end(closedError('the task closed its comms channel'));
    return this.#closed;
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#out.length === 0 || this.#endError !== undefined) return;
    const buf = this.#out.length === 1 ? this.#out[0]! : Buffer.concat(this.#out, this.#outBytes);
    this.#out = [];
    this.#outBytes = 0;
    this.#socket.write(buf); // failures arrive as 'error'; the pending requests then reject
  };

  readonly #onData = (chunk: Buffer): void => {
    let frames: DecodedFrame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.#end(closedError('the comms channel delivered bytes that could not be read', err));
      return;
    }
    for (const frame of frames) {
      if (this.#endError !== undefined) return;
      if ('malformed' in frame) {
        this.#end(closedError(`the supervisor sent a frame header announcing ${frame.length} bytes (under 4): the channel is out of step`));
      } else if ('tooLarge' in frame) {
        const pending = this.#take(frame.id);
        pending?.reject(new WardenError('ERR_FRAME_TOO_LARGE', `the response to ${pending.type} (request ${frame.id}) is ${frame.length} bytes, over maxFrameBytes (${this.#options.maxFrameBytes})`, { detail: { length: frame.length, maxFrameBytes: this.#options.maxFrameBytes } }));
        this.#end(closedError('the supervisor sent a frame over maxFrameBytes'));
      } else if (frame.id === STARTUP_FRAME_ID) {
        this.#onStartup(frame.body);
      } else {
        this.#onResponse(frame.id, frame.body);
      }
    }
  };

  #onStartup(raw: Buffer): void {
    if (this.#started) return; // only one is ever sent; anything else on id 0 is not for us
    let body: unknown;
    try {
      body = decodeBody(raw);
    } catch {
      return;
    }
    if (!isMap(body) || body['type'] !== STARTUP_TYPE) return;
    this.#started = true;
    if (this.#startupTimer !== undefined) clearTimeout(this.#startupTimer);
    if (this.#pending.size === 0) this.#socket.unref();
    this.#resolveReady(body as StartupDetails);
  }

  #onResponse(id: number, raw: Buffer): void {
    const pending = this.#take(id);
    if (pending === undefined) return; // answered after its timeout
    let body: unknown;
    try {
      body = decodeBody(raw);
    } catch (err) {
      pending.reject(new WardenError('ERR_BAD_RESPONSE', `the response to ${pending.type} (request ${id}) is not valid msgpack`, { cause: err }));
      return;
    }
    if (isMap(body) && 'ok' in body) {
      pending.resolve(body['ok']);
    } else if (isMap(body) && isMap(body['error'])) {
      const { code, message, detail } = body['error'];
      const options = detail === undefined || detail === null ? {} : { detail };
      pending.reject(new WardenError(typeof code === 'string' ? code : 'ERR_HANDLER', typeof message === 'string' ? message : `${pending.type} failed`, options));
    } else {
      pending.reject(new WardenError('ERR_BAD_RESPONSE', `the response to ${pending.type} (request ${id}) is neither {ok} nor {error}`));
    }
  }

  #expire(pending: Pending): void {
    if (this.#take(pending.id) === undefined) return;
    pending.reject(new WardenError('ERR_REQUEST_TIMEOUT', `no response to ${pending.type} (request ${pending.id}) within ${pending.timeoutMs} ms; the supervisor may be overloaded or its handler slow (raise timeoutMs)`, { detail: { timeoutMs: pending.timeoutMs } }));
  }

  #take(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (pending === undefined) return undefined;
    this.#pending.delete(id);
    this.#deadlines.remove(pending);
    if (this.#pending.size === 0 && this.#started) this.#socket.unref();
    return pending;
  }

  #end(err: WardenError): void {
    if (this.#endError !== undefined) return;
    this.#endError = err;
    if (this.#startupTimer !== undefined) clearTimeout(this.#startupTimer);
    this.#out = [];
    this.#outBytes = 0;
    this.#socket.off('data', this.#onData);
    this.#socket.unref();
    // end() sends our EOF at once; destroy() after it is flushed releases the fd.
    if (!this.#socket.destroyed) this.#socket.end(() => this.#socket.destroy());
    if (!this.#started) this.#rejectReady(err);
    const pending = [...this.#pending.keys()];
    for (const id of pending) this.#take(id)?.reject(closedError(`${err.message}; request ${id} got no response`, err));
  }
}

function noop(): void {}

function closedError(message: string, cause?: unknown): WardenError {
  return new WardenError('ERR_CHANNEL_CLOSED', message, cause === undefined ? {} : { cause });
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
