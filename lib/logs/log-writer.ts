import * as fs from 'node:fs';
import { WardenError, errnoCode } from '../errors.js';
import { JsonLinesBatch } from './json-lines-batch.js';
import type { LogRecord } from './records.js';
import type { SecretMasker } from './secret-masker.js';

export interface TaskLogWriterOptions {
  /**
   * Bytes of encoded records, queued or being written, at which `write` starts returning false
   * (the caller then pauses its pipe reads until a drain callback). Default 1 MiB. It bounds the
   * writer's memory at this plus whatever the caller writes after the first false: one record
   * when it honours false at once, one pipe chunk's records when it pauses between chunks.
   */
  highWaterMarkBytes?: number;
  /** Receives every record, masked, synchronously inside `write`, also after a write error or close. */
  onRecord?: (record: LogRecord) => void;
  /** Told once about the first file failure (and once about a listener that threw). Also in `errors`. */
  onError?: (error: WardenError) => void;
  /** Applied to every record before it is emitted or written. */
  masker?: SecretMasker;
}

export const DEFAULT_LOG_HIGH_WATER_MARK_BYTES = 1 << 20;

/**
 * Appends a task's records to a JSON-lines file (opened with 'a', so a resumed task keeps its
 * earlier lines) and/or hands them to a listener.
 *
 * Records written in one tick go to the file in one `writev`; while a write is in flight, new
 * records gather into the next one. Whole-line records of the standard shape (exactly
 * timestamp, level, logger, event, all strings) are encoded straight into the batch buffer
 * without JSON.stringify of the object; the output is the same JSON.
 *
 * Invariants:
 * 1. Records reach the file in `write` order, each as one line; at most one write is in flight.
 * 2. `bufferedBytes` (queued + in flight) is what `write`'s result is measured against; the
 *    writer owns no memory beyond it and a few spare batch buffers.
 * 3. A file failure is reported once (`onError`, `errors`), the file is released, its queued
 *    bytes dropped, and a pending drain still fires, so a paused pipe is never left paused.
 * 4. Every record is passed to `onRecord`, masked, whatever the state of the file.
 * 5. Once `close()` resolves the file descriptor is closed and no fs request of this writer is
 *    pending; nothing is written after `close()` was called except what was queued before it.
 */
export class TaskLogWriter {
  /** The file, or undefined for a writer that only emits records. */
  readonly path: string | undefined;
  /** File failures (code ERR_LOG_FILE) and listener failures (ERR_LOG_LISTENER), first of each kind. */
  readonly errors: WardenError[] = [];
  /** Records not written to the file because it had failed or `close()` was called. */
  unwrittenRecords = 0;

  private fd: number;
  private readonly highWaterMarkBytes: number;
  private readonly onRecord: ((record: LogRecord) => void) | undefined;
  private readonly onError: ((error: WardenError) => void) | undefined;
  private readonly masker: SecretMasker | undefined;
  private readonly drainListeners = new Set<() => void>();
  private readonly batch: JsonLinesBatch;
  private inFlightBytes = 0;
  private writing = false;
  private flushScheduled = false;
  private needDrain = false;
  private failed = false;
  private listenerFailed = false;
  private closeRequested = false;
  private closePromise: Promise<void> | null = null;
  private fdReleased: Promise<void> | null = null;
  private resolveClose: () => void = () => {};
  private readonly onTick = (): void => this.pump();

  /**
   * Opens the writer. With a path, the file is opened (created if needed, appended to) before
   * this returns; failing to open it is a usage error thrown synchronously as WardenError
   * ERR_LOG_FILE naming the path, so the caller can refuse to start the task. Without a path the
   * writer only emits records to `onRecord`.
   */
  static open(path?: string, options: TaskLogWriterOptions = {}): TaskLogWriter {
    const hwm = options.highWaterMarkBytes ?? DEFAULT_LOG_HIGH_WATER_MARK_BYTES;
    if (!Number.isInteger(hwm) || hwm < 1) {
      throw new WardenError('ERR_INVALID_OPTION', `highWaterMarkBytes must be a positive integer (got ${String(hwm)}); omit it for the 1 MiB default`);
    }
    let fd = -1;
    if (path !== undefined) {
      try {
        fd = fs.openSync(path, 'a');
      } catch (err) {
        throw new WardenError('ERR_LOG_FILE', `cannot open the task log file ${path}: ${messageOf(err)}; pass a path in a directory that exists and is writable`, {
          cause: err,
          detail: { path, code: errnoCode(err) },
        });
      }
    }
    return new TaskLogWriter(path, fd, hwm, options);
  }

  private constructor(path: string | undefined, fd: number, hwm: number, options: TaskLogWriterOptions) {
    this.path = path;
    this.fd = fd;
    this.highWaterMarkBytes = hwm;
    this.batch = new JsonLinesBatch(hwm);
    this.onRecord = options.onRecord;
    this.onError = options.onError;
    this.masker = options.masker;
  }

