/**
 * The child's end of the comms channel: request/response over the fd named by `WARDEN_COMMS_FD`.
 */
import { writeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { WardenError } from '../errors.js';
import { decodeBody, FrameDecoder, type FrameMalformed, type FrameTooLarge, type FrameVisitor } from '../comms/frame-codec.js';
import { FrameQueue } from '../comms/frame-queue.js';
import { STARTUP_FRAME_ID, STARTUP_TYPE, type StartupDetails } from '../comms/protocol.js';
import { Deadlines, type DeadlineEntry } from './deadlines.js';
import { PendingTable } from './pending-table.js';
import { RequestIdAllocator } from './request-ids.js';
import type { SpinWait } from './spin-wait.js';

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
  /**
   * The socket's fd, for writing with one `write(2)` while the socket has nothing queued (see
   * `#write`). Absent: every write goes through the socket.
   */
  fd?: number;
  /** Spin-then-sleep wait for the answer to a lone request (spin-wait.ts); absent = always sleep. */
  spinWait?: SpinWait;
}

/**
 * Invariants:
 * - The socket is ref'd exactly while the startup frame is awaited or a request is pending, so the
 *   library alone never keeps the process alive once user code is done.
 * - Each request promise settles once: with its response, on its timeout, or when the channel ends
 *   (`ERR_CHANNEL_CLOSED`). After the end, no frame is written and new requests reject at once.
 * - A request sent while none is pending leaves at once (one at a time is the common case, and
 *   waiting for the end of the tick only adds a turn); the other frames of a tick leave together,
 *   in one write at the end of the tick. Bytes leave in the order the requests were made.
 * - With a `spinWait`, a request that left alone and is still alone once the caller's synchronous
 *   code is done spins for its answer (bounded, never reading the socket) before the loop sleeps.
 */
