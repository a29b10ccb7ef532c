import { WardenError } from '../errors.js';

/**
 * Receives each line. `part` is 0 for a whole line; a line longer than `maxLineBytes` arrives as
 * parts numbered from 1, every part but the last with `more: true`. The handler must not throw:
 * an exception propagates out of `push`/`end` and the line it was given is not offered again.
 */
export type LineHandler = (text: string, part: number, more: boolean) => void;

export interface LineSplitterOptions {
  /**
   * Longest line, in bytes of UTF-8 text (after invalid bytes became U+FFFD, without the line
   * ending), delivered whole. A longer line is cut on a character boundary into parts of at most
   * this many bytes. Default 65536 (64 KiB). Must be an integer >= 4 so that any character fits.
   * It is also the memory bound: a pending line never holds more than this (+1 byte for a `\r`
   * that may turn out to be part of a CRLF, + up to 3 bytes of an incomplete character).
   */
  maxLineBytes?: number;
  onLine: LineHandler;
}

export const DEFAULT_MAX_LINE_BYTES = 65536;

/** Chunks larger than this are decoded in slices, so one huge chunk never becomes one huge string. */
const SLICE_BYTES = 1 << 20;
const LF = 10;
const CR = 13;

/**
 * Splits a byte stream into UTF-8 text lines, one stream per splitter: the supervisor calls
 * `push(chunk)` for each chunk read from a pipe and `end()` at EOF.
 *
 * The callback form (rather than returning an array of line objects) is deliberate: it allocates
 * nothing per line but the line's string, which is what lets a task print a million lines a
 * second without the supervisor falling behind.
 *
 * Invariants:
 * 1. Lines come out in stream order, each exactly once; `\n` ends a line and is not part of it;
 *    one `\r` right before it is dropped; an empty line is delivered as "".
 * 2. Decoding is the same as decoding the whole stream at once: a multi-byte character split
 *    across chunks is never broken, and each invalid sequence becomes U+FFFD.
 * 3. Every delivered string is at most `maxLineBytes` bytes of UTF-8; parts are cut only on
 *    character boundaries and concatenate back to the line.
 * 4. Between calls the splitter holds at most `maxLineBytes` + 1 bytes of pending text (see
 *    `pendingBytes`) and at most 3 bytes of an incomplete character.
 * 5. `end()` delivers the partial last line, if any, and leaves the splitter empty, ready for a
 *    new stream.
 */
export class LineSplitter {
  private readonly maxLineBytes: number;
  private readonly onLine: LineHandler;
  /** Text of the current line seen so far (never includes a `\n`). */
  private pending = '';
  /** UTF-8 length of `pending`. */
  private pendingByteCount = 0;
  /** Parts of the current line already delivered. */
  private partsSent = 0;
  /** Leading bytes of a character whose remaining bytes are in the next chunk (0-3 bytes). */
  private carry: Buffer | null = null;

