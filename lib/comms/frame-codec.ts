/**
 * Frame layout of the comms channel, both directions:
 *
 *     u32 BE length | u32 BE request id | msgpack body
 *
 * `length` counts the id and the body (so it is at least 4) and is what `maxFrameBytes` bounds.
 * The id sits outside the body so that a request whose body does not decode can still be answered.
 * Pure: no I/O, no timers. Bodies use plain msgpack (no msgpackr records), so any language's msgpack
 * library reads them.
 */
import { Packr, RESERVE_START_SPACE, RESET_BUFFER_MODE, REUSE_BUFFER_MODE, Unpackr } from 'msgpackr';
import { WardenError } from '../errors.js';
import { DEFAULT_MAX_FRAME_BYTES, MAX_REQUEST_ID } from './protocol.js';

/** Bytes before the body: length and id. */
export const FRAME_HEADER_BYTES = 8;
/** Smallest legal length field: an id and an empty body. */
export const MIN_FRAME_LENGTH = 4;

const packr = new Packr({
  useRecords: false,
  // Fixmaps for small maps and map32 for huge ones: the "preferred" encoding minimal readers expect.
  variableMapSize: true,
  encodeUndefinedAsNil: true,
});
// 'auto': 64-bit ints that fit a double come back as numbers, bigger ones as bigint.
// copyBuffers: a bin value is a Buffer of its own (msgpackr copies with the species-preserving
// slice), never a view of the chunk it came in: chunks may be a reused read buffer, and a view
// would keep a whole 64 KiB chunk alive for a few bytes.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number', copyBuffers: true });

/**
 * Encodes one frame. The result is ready to write; it may share an allocation with other frames
 * (never overlapping), so do not write into it.
 *
 * Throws WardenError `ERR_FRAME_TOO_LARGE` when the length field (4 + body bytes) would exceed
 * `maxFrameBytes` (default 16 MiB; detail `{length, maxFrameBytes}`), `ERR_BAD_REQUEST` when `body`
 * cannot be encoded as msgpack, and `ERR_INVALID_OPTION` for an id outside 0..2^32-1.
 */
