/**
 * Outgoing frames of one channel end, encoded straight into blocks that become the socket
 * writes: no Buffer per frame and no per-frame copy at flush time. Both sides use it: the
 * supervisor's response writer and `warden/child`'s request path.
 */
import { WardenError } from '../errors.js';
import { encodeBodyScratch, FRAME_HEADER_BYTES } from './frame-codec.js';
import { MAX_REQUEST_ID } from './protocol.js';

/**
 * Size of a block. A block is kept while it has room, so an idle channel holds at most one
 * (16 KiB): small against a task's pipes, large enough that a busy tick needs few.
 */
const BLOCK_BYTES = 16 * 1024;

/**
 * Invariants:
 * - `bytes` = bytes appended and not yet taken; `take()` returns exactly them, in append order.
 * - Bytes returned by `take()` are never written again: appends only go past them.
 * - A frame is appended whole or not at all (an encode error leaves the queue as it was).
 */
export class FrameQueue {
  readonly maxFrameBytes: number;
  /** Sealed runs of queued bytes, in order, before the current block's. */
  #sealed: Buffer[] = [];
  #block: Buffer | undefined;
  /** First queued byte in `#block`. */
  #start = 0;
  /** Next free byte in `#block`. */
  #pos = 0;
  #bytes = 0;
  #frames = 0;

  /** `maxFrameBytes`: largest length field (id + body) a frame may have. */
  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Frames appended and not yet taken. */
  get frames(): number {
    return this.#frames;
  }

  /**
   * Encodes and appends one frame; returns its size in bytes. Throws WardenError
   * `ERR_FRAME_TOO_LARGE` (detail `{length, maxFrameBytes}`), `ERR_BAD_REQUEST` (not encodable)
   * or `ERR_INVALID_OPTION` (id not a u32), as `encodeFrame` does; then nothing was appended.
   */
  append(id: number, body: unknown): number {
    if (!Number.isInteger(id) || id < 0 || id > MAX_REQUEST_ID) {
      throw new WardenError('ERR_INVALID_OPTION', `frame id ${String(id)} is not a u32; use an integer from 0 to ${MAX_REQUEST_ID}`);
    }
    const scratch = encodeBodyScratch(id, body);
    const bodyBytes = scratch.end - scratch.start;
    const length = bodyBytes + 4;
    if (length > this.maxFrameBytes) {
      throw new WardenError('ERR_FRAME_TOO_LARGE', `frame ${id} is ${length} bytes, over maxFrameBytes (${this.maxFrameBytes}); send less per request or raise maxFrameBytes on both sides`, { detail: { length, maxFrameBytes: this.maxFrameBytes } });
    }
    const size = FRAME_HEADER_BYTES + bodyBytes;
    const block = this.#room(size);
    const at = this.#pos;
    block.writeUInt32BE(length, at);
    block.writeUInt32BE(id, at + 4);
    scratch.copy(block, at + FRAME_HEADER_BYTES, scratch.start, scratch.end);
    this.#pos = at + size;
    this.#bytes += size;
    this.#frames++;
    return size;
  }

  /** Appends a frame encoded elsewhere (`encodeFrame`). Precondition: it is one whole frame. */
  appendEncoded(frame: Buffer): void {
    this.#seal();
    this.#sealed.push(frame);
    this.#bytes += frame.length;
    this.#frames++;
  }

  /** Everything queued, as one Buffer (no copy when it sits in one block), or undefined; empties the queue. */
  take(): Buffer | undefined {
    if (this.#bytes === 0) return undefined;
    let out: Buffer;
    if (this.#sealed.length === 0) {
      out = this.#block!.subarray(this.#start, this.#pos);
    } else {
      this.#seal();
      out = this.#sealed.length === 1 ? this.#sealed[0]! : Buffer.concat(this.#sealed, this.#bytes);
      this.#sealed = [];
    }
    this.#start = this.#pos;
    this.#bytes = 0;
    this.#frames = 0;
    // A block with little room left is let go now rather than kept by an idle channel.
    if (this.#block !== undefined && this.#block.length - this.#pos < BLOCK_BYTES / 4) this.#drop();
    return out;
  }

  /** Drops everything queued and the block. */
  clear(): void {
    this.#sealed = [];
    this.#bytes = 0;
    this.#frames = 0;
    this.#drop();
  }

  /** A block with `size` free bytes at `#pos`. */
  #room(size: number): Buffer {
    const block = this.#block;
    if (block !== undefined && block.length - this.#pos >= size) return block;
    this.#seal();
    const fresh = Buffer.allocUnsafe(Math.max(BLOCK_BYTES, size));
    this.#block = fresh;
    this.#start = 0;
    this.#pos = 0;
    return fresh;
  }

  /** Moves the current block's queued bytes to `#sealed`, so later appends may go elsewhere. */
  #seal(): void {
    if (this.#block !== undefined && this.#pos > this.#start) this.#sealed.push(this.#block.subarray(this.#start, this.#pos));
    this.#start = this.#pos;
  }

  #drop(): void {
    this.#block = undefined;
    this.#start = 0;
    this.#pos = 0;
  }
}
