import { serializeRecord, type LogRecord } from './records.js';

/** Largest batch buffer: big enough that one pipe chunk's records fill few of them. */
export const MAX_BATCH_BYTES = 256 * 1024;
const MIN_BATCH_BYTES = 16 * 1024;
/** Spare batch buffers kept for reuse; more would be memory held for nothing. */
const MAX_FREE_BUFFERS = 4;
/** Characters JSON writes as they are, in ASCII: anything else goes through JSON.stringify. */
const NEEDS_JSON_ESCAPE = /[^\x20\x21\x23-\x5b\x5d-\x7f]/;

/**
 * Encodes records as JSON lines straight into batch buffers, ready for one `writev`.
 *
 * The common record, a whole stdout/stderr line (exactly timestamp, level, logger, event, all
 * strings), is encoded without JSON.stringify of the object or any per-record string
 * concatenation: the `{"timestamp":...,"event":` prefix is encoded once per millisecond and
 * copied, and an event of printable ASCII is copied byte for byte. That, not the split, is what
 * decides throughput; the output is the same JSON that JSON.stringify would give.
 *
 * Invariants:
 * 1. `bytes` is exactly the length of the lines appended since the last `take` or `clear`.
 * 2. `take` returns the lines in append order; the buffers stay untouched until `recycle`.
 * 3. At most MAX_FREE_BUFFERS spare buffers are kept.
 */
export class JsonLinesBatch {
  /** Bytes appended and not yet taken. */
  bytes = 0;
  private readonly batchBytes: number;
  private sealed: Array<{ buf: Buffer; len: number }> = [];
  private cur: Buffer | null = null;
  private curLen = 0;
  private readonly free: Buffer[] = [];
  private prefix: Buffer = Buffer.alloc(0);
  private prefixTimestamp = '';
  private prefixLevel = '';
  private prefixLogger = '';

  /** `sizeHintBytes` (the writer's high-water mark) sizes the buffers, within 16..256 KiB. */
  constructor(sizeHintBytes: number) {
    this.batchBytes = Math.min(MAX_BATCH_BYTES, Math.max(MIN_BATCH_BYTES, sizeHintBytes));
  }

  /** Appends one record's JSON line (with its `\n`). */
  append(record: LogRecord): void {
    let keys = 0;
    for (const _key in record) keys++;
    const { timestamp, level, logger, event } = record;
    if (keys === 4 && typeof timestamp === 'string' && typeof level === 'string' && typeof logger === 'string' && typeof event === 'string') {
      const prefix = this.prefixFor(timestamp, level, logger);
      if (!NEEDS_JSON_ESCAPE.test(event)) {
        // Printable ASCII without quote or backslash: its latin1 bytes are its JSON string body.
        const buf = this.reserve(prefix.length + event.length + 4);
        let off = this.curLen;
        buf.set(prefix, off);
        off += prefix.length;
        buf[off++] = 0x22;
        off += buf.write(event, off, 'latin1');
        buf[off++] = 0x22;
        buf[off++] = 0x7d;
        buf[off++] = 0x0a;
        this.commit(off);
        return;
      }
      const json = JSON.stringify(event);
      const buf = this.reserve(this.utf8Room(json, prefix.length + 2));
      let off = this.curLen;
      buf.set(prefix, off);
      off += prefix.length;
      off += buf.write(json, off, 'utf8');
      buf[off++] = 0x7d;
      buf[off++] = 0x0a;
      this.commit(off);
      return;
    }
    const line = serializeRecord(record);
    const buf = this.reserve(this.utf8Room(line, 0));
    this.commit(this.curLen + buf.write(line, this.curLen, 'utf8'));
  }

  /**
   * Hands over everything appended: `views` to write, `buffers` to give back to `recycle` once
   * the write is done. Empties the batch.
   */
  take(): { views: Buffer[]; buffers: Buffer[] } {
    if (this.curLen > 0) this.sealed.push({ buf: this.cur as Buffer, len: this.curLen });
    else if (this.cur !== null) this.keepSpare(this.cur);
    const sealed = this.sealed;
    this.sealed = [];
    this.cur = null;
    this.curLen = 0;
    this.bytes = 0;
    return { views: sealed.map((b) => b.buf.subarray(0, b.len)), buffers: sealed.map((b) => b.buf) };
  }

  /** Takes back buffers whose write finished. */
  recycle(buffers: Buffer[]): void {
    for (const buf of buffers) this.keepSpare(buf);
  }

  /** Drops everything appended and every spare buffer. */
  clear(): void {
    this.sealed = [];
    this.cur = null;
    this.curLen = 0;
    this.bytes = 0;
    this.free.length = 0;
  }

  private keepSpare(buf: Buffer): void {
    if (buf.length === this.batchBytes && this.free.length < MAX_FREE_BUFFERS) this.free.push(buf);
  }

  private prefixFor(timestamp: string, level: string, logger: string): Buffer {
    if (timestamp !== this.prefixTimestamp || level !== this.prefixLevel || logger !== this.prefixLogger) {
      this.prefixTimestamp = timestamp;
      this.prefixLevel = level;
      this.prefixLogger = logger;
      this.prefix = Buffer.from(`{"timestamp":${JSON.stringify(timestamp)},"level":${JSON.stringify(level)},"logger":${JSON.stringify(logger)},"event":`);
    }
    return this.prefix;
  }

  /**
   * Bytes to reserve for `text` as UTF-8 plus `extra`: the cheap bound of 3 bytes per UTF-16 unit
   * when the current buffer has that much room, else the exact length. Reserving the bound
   * regardless sealed a buffer per record once records passed a third of a buffer: a 64 KiB part
   * took a 256 KiB buffer of its own, 4x the bytes counted in `bytes` (and 4x the garbage).
   */
  private utf8Room(text: string, extra: number): number {
    const bound = text.length * 3 + extra;
    return this.cur !== null && this.cur.length - this.curLen >= bound ? bound : Buffer.byteLength(text) + extra;
  }

  /** The current buffer with at least `bytes` free after `curLen`. */
  private reserve(bytes: number): Buffer {
    if (this.cur !== null && this.cur.length - this.curLen >= bytes) return this.cur;
    if (this.cur !== null && this.curLen > 0) this.sealed.push({ buf: this.cur, len: this.curLen });
    else if (this.cur !== null) this.keepSpare(this.cur);
    this.cur = bytes <= this.batchBytes ? (this.free.pop() ?? Buffer.allocUnsafe(this.batchBytes)) : Buffer.allocUnsafe(bytes);
    this.curLen = 0;
    return this.cur;
  }

  private commit(newLen: number): void {
    this.bytes += newLen - this.curLen;
    this.curLen = newLen;
  }
}