export class ChildConnection {
  readonly #socket: Socket;
  readonly #options: ConnectionOptions;
  readonly #decoder: FrameDecoder;
  readonly #pending = new PendingTable<Pending>();
  readonly #ids = new RequestIdAllocator();
  readonly #deadlines = new Deadlines<Pending>((pending) => this.#expire(pending));
  readonly #ready: Promise<StartupDetails>;
  readonly #closed: Promise<void>;
  #resolveReady!: (startup: StartupDetails) => void;
  #rejectReady!: (err: WardenError) => void;
  #startupTimer: NodeJS.Timeout | undefined;
  #started = false;
  readonly #out: FrameQueue;
  #flushScheduled = false;
  readonly #visitor: FrameVisitor = {
    frame: (id, buf, start, end) => this.#onFrame(id, buf, start, end),
    stop: (item) => this.#onBadHeader(item),
  };
  #endError: WardenError | undefined;

  constructor(socket: Socket, options: ConnectionOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#decoder = new FrameDecoder({ maxFrameBytes: options.maxFrameBytes });
    this.#out = new FrameQueue(options.maxFrameBytes);
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
    try {
      id = this.#ids.next(this.#pending);
      const message: Record<string, unknown> = { type, ...body };
      message['type'] = type;
      this.#out.append(id, message); // encoded now: a body that changes later does not change the request
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
      const alone = this.#pending.size === 0;
      if (alone) this.#socket.ref();
      this.#pending.set(id, pending);
      if (this.#flushScheduled) return;
      if (alone && this.#out.frames === 1) {
        this.#flush(); // nothing else is waiting: a failed write rejects this promise through #end
        // After the caller's synchronous code (it may send more, or do other work first).
        if (this.#options.spinWait !== undefined) queueMicrotask(this.#spin);
        return;
      }
      this.#flushScheduled = true;
      process.nextTick(this.#flush);
    });
  }

  /**
   * Spins for the answer if this request is still the only thing going on: alone in flight, its
   * bytes in the kernel (a request still queued in the socket would not leave while this spins),
   * nothing queued behind it.
   */
  readonly #spin = (): void => {
    if (this.#endError === undefined && this.#pending.size === 1 && !this.#flushScheduled && this.#socket.writableLength === 0) {
      this.#options.spinWait!.wait();
    }
  };

  /** Ends the channel from this side: pending requests reject, the supervisor sees EOF. */
  close(): Promise<void> {
    this.#end(closedError('the task closed its comms channel'));
    return this.#closed;
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#endError === undefined) {
      const buf = this.#out.take();
      if (buf !== undefined) this.#write(buf);
    }
  };

  /**
   * Hands `buf` to the kernel. While the socket holds nothing unwritten, a plain `write(2)` on the
   * fd does it without the stream machinery (a write request object, an after-write tick); what
   * the kernel does not take at once (a full socket: EAGAIN or a short write) and every failure go
   * to the socket, which queues the rest after it and reports failures as 'error' (the pending
   * requests then reject). Bytes stay in order: the socket is only bypassed while it is empty.
   */
  #write(buf: Buffer): void {
    let rest = buf;
    const fd = this.#options.fd;
    if (fd !== undefined && this.#socket.writableLength === 0 && !this.#socket.destroyed) {
      try {
        const n = writeSync(fd, buf);
        if (n === buf.length) return;
        rest = buf.subarray(n);
      } catch {
        // EAGAIN: the socket queues it. EPIPE and the like: the socket fails the same way and says so.
      }
    }
    this.#socket.write(rest);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.receive(chunk, chunk.length);
  };

  /**
   * Bytes read from the socket: `buf[0, length)` (a socket read with `onread` calls this; a plain
   * socket's 'data' comes here too). Nothing keeps a reference to `buf` after the call, so the
   * caller may refill it.
   */
  receive(buf: Buffer, length: number): void {
    if (this.#endError !== undefined) return;
    try {
      this.#decoder.visit(buf, this.#visitor, 0, length);
    } catch (err) {
      this.#end(closedError('the comms channel delivered bytes that could not be read', err));
    }
  }

  /** Returns false to stop reading the chunk: the channel has ended. */
  #onFrame(id: number, buf: Buffer, start: number, end: number): boolean {
    if (this.#endError !== undefined) return false;
    if (id === STARTUP_FRAME_ID) this.#onStartup(buf, start, end);
    else this.#onResponse(id, buf, start, end);
    return this.#endError === undefined;
  }

  #onBadHeader(item: FrameTooLarge | FrameMalformed): void {
    if (this.#endError !== undefined) return;
    if ('malformed' in item) {
      this.#end(closedError(`the supervisor sent a frame header announcing ${item.length} bytes (under 4): the channel is out of step`));
      return;
    }
    const pending = this.#take(item.id);
    pending?.reject(new WardenError('ERR_FRAME_TOO_LARGE', `the response to ${pending.type} (request ${item.id}) is ${item.length} bytes, over maxFrameBytes (${this.#options.maxFrameBytes})`, { detail: { length: item.length, maxFrameBytes: this.#options.maxFrameBytes } }));
    this.#end(closedError('the supervisor sent a frame over maxFrameBytes'));
  }

  #onStartup(buf: Buffer, start: number, end: number): void {
    if (this.#started) return; // only one is ever sent; anything else on id 0 is not for us
    let body: unknown;
    try {
      body = decodeBody(buf, start, end);
    } catch {
      return;
    }
    if (!isMap(body) || body['type'] !== STARTUP_TYPE) return;
    this.#started = true;
    if (this.#startupTimer !== undefined) clearTimeout(this.#startupTimer);
    if (this.#pending.size === 0) this.#socket.unref();
    this.#resolveReady(body as StartupDetails);
  }

  #onResponse(id: number, buf: Buffer, start: number, end: number): void {
    const pending = this.#take(id);
    if (pending === undefined) return; // answered after its timeout
    let body: unknown;
    try {
      body = decodeBody(buf, start, end);
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
    const pending = this.#pending.take(id);
    if (pending === undefined) return undefined;
    this.#deadlines.remove(pending);
    if (this.#pending.size === 0 && this.#started) this.#socket.unref();
    return pending;
  }

  #end(err: WardenError): void {
    if (this.#endError !== undefined) return;
    this.#endError = err;
    if (this.#startupTimer !== undefined) clearTimeout(this.#startupTimer);
    this.#out.clear();
    this.#socket.off('data', this.#onData);
    this.#socket.unref();
    // end() sends our EOF at once; destroy() after it is flushed releases the fd.
    if (!this.#socket.destroyed) this.#socket.end(() => this.#socket.destroy());
    if (!this.#started) this.#rejectReady(err);
    this.#deadlines.clear();
    for (const pending of this.#pending.drain()) pending.reject(closedError(`${err.message}; request ${pending.id} got no response`, err));
  }
}

function noop(): void {}

function closedError(message: string, cause?: unknown): WardenError {
  return new WardenError('ERR_CHANNEL_CLOSED', message, cause === undefined ? {} : { cause });
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
