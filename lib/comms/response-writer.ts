/**
 * The supervisor side's outgoing queue for one channel: coalesces the frames of one tick into one
 * write, respects the owner's backpressure, and keeps count of what is waiting.
 */

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
 * - Frames enqueued in one tick leave in one `sink.write`, in enqueue order.
 * - After `stop()` nothing is written and nothing is held.
 */
export class ResponseWriter {
  readonly #sink: FrameSink;
  readonly #onError: (err: unknown) => void;
  readonly #onShrink: () => void;
  #queue: Buffer[] = [];
  #queueBytes = 0;
  #queueResponses = 0;
  #awaitingDrainBytes = 0;
  #flushScheduled = false;
  #stopped = false;
  maxQueuedBytes = 0;
  bytesWritten = 0;
  responsesWritten = 0;

  /**
   * `onError`: the sink threw; the writer has stopped and the channel should end.
   * `onShrink`: `queuedBytes` went down (a write was taken or drained); the channel may resume reading.
   */
  constructor(sink: FrameSink, onError: (err: unknown) => void, onShrink: () => void) {
    this.#sink = sink;
    this.#onError = onError;
    this.#onShrink = onShrink;
  }

  get queuedBytes(): number {
    return this.#queueBytes + this.#awaitingDrainBytes;
  }

  /** Queues one encoded frame; `isResponse` counts it in `responsesWritten` once written. */
  enqueue(frame: Buffer, isResponse: boolean): void {
    if (this.#stopped) return;
    this.#queue.push(frame);
    this.#queueBytes += frame.length;
    if (isResponse) this.#queueResponses++;
    const queued = this.queuedBytes;
    if (queued > this.maxQueuedBytes) this.maxQueuedBytes = queued;
    if (!this.#flushScheduled && this.#awaitingDrainBytes === 0) {
      this.#flushScheduled = true;
      process.nextTick(this.#flush);
    }
  }

  /** The owner's socket took everything: the waiting write is done; send what queued up since. */
  onDrain(): void {
    if (this.#stopped) return;
    this.#awaitingDrainBytes = 0;
    this.#write(false);
    if (!this.#stopped) this.#onShrink();
  }

  /** Writes everything queued now, ignoring backpressure. For the last frames before a close. */
  flushNow(): void {
    if (!this.#stopped) this.#write(true);
  }

  /** Drops the queue; nothing is written from now on. */
  stop(): void {
    this.#stopped = true;
    this.#queue = [];
    this.#queueBytes = 0;
    this.#queueResponses = 0;
    this.#awaitingDrainBytes = 0;
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (!this.#stopped && this.#awaitingDrainBytes === 0) this.#write(false);
  };

  #write(force: boolean): void {
    if (this.#queue.length === 0 || (!force && this.#awaitingDrainBytes > 0)) return;
    const buf = this.#queue.length === 1 ? this.#queue[0]! : Buffer.concat(this.#queue, this.#queueBytes);
    const responses = this.#queueResponses;
    this.#queue = [];
    this.#queueBytes = 0;
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