  constructor(options: LineSplitterOptions) {
    const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isInteger(max) || max < 4) {
      throw new WardenError('ERR_INVALID_OPTION', `maxLineBytes must be an integer >= 4 (got ${String(max)}); omit it for the 64 KiB default`);
    }
    if (typeof options.onLine !== 'function') {
      throw new WardenError('ERR_INVALID_OPTION', 'LineSplitter needs an onLine callback');
    }
    this.maxLineBytes = max;
    this.onLine = options.onLine;
  }

  /** UTF-8 bytes of the current incomplete line held between calls (invariant 4). */
  get pendingBytes(): number {
    return this.pendingByteCount;
  }

  push(chunk: Buffer): void {
    for (let start = 0; start < chunk.length; start += SLICE_BYTES) {
      this.pushSlice(start === 0 && chunk.length <= SLICE_BYTES ? chunk : chunk.subarray(start, start + SLICE_BYTES));
    }
  }

  /** Delivers the partial last line (an incomplete character at EOF becomes U+FFFD). */
  end(): void {
    if (this.carry !== null) {
      this.appendPending(this.carry.toString('utf8'));
      this.carry = null;
    }
    if (this.pending.length > 0 || this.partsSent > 0) this.finishLine('');
    this.pending = '';
    this.pendingByteCount = 0;
    this.partsSent = 0;
  }

  private pushSlice(chunk: Buffer): void {
    let from = 0;
    if (this.carry !== null) from = this.completeCarry(chunk);
    const to = chunk.length - incompleteTailLength(chunk, from);
    if (to < chunk.length) this.carry = Buffer.from(chunk.subarray(to));
    if (to <= from) return;

    // The first newline is found on bytes, so a chunk without one costs no split work.
    const firstLf = chunk.indexOf(LF, from);
    if (firstLf === -1 || firstLf >= to) {
      this.appendPending(chunk.toString('utf8', from, to));
      return;
    }
    this.finishLine(chunk.toString('utf8', from, firstLf));
    const text = chunk.toString('utf8', firstLf + 1, to);
    let pos = 0;
    for (;;) {
      const lf = text.indexOf('\n', pos);
      if (lf === -1) break;
      let end = lf;
      if (end > pos && text.charCodeAt(end - 1) === CR) end--;
      const line = text.slice(pos, end);
      // UTF-8 is at most 3 bytes per UTF-16 unit, so short strings need no byte count.
      if (line.length * 3 <= this.maxLineBytes || Buffer.byteLength(line) <= this.maxLineBytes) {
        this.onLine(line, 0, false);
      } else {
        this.emitParts(line, false);
      }
      pos = lf + 1;
    }
    if (pos < text.length) this.appendPending(pos === 0 ? text : text.slice(pos));
  }

  /**
   * Decodes the carried bytes together with the continuation bytes that start `chunk`, exactly as
   * a decoder that saw both at once would, and returns where the rest of `chunk` starts.
   */
  private completeCarry(chunk: Buffer): number {
    const carry = this.carry as Buffer;
    const need = sequenceLength(carry[0]) - carry.length;
    let taken = 0;
    while (taken < need && taken < chunk.length && (chunk[taken] & 0xc0) === 0x80) taken++;
    if (taken < need && taken === chunk.length) {
      // Still incomplete: the chunk held only continuation bytes (at most 2 of them).
      this.carry = Buffer.concat([carry, chunk]);
      return chunk.length;
    }
    this.carry = null;
    this.appendPending(Buffer.concat([carry, chunk.subarray(0, taken)]).toString('utf8'));
    return taken;
  }

  /** Ends the current line with `tail` (text up to the `\n`, or the EOF remainder). */
  private finishLine(tail: string): void {
    let line = this.pending.length === 0 ? tail : this.pending + tail;
    this.pending = '';
    this.pendingByteCount = 0;
    if (line.length > 0 && line.charCodeAt(line.length - 1) === CR) line = line.slice(0, -1);
    if (this.partsSent === 0 && (line.length * 3 <= this.maxLineBytes || Buffer.byteLength(line) <= this.maxLineBytes)) {
      this.onLine(line, 0, false);
      return;
    }
    this.emitParts(line, false);
  }

  /** Adds text without a newline to the current line, delivering parts while it is too long. */
  private appendPending(text: string): void {
    this.pending = this.pending.length === 0 ? text : this.pending + text;
    this.pendingByteCount += Buffer.byteLength(text);
    // A trailing `\r` may be the first half of a CRLF: it is not counted, so a line of exactly
    // maxLineBytes followed by a CRLF split across chunks is still delivered whole.
    const cr = this.pending.charCodeAt(this.pending.length - 1) === CR ? 1 : 0;
    if (this.pendingByteCount - cr > this.maxLineBytes) {
      this.pending = this.emitParts(this.pending, true);
      this.pendingByteCount = Buffer.byteLength(this.pending);
    }
  }

  /**
   * Delivers `text` as parts of at most maxLineBytes. With `keepTail`, the last piece (at most
   * maxLineBytes + 1 bytes when it ends in `\r`) is returned instead of delivered, since more of
   * the line may follow; otherwise the last piece is delivered with `more: false`.
   */
  private emitParts(text: string, keepTail: boolean): string {
    const bytes = Buffer.from(text, 'utf8');
    const max = this.maxLineBytes;
    let start = 0;
    for (;;) {
      const left = bytes.length - start;
      const crAtEnd = keepTail && bytes[bytes.length - 1] === CR ? 1 : 0;
      if (left - crAtEnd <= max) {
        const rest = start === 0 ? text : bytes.toString('utf8', start);
        if (keepTail) return rest;
        this.onLine(rest, ++this.partsSent, false);
        this.partsSent = 0;
        return '';
      }
      let cut = start + max;
      while ((bytes[cut] & 0xc0) === 0x80) cut--;
      this.onLine(bytes.toString('utf8', start, cut), ++this.partsSent, true);
      start = cut;
    }
  }
}

/** Bytes in the UTF-8 sequence that `lead` starts, or 1 for a byte that cannot start one. */
function sequenceLength(lead: number): number {
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 1;
}

/**
 * How many bytes at the end of `buf` (not before `from`) start a character that the buffer does
 * not finish: 0 to 3. Invalid sequences count as complete, since they decode to U+FFFD anyway.
 */
function incompleteTailLength(buf: Buffer, from: number): number {
  const n = buf.length;
  for (let back = 1; back <= 3 && n - back >= from; back++) {
    const byte = buf[n - back];
    if ((byte & 0xc0) === 0x80) continue;
    return sequenceLength(byte) > back ? back : 0;
  }
  return 0;
}
