import { LineSplitter } from '../logs/line-splitter.js';
import { TaskLogWriter } from '../logs/log-writer.js';
import { channelRecord, isoNow, stderrRecord, stdoutRecord, type LogRecord } from '../logs/records.js';
import { SecretMasker } from '../logs/secret-masker.js';
import type { WardenError } from '../errors.js';

export interface TaskLogOptions {
  /** Append the JSON-lines log here; without it records are only emitted. */
  path: string | undefined;
  maxLineBytes: number;
  /** Encoded bytes the writer may hold before the pipes are paused. Default 1 MiB. */
  highWaterMarkBytes?: number;
  onRecord(record: LogRecord): void;
  onError(error: WardenError): void;
  /** Pause / resume reading of every output pipe of the task (backpressure from the writer). */
  pause(): void;
  resume(): void;
}

/**
 * One task's log: stdout, stderr and the fd 3 channel split into lines, turned into records,
 * masked, and appended as JSON lines (and emitted).
 *
 * Invariants:
 * 1. Nothing is dropped: every line (or marked part of a long one) becomes one record.
 * 2. While the writer is behind, the task's pipes are paused: memory per task stays bounded
 *    by the writer's high-water mark plus one pipe chunk.
 * 3. Every record is masked with the task's secrets before it is emitted or written.
 */
export class TaskLog {
  readonly masker = new SecretMasker();
  private readonly writer: TaskLogWriter;
  /** Created on a stream's first bytes: most tasks write to few of the three, many to none. */
  private out: LineSplitter | undefined;
  private err: LineSplitter | undefined;
  private chan: LineSplitter | undefined;
  private paused = false;
  private stamp = '';
  private full = false;

  /** Throws WardenError ERR_LOG_FILE when the file cannot be opened (a usage error). */
  constructor(private readonly o: TaskLogOptions) {
    this.writer = TaskLogWriter.open(o.path, {
      masker: this.masker,
      onRecord: o.onRecord,
      onError: o.onError,
      ...(o.highWaterMarkBytes !== undefined ? { highWaterMarkBytes: o.highWaterMarkBytes } : {}),
    });
  }

  get errors(): WardenError[] {
    return this.writer.errors;
  }

  /** Whether records go to a file (else only to the `onRecord` listener). */
  get hasFile(): boolean {
    return this.o.path !== undefined;
  }

  stdout(chunk: Buffer): void {
    this.feed((this.out ??= this.splitter((t, p, m) => this.put(stdoutRecord(t, p, m, this.stamp)))), chunk);
  }

  stderr(chunk: Buffer): void {
    this.feed((this.err ??= this.splitter((t, p, m) => this.put(stderrRecord(t, p, m, this.stamp)))), chunk);
  }

  channel(chunk: Buffer): void {
    this.feed((this.chan ??= this.splitter((t, p, m) => this.put(channelRecord(t, p, m)))), chunk);
  }

  /** EOF of a stream: its partial last line becomes a record (half a JSON record is kept, marked). */
  end(stream: 'stdout' | 'stderr' | 'log'): void {
    const splitter = stream === 'stdout' ? this.out : stream === 'stderr' ? this.err : this.chan;
    if (splitter === undefined) return; // no bytes ever came: no partial line
    this.stamp = isoNow();
    splitter.end();
    this.afterWrite();
  }

  /** A record written by warden (already shaped). */
  record(record: LogRecord): void {
    this.put(record);
    this.afterWrite();
  }

  /** Flushes and closes the file; records after this are still emitted, not written. */
  close(): Promise<void> {
    if (this.paused) {
      this.paused = false;
      this.o.resume();
    }
    return this.writer.close();
  }

  private splitter(onLine: (text: string, part: number, more: boolean) => void): LineSplitter {
    return new LineSplitter({ maxLineBytes: this.o.maxLineBytes, onLine });
  }

  private feed(splitter: LineSplitter, chunk: Buffer): void {
    this.stamp = isoNow();
    splitter.push(chunk);
    this.afterWrite();
  }

  private put(record: LogRecord): void {
    if (!this.writer.write(record)) this.full = true;
  }

  private afterWrite(): void {
    if (!this.full || this.paused) return;
    this.full = false;
    this.paused = true;
    this.o.pause();
    const off = this.writer.onDrain(() => {
      off();
      this.full = false;
      this.paused = false;
      this.o.resume();
    });
  }
}