export function encodeFrame(id: number, body: unknown, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Buffer {
  if (!Number.isInteger(id) || id < 0 || id > MAX_REQUEST_ID) {
    throw new WardenError('ERR_INVALID_OPTION', `frame id ${String(id)} is not a u32; use an integer from 0 to ${MAX_REQUEST_ID}`);
  }
  let frame: Buffer;
  try {
    // The reserved start space is where the header goes: one allocation, no copy.
    frame = packr.pack(body, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
  } catch (cause) {
    throw new WardenError('ERR_BAD_REQUEST', `frame ${id}: the body cannot be encoded as msgpack (${errorText(cause)}); send plain maps, arrays, strings, numbers, booleans, null and bytes`, { cause });
  }
  const length = frame.length - 4;
  if (length > maxFrameBytes) {
    throw new WardenError('ERR_FRAME_TOO_LARGE', `frame ${id} is ${length} bytes, over maxFrameBytes (${maxFrameBytes}); send less per request or raise maxFrameBytes on both sides`, { detail: { length, maxFrameBytes } });
  }
  frame.writeUInt32BE(length, 0);
  frame.writeUInt32BE(id, 4);
  return frame;
}

/**
 * Encodes `body` as msgpack into the packer's scratch space and returns where it sits:
 * `bytes[start, end)`, valid only until the next encode (copy it out at once). No allocation per
 * call. Throws WardenError `ERR_BAD_REQUEST` when `body` cannot be encoded.
 * Precondition: `id` is the frame's id (for the message only).
 */
export function encodeBodyScratch(id: number, body: unknown): Buffer & { start: number; end: number } {
  try {
    return packr.pack(body, REUSE_BUFFER_MODE | RESET_BUFFER_MODE) as Buffer & { start: number; end: number };
  } catch (cause) {
    throw new WardenError('ERR_BAD_REQUEST', `frame ${id}: the body cannot be encoded as msgpack (${errorText(cause)}); send plain maps, arrays, strings, numbers, booleans, null and bytes`, { cause });
  }
}

/** The range object handed to msgpackr, reused: decoding a body allocates no view of it. */
const range = { start: 0, end: 0 };
/** Chunks up to this size are decoded from a copy in `scratch` (see decodeBody). */
const SCRATCH_BYTES = 4096;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

/**
 * Decodes one msgpack body: `buf[start, end)` (default: all of `buf`). Throws (a plain Error from
 * msgpackr, or for an empty body) when it is not exactly one msgpack value. Values never view
 * `buf` (bin values are copies).
 */
export function decodeBody(buf: Buffer, start = 0, end: number = buf.length): unknown {
  if (end <= start) throw new Error('the body is empty: a frame must carry one msgpack value');
  let src = buf;
  if (buf.length <= SCRATCH_BYTES && buf !== scratch) {
    // msgpackr makes (and caches on the source) a DataView per source buffer: for a small chunk,
    // one request or answer read at a time, copying it into a buffer that has one is cheaper.
    buf.copy(scratch, 0, start, end);
    src = scratch;
    end -= start;
    start = 0;
  }
  range.start = start;
  range.end = end;
  return unpackr.unpack(src, range);
}

/** A complete frame. `body` may share memory with the chunk it came in: copy it to keep it past the call. */
export interface Frame {
  readonly id: number;
  readonly body: Buffer;
}
/** A header announced more than `maxFrameBytes`: reported once, then the decoder stops. */
export interface FrameTooLarge {
  readonly tooLarge: true;
  readonly id: number;
  readonly length: number;
}
/** A header announced less than 4 bytes, so there is not even an id: reported once, then the decoder stops. */
export interface FrameMalformed {
  readonly malformed: true;
  readonly length: number;
}
export type DecodedFrame = Frame | FrameTooLarge | FrameMalformed;

/**
 * What `FrameDecoder.visit` calls. Frames are not copied: a body is `buf[start, end)`, valid only
 * during the call (decode it with `decodeBody(buf, start, end)` there, or copy it).
 */
export interface FrameVisitor {
  /** One complete frame. Return false to stop right after it (the rest of the chunk is left unread). */
  frame(id: number, buf: Buffer, start: number, end: number): boolean;
  /** A too-large or malformed header: the last thing the decoder reports. */
  stop(item: FrameTooLarge | FrameMalformed): void;
}

/**
 * Turns a byte stream cut into arbitrary chunks back into frames.
 *
 * Invariants:
 * - Holds at most one partial frame: an 8-byte header and one body buffer of exactly the announced
 *   size, which is at most `maxFrameBytes - 4`. Frames complete within a chunk are not copied.
 * - A header announcing more than `maxFrameBytes` is reported as `{tooLarge, id, length}` as soon as
 *   its 8 bytes are in; one announcing less than 4 as `{malformed, length}` as soon as its first 4
 *   are in. Either is the last item ever returned: the decoder then ignores all input (`stopped`).
 * - Frames come out in stream order, each exactly once.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #body: Buffer | null = null;
  #bodyFill = 0;
  #bodyId = 0;
  #stopped = false;

  /** `maxFrameBytes`: largest accepted length field (id + body). Default 16 MiB; at least 4. */
  constructor(options: { maxFrameBytes?: number } = {}) {
    const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isInteger(max) || max < MIN_FRAME_LENGTH || max > MAX_REQUEST_ID) {
      throw new WardenError('ERR_INVALID_OPTION', `maxFrameBytes must be an integer from ${MIN_FRAME_LENGTH} to ${MAX_REQUEST_ID}, got ${String(max)}`);
    }
    this.maxFrameBytes = max;
  }

  /** True once a too-large or malformed header was reported; later input is ignored. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** True while part of a frame is held: an end of stream now would cut a frame short. */
  get midFrame(): boolean {
    return this.#headerFill > 0 || this.#body !== null;
  }

  /** Bytes of the partial frame held (header bytes plus body bytes received so far). */
  get bufferedBytes(): number {
    return this.#headerFill + (this.#body === null ? 0 : this.#bodyFill);
  }

  /** Feeds one chunk; returns the frames it completed, in order (often none). Bodies are views of `chunk`. */
  push(chunk: Buffer): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    this.visit(chunk, {
      frame: (id, buf, start, end) => out.push({ id, body: buf.subarray(start, end) }) > 0,
      stop: (item) => void out.push(item),
    });
    return out;
  }

  /**
   * Feeds `chunk[from, end)`: calls `visitor.frame` for each frame completed, in stream order,
   * until it returns false. Returns the offset just past the last byte consumed: `end` unless the
   * visitor stopped early, in which case the caller feeds the rest (`from` = the returned offset)
   * later, before any newer chunk. After `visitor.stop` the decoder is stopped and every chunk
   * counts as consumed. Neither the decoder (a partial frame is copied) nor `decodeBody`'s values
   * keep a reference to `chunk`, so the caller may refill it once this returns.
   */
  visit(chunk: Buffer, visitor: FrameVisitor, from = 0, end: number = chunk.length): number {
    if (this.#stopped) return end;
    let pos = from;
    while (pos < end) {
      if (this.#body !== null) {
        const body = this.#body;
        const take = Math.min(body.length - this.#bodyFill, end - pos);
        chunk.copy(body, this.#bodyFill, pos, pos + take);
        this.#bodyFill += take;
        pos += take;
        if (this.#bodyFill === body.length) {
          this.#body = null;
          this.#bodyFill = 0;
          if (!visitor.frame(this.#bodyId, body, 0, body.length)) return pos;
        }
        continue;
      }
      let length: number;
      let id: number;
      if (this.#headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
        length = chunk.readUInt32BE(pos);
        if (length < MIN_FRAME_LENGTH) return this.#stop(visitor, end, { malformed: true, length });
        id = chunk.readUInt32BE(pos + 4);
        pos += FRAME_HEADER_BYTES;
      } else {
        const had = this.#headerFill;
        const take = Math.min(FRAME_HEADER_BYTES - had, end - pos);
        chunk.copy(this.#header, had, pos, pos + take);
        this.#headerFill += take;
        pos += take;
        if (had < 4 && this.#headerFill >= 4) {
          const announced = this.#header.readUInt32BE(0);
          if (announced < MIN_FRAME_LENGTH) return this.#stop(visitor, end, { malformed: true, length: announced });
        }
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        this.#headerFill = 0;
        length = this.#header.readUInt32BE(0);
        id = this.#header.readUInt32BE(4);
      }
      if (length > this.maxFrameBytes) return this.#stop(visitor, end, { tooLarge: true, id, length });
      const bodyBytes = length - 4;
      if (end - pos >= bodyBytes) {
        const bodyStart = pos;
        pos += bodyBytes;
        if (!visitor.frame(id, chunk, bodyStart, pos)) return pos;
      } else {
        // Exactly the announced size, which the check above bounds: never grows, never re-copies.
        const body = Buffer.allocUnsafe(bodyBytes);
        chunk.copy(body, 0, pos, end);
        this.#body = body;
        this.#bodyFill = end - pos;
        this.#bodyId = id;
        pos = end;
      }
    }
    return end;
  }

  #stop(visitor: FrameVisitor, end: number, last: FrameTooLarge | FrameMalformed): number {
    this.#stopped = true;
    this.#headerFill = 0;
    this.#body = null;
    visitor.stop(last);
    return end;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
