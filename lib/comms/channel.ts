/**
 * The supervisor side of one task's comms channel (fd 4). It frames, dispatches and answers; it
 * does not own the socket: the reactor does, and talks to the channel through `ChannelIO` and the
 * `onData` / `onDrain` / `onEnd` calls.
 */
import { WardenError } from '../errors.js';
import { CLOSED_NOTE, MAX_NOTES_PER_EVENT, resolveChannelOptions, type ChannelIO, type CommsChannelOptions, type CommsStats } from './channel-options.js';
import { encodeFrame, FrameDecoder, type FrameMalformed, type FrameTooLarge, type FrameVisitor } from './frame-codec.js';
import { boundedLog, safeLog, type CommsLog, type CommsLogLevel, type Handler, type HandlerRegistry } from './handlers.js';
import { ChunkReader } from './chunk-reader.js';
import { InflightRequest, InflightTable } from './inflight-requests.js';
import { STARTUP_FRAME_ID, STARTUP_TYPE, type ErrorBody, type RequestBody, type ResponseBody } from './protocol.js';
import { clip, errorMessage, parseRequest, refusal } from './request-parse.js';
import { ResponseWriter } from './response-writer.js';

export { MAX_NOTES_PER_EVENT, type ChannelIO, type CommsChannelOptions, type CommsStats } from './channel-options.js';


/**
 * Invariants:
 * - Every request frame gets exactly one response with its id, unless the channel ends first:
 *   `{ok}` from its handler, or `{error: {code, message, detail?}}`.
 * - At most `maxInflightRequests` handlers run at once; each `ctx.signal` aborts when its answer
 *   stops being wanted (timeout, end). After the end nothing is written and no handler result is
 *   sent; `io.close` is called at most once and never after `onEnd()`.
 * - While `queuedBytes > maxQueuedWriteBytes`, no new request is handled and reading is paused.
 * - The channel holds at most one partial frame and the unread rest of the chunks delivered
 *   while it was paused (ChunkReader: one chunk or so, copied, so the owner may reuse its buffer).
 * - The answers to the requests of one chunk leave in one write once the chunk is read.
 * - Per-request log records are bounded: at most MAX_NOTES_PER_EVENT of each kind per channel.
 * - `onData`, `onDrain` and `onEnd` never throw; failures are logged and end the channel.
 */
