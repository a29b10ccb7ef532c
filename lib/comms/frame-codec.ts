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
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
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
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number' });

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

/** Decodes one msgpack body. Throws (a plain Error from msgpackr) when it is not exactly one msgpack value. */
export function decodeBody(body: Buffer): unknown {
  return unpackr.unpack(body);
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

  /** Feeds one chunk; returns the frames it completed, in order (often none). */
  push(chunk: Buffer): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    if (this.#stopped) return out;
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.#body !== null) {
        const body = this.#body;
        const take = Math.min(body.length - this.#bodyFill, end - pos);
        chunk.copy(body, this.#bodyFill, pos, pos + take);
        this.#bodyFill += take;
        pos += take;
        if (this.#bodyFill === body.length) {
          out.push({ id: this.#bodyId, body });
          this.#body = null;
          this.#bodyFill = 0;
        }
        continue;
      }
      let length: number;
      let id: number;
      if (this.#headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
        length = chunk.readUInt32BE(pos);
        if (length < MIN_FRAME_LENGTH) return this.#stop(out, { malformed: true, length });
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
          if (announced < MIN_FRAME_LENGTH) return this.#stop(out, { malformed: true, length: announced });
        }
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        this.#headerFill = 0;
        length = this.#header.readUInt32BE(0);
        id = this.#header.readUInt32BE(4);
      }
      if (length > this.maxFrameBytes) return this.#stop(out, { tooLarge: true, id, length });
      const bodyBytes = length - 4;
      if (end - pos >= bodyBytes) {
        out.push({ id, body: chunk.subarray(pos, pos + bodyBytes) });
        pos += bodyBytes;
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
    return out;
  }

  #stop(out: DecodedFrame[], last: FrameTooLarge | FrameMalformed): DecodedFrame[] {
    this.#stopped = true;
    this.#headerFill = 0;
    this.#body = null;
    out.push(last);
    return out;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
