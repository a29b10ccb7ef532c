/**
 * The supervisor side's outgoing queue for one channel: coalesces the frames of one chunk read (or,
 * for answers that come later, of one tick) into one write, respects the owner's backpressure, and
 * keeps count of what is waiting.
 */
import { FrameQueue } from './frame-queue.js';

/** The part of the owner's socket the writer uses. `write` returns false when the socket is full. */
export interface FrameSink {
  write(buf: Buffer): boolean;
}

/**
 * Invariants:
 * - `sink.write` is called only when no earlier write is waiting for `onDrain`, except by
 *   `flushNow()`, the last word before the channel closes.
 * - `queuedBytes` = bytes enqueued and not yet taken by a write that returned true: the own queue
 *   plus the last write waiting for `onDrain`. `maxQueuedBytes` is its high-water mark.
 * - Frames enqueued between `hold()` and `release()` leave in one `sink.write` at `release()`;
 *   other frames enqueued in one tick leave in one `sink.write` at the end of the tick. Either
 *   way in enqueue order, and never before the owner drained an earlier write.
 * - After `stop()` nothing is written and nothing is held.
 */
export class ResponseWriter {
  readonly #sink: FrameSink;
  readonly #onError: (err: unknown) => void;
  readonly #onShrink: () => void;
  readonly #queue: FrameQueue;
  #queueResponses = 0;
  #awaitingDrainBytes = 0;
  #flushScheduled = false;
  #held = false;
  #stopped = false;
  maxQueuedBytes = 0;
  bytesWritten = 0;
  responsesWritten = 0;

  /**
   * `maxFrameBytes`: bound on each frame's length field.
   * `onError`: the sink threw; the writer has stopped and the channel should end.
   * `onShrink`: `queuedBytes` went down (a write was taken or drained); the channel may resume reading.
   */
  constructor(sink: FrameSink, maxFrameBytes: number, onError: (err: unknown) => void, onShrink: () => void) {
    this.#sink = sink;
    this.#queue = new FrameQueue(maxFrameBytes);
    this.#onError = onError;
    this.#onShrink = onShrink;
  }

  get queuedBytes(): number {
    return this.#queue.bytes + this.#awaitingDrainBytes;
  }

  /**
   * Encodes and queues one response frame. Throws as `FrameQueue.append` does (nothing queued
   * then); after `stop()` it does nothing.
   */
  append(id: number, body: unknown): void {
    if (this.#stopped) return;
    this.#queue.append(id, body);
    this.#queueResponses++;
    this.#queued();
  }

  /** Queues one frame encoded elsewhere (the startup frame); it does not count as a response. */
  appendEncoded(frame: Buffer): void {
    if (this.#stopped) return;
    this.#queue.appendEncoded(frame);
    this.#queued();
  }

  /** The owner's socket took everything: the waiting write is done; send what queued up since. */
  onDrain(): void {
    if (this.#stopped) return;
    this.#awaitingDrainBytes = 0;
    this.#write(false);
    if (!this.#stopped) this.#onShrink();
  }

  /**
   * Until `release()`, frames only queue: the channel holds the writer while it reads a chunk, so
   * that the chunk's answers leave in one write as soon as it is read, without waiting for the
   * end of the tick (one request at a time is the common case, and the tick only adds a turn).
   */
  hold(): void {
    this.#held = true;
  }

  /** Ends `hold()`: writes what queued meanwhile, unless an earlier write is waiting for `onDrain`. */
  release(): void {
    this.#held = false;
    if (!this.#stopped && this.#awaitingDrainBytes === 0) this.#write(false);
  }

  /** Writes everything queued now, ignoring backpressure. For the last frames before a close. */
  flushNow(): void {
    if (!this.#stopped) this.#write(true);
  }

  /** Drops the queue; nothing is written from now on. */
  stop(): void {
    this.#stopped = true;
    this.#queue.clear();
    this.#queueResponses = 0;
    this.#awaitingDrainBytes = 0;
  }

  #queued(): void {
    const queued = this.queuedBytes;
    if (queued > this.maxQueuedBytes) this.maxQueuedBytes = queued;
    if (!this.#flushScheduled && !this.#held && this.#awaitingDrainBytes === 0) {
      this.#flushScheduled = true;
      process.nextTick(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (!this.#stopped && !this.#held && this.#awaitingDrainBytes === 0) this.#write(false);
  };

  #write(force: boolean): void {
    if (this.#queue.bytes === 0 || (!force && this.#awaitingDrainBytes > 0)) return;
    const responses = this.#queueResponses;
    const buf = this.#queue.take()!;
    this.#queueResponses = 0;
    let accepted: boolean;
    try {
      accepted = this.#sink.write(buf);
    } catch (err) {
      this.stop();
      this.#onError(err);
      return;
    }
    this.bytesWritten += buf.length;
    this.responsesWritten += responses;
    if (accepted) this.#onShrink();
    else this.#awaitingDrainBytes += buf.length;
  }
}