export class CommsChannel<C = unknown> {
  readonly taskId: string;
  readonly #io: ChannelIO;
  readonly #handlers: HandlerRegistry<any, C>; // eslint-disable-line @typescript-eslint/no-explicit-any
  readonly #signal: AbortSignal | undefined;
  readonly #maxFrameBytes: number;
  readonly #maxInflight: number;
  readonly #log: CommsLog;
  readonly #context: C;
  readonly #decoder: FrameDecoder;
  readonly #writer: ResponseWriter;
  readonly #inflight: InflightTable<C>;
  readonly #stats = { requests: 0, errors: {} as Record<string, number>, bytesIn: 0 };
  readonly #reader: ChunkReader;
  /** Per-request records: bounded per event (MAX_NOTES_PER_EVENT). */
  readonly #note: CommsLog;
  readonly #visitor: FrameVisitor = {
    frame: (id, buf, start, end) => this.#onFrame(id, buf, start, end),
    stop: (item) => this.#onBadHeader(item),
  };
  #startupSent = false;
  #ended = false;
  #endReason: string | undefined;

  constructor(options: CommsChannelOptions<C>) {
    const resolved = resolveChannelOptions(options);
    this.taskId = options.taskId;
    this.#io = options.io;
    this.#handlers = options.handlers;
    this.#signal = options.signal;
    this.#maxFrameBytes = resolved.maxFrameBytes;
    this.#maxInflight = resolved.maxInflightRequests;
    this.#inflight = new InflightTable<C>(resolved.handlerTimeoutMs, this.#onExpired, options.timers);
    this.#log = safeLog(options.log);
    this.#note = boundedLog(this.#log, this.taskId, MAX_NOTES_PER_EVENT);
    this.#context = options.context as C;
    this.#decoder = new FrameDecoder({ maxFrameBytes: this.#maxFrameBytes });
    this.#writer = new ResponseWriter(this.#io, this.#maxFrameBytes, (err) => this.#fatal('write-failed', err), this.#onShrink);
    this.#reader = new ChunkReader({
      io: this.#io, decoder: this.#decoder, visitor: this.#visitor, writer: this.#writer, ended: () => this.#ended,
      maxQueuedWriteBytes: resolved.maxQueuedWriteBytes, log: this.#log, taskId: this.taskId,
    });
    if (this.#signal?.aborted) this.#end('task-aborted', true);
    else this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get stats(): CommsStats {
    const { requests, errors, bytesIn } = this.#stats;
    const w = this.#writer;
    return { requests, responses: w.responsesWritten, errors: { ...errors }, bytesIn, bytesOut: w.bytesWritten, maxQueuedBytes: w.maxQueuedBytes, readPauses: this.#reader.pauses };
  }
  get ended(): boolean { return this.#ended; }
  /** Why the channel ended: `eof`, `task-aborted`, `frame-too-large`, `malformed-frame`, `write-failed`, or `close()`'s reason. */
  get endReason(): string | undefined { return this.#endReason; }
  get inflightRequests(): number { return this.#inflight.size; }
  get queuedBytes(): number { return this.#writer.queuedBytes; }
  get readingPaused(): boolean { return this.#reader.ioPaused; }

  /**
   * Sends the id-0 `{type: 'StartupDetails', ...details}` frame; the child's `connect()` resolves on
   * it. Once per channel: returns false (and sends nothing) if already sent or ended. Throws
   * WardenError (`ERR_FRAME_TOO_LARGE`, `ERR_BAD_REQUEST`) if `details` cannot be framed.
   */
  sendStartup(details: Record<string, unknown> = {}): boolean {
    if (this.#startupSent || this.#ended) return false;
    const body: Record<string, unknown> = { type: STARTUP_TYPE, ...details };
    body['type'] = STARTUP_TYPE;
    const frame = encodeFrame(STARTUP_FRAME_ID, body, this.#maxFrameBytes);
    this.#startupSent = true;
    this.#writer.appendEncoded(frame);
    return true;
  }

  /** Ends the channel: cancels handlers, writes nothing more, asks the owner to release the socket. */
  close(why = 'closed by the supervisor'): void {
    this.#end(why, true);
  }

  /** The owner read bytes from the socket. The channel keeps no reference to `chunk` after the call. */
  onData(chunk: Buffer): void {
    if (this.#ended) return;
    try {
      this.#stats.bytesIn += chunk.length;
      this.#reader.push(chunk);
    } catch (err) {
      this.#fatal('internal-error', err);
    }
  }

  /** The owner's socket took everything written so far. (The writer and `#onShrink` catch their own failures.) */
  onDrain(): void {
    if (!this.#ended) this.#writer.onDrain();
  }

  /** The socket is gone (EOF, reset, child exit). The owner releases it; the channel only stops. */
  onEnd(): void {
    if (this.#ended) return;
    if (this.#decoder.midFrame) {
      this.#log('warning', 'comms.truncated-frame', { taskId: this.taskId, bufferedBytes: this.#decoder.bufferedBytes });
    }
    this.#end('eof', false);
  }

  /** A too-large or malformed header: the decoder has stopped; answer what can be answered and close. */
  #onBadHeader(item: FrameTooLarge | FrameMalformed): void {
    if ('malformed' in item) {
      const reason = `a frame header announced ${item.length} bytes, less than the 4 of a request id: the peer does not speak warden framing (stray bytes on fd 4?)`;
      this.#protocolError('malformed-frame', { length: item.length, reason });
      return;
    }
    this.#stats.requests++;
    const id = item.id;
    const detail = { length: item.length, maxFrameBytes: this.#maxFrameBytes };
    this.#respondError(id, 'ERR_FRAME_TOO_LARGE', `request ${id} is ${item.length} bytes, over maxFrameBytes (${this.#maxFrameBytes}); ${CLOSED_NOTE}`, detail);
    this.#protocolError('frame-too-large', { requestId: id, ...detail });
  }

  /** One request frame, body `buf[start, end)`. Returns whether to go on with the next frame now. */
  #onFrame(id: number, buf: Buffer, start: number, end: number): boolean {
    this.#stats.requests++;
    const body = parseRequest(id, buf, start, end);
    if (typeof body === 'string') {
      this.#note('warning', 'comms.bad-request', { requestId: id, error: body });
      this.#respondError(id, 'ERR_BAD_REQUEST', body);
      return !this.#reader.paused && !this.#ended;
    }
    const handler = this.#handlers.get(body.type);
    const refused = refusal(id, body.type, handler !== undefined, () => this.#handlers.types(), this.#inflight, this.#maxInflight);
    if (refused === undefined) {
      this.#run(id, body.type, body, handler!);
    } else {
      this.#note(refused.level, refused.event, refused.fields);
      this.#respondError(id, refused.code, refused.message, refused.detail);
    }
    return !this.#reader.paused && !this.#ended;
  }

  /** The peer broke the framing: say so, send what is queued (answers included), and close. */
  #protocolError(reason: 'malformed-frame' | 'frame-too-large', fields: Record<string, unknown>): void {
    this.#log('error', `comms.${reason}`, { taskId: this.taskId, ...fields, action: CLOSED_NOTE });
    this.#writer.flushNow();
    this.#end(reason, true);
  }

  #run(id: number, type: string, body: RequestBody, handler: Handler<Record<string, unknown>, unknown, C>): void {
    const req = new InflightRequest<C>(this.taskId, id, type, this.#context, this.#log);
    let result: unknown;
    try {
      result = handler(body, req);
    } catch (err) {
      this.#answer(req, undefined, err, true);
      return;
    }
    if (typeof (result as PromiseLike<unknown> | null)?.then !== 'function') {
      // Answered before returning: never in flight, so no deadline and no table work.
      this.#answer(req, result, undefined, false);
      return;
    }
    if (this.#ended) return;
    this.#inflight.add(req);
    Promise.resolve(result).then((value) => this.#settle(req, value, undefined, false), (err) => this.#settle(req, undefined, err, true));
  }

  #settle(req: InflightRequest<C>, value: unknown, err: unknown, failed: boolean): void {
    if (this.#inflight.settle(req)) this.#answer(req, value, err, failed); // else already answered (timeout) or ended
  }

  #answer(req: InflightRequest<C>, value: unknown, err: unknown, failed: boolean): void {
    if (this.#ended) return;
    try {
      if (!failed) {
        this.#respond(req.requestId, { ok: value === undefined ? null : value }, req.type);
      } else if (err instanceof WardenError) {
        this.#respondError(req.requestId, err.code, clip(err.message), err.detail);
      } else {
        const message = clip(errorMessage(err));
        this.#note('warning', 'comms.handler-failed', { requestId: req.requestId, type: req.type, error: message });
        this.#respondError(req.requestId, 'ERR_HANDLER', message);
      }
    } catch (internal) {
      this.#fatal('internal-error', internal);
    }
  }

  #respondError(id: number, code: string, message: string, detail?: unknown): void {
    const error: ErrorBody = detail === undefined ? { code, message } : { code, message, detail };
    this.#respond(id, { error });
  }

  /** Frames and queues one response; a response that cannot be framed is replaced by an error that can. */
  #respond(id: number, body: ResponseBody, type?: string): void {
    let sent: ResponseBody = body;
    try {
      this.#writer.append(id, body);
    } catch (err) {
      const tooLarge = err instanceof WardenError && err.code === 'ERR_FRAME_TOO_LARGE';
      const what = 'ok' in body ? `the ${type ?? 'request'} handler's result` : 'the error response';
      const message = clip(`${what} for request ${id} could not be sent: ${errorMessage(err)}`);
      this.#note('warning', 'comms.response-unencodable', { requestId: id, type, error: message });
      sent = { error: { code: tooLarge ? 'ERR_FRAME_TOO_LARGE' : 'ERR_HANDLER', message } };
      this.#writer.append(id, sent);
    }
    if ('error' in sent) {
      const errors = this.#stats.errors;
      errors[sent.error.code] = (errors[sent.error.code] ?? 0) + 1;
    }
    this.#reader.afterAnswer();
  }

  /** Runs from the writer (also on its own tick), so it must not throw. */
  readonly #onShrink = (): void => {
    try {
      this.#reader.afterShrink();
    } catch (err) {
      this.#fatal('internal-error', err);
    }
  };

  /** A handler ran out of time: it has left the table; cancel it and answer for it. */
  readonly #onExpired = (req: InflightRequest<C>): void => {
    const timeoutMs = this.#inflight.timeoutMs;
    const message = `the ${req.type} handler did not answer request ${req.requestId} within handlerTimeoutMs (${timeoutMs})`;
    try {
      req.abort(new WardenError('ERR_HANDLER_TIMEOUT', message));
      this.#note('warning', 'comms.handler-timeout', { requestId: req.requestId, type: req.type, handlerTimeoutMs: timeoutMs });
      if (!this.#ended) this.#respondError(req.requestId, 'ERR_HANDLER_TIMEOUT', message, { handlerTimeoutMs: timeoutMs });
    } catch (err) {
      this.#fatal('internal-error', err);
    }
  };

  readonly #onAbort = (): void => {
    this.#end('task-aborted', true);
  };

  #fatal(reason: string, err: unknown): void {
    this.#log('error', 'comms.failed', { taskId: this.taskId, reason, error: errorMessage(err) });
    this.#end(reason, true);
  }

  #end(reason: string, closeIo: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#writer.stop();
    this.#reader.clear();
    const cancelled = this.#inflight.clear();
    if (cancelled.length > 0) {
      const why = new WardenError('ERR_CHANNEL_CLOSED', `the comms channel of task ${this.taskId} ended (${reason}); the request was cancelled`);
      for (const req of cancelled) req.abort(why);
    }
    if (closeIo) {
      try {
        this.#io.close(reason);
      } catch (err) {
        this.#log('error', 'comms.close-failed', { taskId: this.taskId, error: errorMessage(err) });
      }
    }
    // A normal end is debug unless the channel saw errors worth a look in the summary.
    const normal = reason === 'eof' || reason === 'task-aborted';
    const level: CommsLogLevel = normal && Object.keys(this.#stats.errors).length === 0 ? 'debug' : 'info';
    this.#log(level, 'comms.closed', { taskId: this.taskId, reason, cancelledRequests: cancelled.length, ...this.stats });
  }
}