  /** Encoded bytes queued or being written. */
  get bufferedBytes(): number {
    return this.batch.bytes + this.inFlightBytes;
  }

  /**
   * Emits and queues one record. Returns false when `bufferedBytes` reached highWaterMarkBytes:
   * the caller must stop reading until a drain callback runs. The record is accepted either way.
   */
  write(record: LogRecord): boolean {
    if (this.masker !== undefined) record = this.masker.maskRecord(record);
    if (this.onRecord !== undefined) this.callListener(this.onRecord, record);
    if (this.fd < 0 || this.closeRequested) {
      if (this.path !== undefined) this.unwrittenRecords++;
      return true;
    }
    this.batch.append(record);
    if (!this.writing && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.onTick);
    }
    if (this.batch.bytes + this.inFlightBytes >= this.highWaterMarkBytes) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Calls `cb` each time the writer drains after a `write` returned false. Returns an unsubscribe. */
  onDrain(cb: () => void): () => void {
    this.drainListeners.add(cb);
    return () => this.drainListeners.delete(cb);
  }

  /**
   * Writes everything queued, then closes the file. Later `write`s only emit. Never rejects: a
   * failure is in `errors`. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    if (this.closePromise === null) {
      this.closeRequested = true;
      this.closePromise = new Promise<void>((resolve) => {
        this.resolveClose = resolve;
      });
      this.pump();
    }
    return this.closePromise;
  }

  /** Starts the next write, or finishes a close. The one place that decides what happens next. */
  private pump(): void {
    this.flushScheduled = false;
    if (this.writing) return;
    if (this.fd >= 0 && this.batch.bytes > 0) {
      this.startWrite();
      return;
    }
    if (this.closeRequested) void this.releaseFd().then(this.resolveClose);
  }

  private startWrite(): void {
    this.inFlightBytes = this.batch.bytes;
    this.writing = true;
    const { views, buffers } = this.batch.take();
    this.writeViews(views, buffers);
  }

  private writeViews(views: Buffer[], buffers: Buffer[]): void {
    fs.writev(this.fd, views, (err, written) => {
      if (err !== null || written === 0) {
        this.writing = false;
        this.fail(err ?? new Error('the file accepted no bytes'));
        return;
      }
      // A short write (the disk filled up mid-way) leaves a tail to retry; the retry reports why.
      let left = written;
      let i = 0;
      while (i < views.length && left >= views[i].length) left -= views[i++].length;
      if (i < views.length) {
        const rest = views.slice(i);
        rest[0] = rest[0].subarray(left);
        this.writeViews(rest, buffers);
        return;
      }
      this.writing = false;
      this.inFlightBytes = 0;
      this.batch.recycle(buffers);
      this.pump();
      if (this.needDrain && this.batch.bytes + this.inFlightBytes < this.highWaterMarkBytes) this.emitDrain();
    });
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    const dropped = this.batch.bytes + this.inFlightBytes;
    this.batch.clear();
    this.inFlightBytes = 0;
    // Released before the report, so that an error callback that logs the failure as a record
    // (re-entering `write`) finds the file gone and only emits, instead of queueing for a dead fd.
    void this.releaseFd();
    this.report(new WardenError('ERR_LOG_FILE', `writing the task log file ${this.path} failed: ${messageOf(err)}; the task goes on and its records still reach listeners, but no longer this file (free space or fix the file for the next run)`, {
      cause: err,
      detail: { path: this.path, code: errnoCode(err), droppedBytes: dropped },
    }));
    if (this.needDrain) this.emitDrain();
    if (this.closeRequested) this.pump();
  }

  /** Closes the fd once; every caller waits for the same close. */
  private releaseFd(): Promise<void> {
    if (this.fdReleased === null) {
      const fd = this.fd;
      this.fd = -1;
      this.fdReleased = fd < 0 ? Promise.resolve() : new Promise<void>((resolve) => {
        fs.close(fd, (err) => {
          if (err !== null && !this.failed) {
            this.failed = true;
            this.report(new WardenError('ERR_LOG_FILE', `closing the task log file ${this.path} failed: ${messageOf(err)}; its last lines may be missing`, {
              cause: err,
              detail: { path: this.path, code: errnoCode(err) },
            }));
          }
          resolve();
        });
      });
    }
    return this.fdReleased;
  }

  private emitDrain(): void {
    this.needDrain = false;
    for (const cb of [...this.drainListeners]) this.callListener(cb, undefined);
  }

  private callListener<T>(fn: (arg: T) => void, arg: T): void {
    try {
      fn(arg);
    } catch (err) {
      if (this.listenerFailed) return;
      this.listenerFailed = true;
      this.report(new WardenError('ERR_LOG_LISTENER', `a task log listener threw: ${messageOf(err)}; later throws are not reported`, { cause: err }));
    }
  }

  private report(error: WardenError): void {
    this.errors.push(error);
    if (this.onError === undefined) return;
    try {
      this.onError(error);
    } catch {
      // The error is in `errors`; a throwing error callback must not break the writer.
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
