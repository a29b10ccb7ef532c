/**
 * The inbound half of the supervisor's channel: feeds the chunks the socket's owner reads to the
 * frame decoder, pauses and resumes the owner's reading for the channel's flow control, keeps the
 * unread rest while paused, and holds the response writer while a chunk is read, so that the
 * chunk's answers leave in one write as soon as it is read.
 */
import type { ChannelIO } from './channel-options.js';
import type { FrameDecoder, FrameVisitor } from './frame-codec.js';
import type { CommsLog } from './handlers.js';

/** The part of the response writer the reader uses (ResponseWriter). */
export interface HeldWriter {
  readonly queuedBytes: number;
  hold(): void;
  release(): void;
}

export interface ChunkReaderOptions {
  io: Pick<ChannelIO, 'pauseReading' | 'resumeReading'>;
  decoder: FrameDecoder;
  /** Its `frame` returns false once reading must stop (paused or ended): the rest is kept. */
  visitor: FrameVisitor;
  writer: HeldWriter;
  /** Reading pauses while the writer's `queuedBytes` is over it, until it is down to half. */
  maxQueuedWriteBytes: number;
  /** Gets the first pause's record (`comms.read-paused`); later ones are only counted. */
  log: CommsLog;
  taskId: string;
  /** The channel ended: drop chunks, decode nothing, pause and resume nothing. */
  ended(): boolean;
}

/**
 * Invariants:
 * - Bytes are decoded in the order they were pushed, each once, never while paused or ended.
 * - Decoding pauses when an answer leaves the writer's queue over `maxQueuedWriteBytes`, and
 *   resumes when the queue shrinks to half of it. The owner's reading is paused
 *   (`io.pauseReading`) from the pause until what was kept is read again, and not resumed after
 *   the end.
 * - No reference to a pushed chunk is kept after `push` returns: the unread rest of a chunk (only
 *   when reading paused mid-chunk, or chunks pushed while paused) is copied. So the owner may read
 *   into one reused buffer. The common case, a chunk read whole, copies nothing.
 * - Kept bytes are at most the rest of one chunk plus the chunks pushed while paused (the owner
 *   stops reading when asked, so that is one chunk or so); `clear()` drops them.
 * - Never recursive: a release of the writer that resumes reading (the owner's drain path runs
 *   `drain()`, which returns at once while a pass runs) makes the running pass loop again.
 */
export class ChunkReader {
  readonly #io: Pick<ChannelIO, 'pauseReading' | 'resumeReading'>;
  readonly #decoder: FrameDecoder;
  readonly #visitor: FrameVisitor;
  readonly #writer: HeldWriter;
  readonly #ended: () => boolean;
  readonly #maxQueued: number;
  readonly #log: CommsLog;
  readonly #taskId: string;
  #pauses = 0;
  #paused = false;
  #ioPaused = false;
  /** Chunks not yet fully decoded, and the offset into the first. */
  #backlog: Buffer[] = [];
  #backlogPos = 0;
  #processing = false;

  constructor(options: ChunkReaderOptions) {
    this.#decoder = options.decoder;
    this.#visitor = options.visitor;
    this.#writer = options.writer;
    this.#ended = options.ended;
    this.#io = options.io;
    this.#maxQueued = options.maxQueuedWriteBytes;
    this.#log = options.log;
    this.#taskId = options.taskId;
  }

  /** Times decoding paused. */
  get pauses(): number {
    return this.#pauses;
  }

  /** No request is decoded now (the channel's queue of answers is over its bound). */
  get paused(): boolean {
    return this.#paused;
  }

  /** The owner's reading is paused (it lags `paused`: it resumes once what was kept is read). */
  get ioPaused(): boolean {
    return this.#ioPaused;
  }

  /** Bytes held back (kept chunks, less what of the first was read). */
  get keptBytes(): number {
    let n = 0;
    for (const chunk of this.#backlog) n += chunk.length;
    return n - this.#backlogPos;
  }

  /** An answer was queued: pause if the queue is over its bound. */
  afterAnswer(): void {
    const queuedBytes = this.#writer.queuedBytes;
    if (this.#paused || queuedBytes <= this.#maxQueued) return;
    this.#paused = true;
    if (++this.#pauses === 1) {
      this.#log('warning', 'comms.read-paused', {
        taskId: this.#taskId, queuedBytes, maxQueuedWriteBytes: this.#maxQueued,
        reason: 'the task is not reading its responses as fast as it sends requests; its requests are not read until it catches up (later pauses are only counted in readPauses)',
      });
    }
    if (!this.#ioPaused) {
      this.#ioPaused = true;
      this.#io.pauseReading();
    }
  }

  /** The writer's queue shrank: at half the bound, decode again (what was kept first). May throw as `push`. */
  afterShrink(): void {
    if (this.#ended() || !this.#paused || this.#writer.queuedBytes > this.#maxQueued / 2) return;
    this.#paused = false;
    this.drain();
    this.#afterRead();
  }

  /** The owner read `chunk`. May throw what the visitor throws (the channel ends then). */
  push(chunk: Buffer): void {
    if (this.#ended()) return;
    if (this.#backlog.length > 0 || this.#processing || this.#paused) {
      this.#backlog.push(Buffer.from(chunk));
      this.drain();
      this.#afterRead();
      return;
    }
    // The common case: nothing held back, so the chunk is read in place.
    this.#processing = true;
    try {
      this.#writer.hold();
      const at = this.#decoder.visit(chunk, this.#visitor);
      if (at < chunk.length && !this.#ended()) this.#backlog.push(Buffer.from(chunk.subarray(at)));
      this.#writer.release();
    } finally {
      this.#processing = false;
    }
    if (this.#backlog.length > 0) this.drain(); // goes on at once if reading was resumed meanwhile
    this.#afterRead();
  }

  /** Reads kept chunks while reading is not paused. A no-op while a pass already runs. */
  drain(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#backlog.length > 0 && !this.#paused && !this.#ended()) {
        this.#writer.hold();
        while (this.#backlog.length > 0 && !this.#paused && !this.#ended()) {
          const chunk = this.#backlog[0]!;
          const at = this.#decoder.visit(chunk, this.#visitor, this.#backlogPos);
          if (at < chunk.length) {
            this.#backlogPos = at;
          } else {
            this.#backlog.shift();
            this.#backlogPos = 0;
          }
        }
        this.#writer.release();
      }
    } finally {
      this.#processing = false;
    }
  }

  /** Reading may go on: resume the owner's reading if it was paused. */
  #afterRead(): void {
    if (!this.#ended() && !this.#paused && this.#ioPaused) {
      this.#ioPaused = false;
      this.#io.resumeReading();
    }
  }

  /** Drops what is kept (the channel ended). */
  clear(): void {
    this.#backlog = [];
    this.#backlogPos = 0;
  }
}
