import { Packr } from 'msgpackr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { decodeBody, encodeFrame, FrameDecoder, type DecodedFrame } from '../../lib/comms/frame-codec.js';
import { expectNoLeaks, resources } from '../fixtures/comms/harness.js';

const frames = (items: DecodedFrame[]) =>
  items.map((item) => ('body' in item ? { id: item.id, body: decodeBody(item.body) } : item));

function pushAll(decoder: FrameDecoder, chunks: Buffer[]): DecodedFrame[] {
  return chunks.flatMap((chunk) => decoder.push(chunk));
}

describe('frame codec', () => {
  let baseline: string[];
  beforeEach(() => { baseline = resources(); });
  afterEach(async () => { await expectNoLeaks(baseline); });

  it('lays a frame out as length | id | msgpack body, length counting id + body', () => {
    const frame = encodeFrame(7, { type: 'GetVariable', key: 'k' });
    expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
    expect(frame.readUInt32BE(4)).toBe(7);
    // Plain msgpack (no msgpackr records): a fixmap with two entries.
    expect(frame[8]).toBe(0x82);
    expect(decodeBody(frame.subarray(8))).toEqual({ type: 'GetVariable', key: 'k' });
    expect(encodeFrame(0xffff_ffff, null).readUInt32BE(4)).toBe(0xffff_ffff);
    expect(encodeFrame(1, { a: undefined })[8 + 3]).toBe(0xc0); // undefined goes out as nil
  });

  it('keeps frames encoded back to back intact (they may share an allocation)', () => {
    const a = encodeFrame(1, { type: 'A', v: 'x'.repeat(100) });
    const b = encodeFrame(2, { type: 'B', v: 'y'.repeat(100) });
    expect(frames(new FrameDecoder().push(Buffer.concat([a, b])))).toEqual([
      { id: 1, body: { type: 'A', v: 'x'.repeat(100) } },
      { id: 2, body: { type: 'B', v: 'y'.repeat(100) } },
    ]);
  });

  it('refuses to encode over maxFrameBytes with ERR_FRAME_TOO_LARGE, and bad ids with ERR_INVALID_OPTION', () => {
    const body = { blob: Buffer.alloc(2000) };
    const err = (() => { try { encodeFrame(3, body, 1000); } catch (e) { return e; } })() as WardenError;
    expect(err).toBeInstanceOf(WardenError);
    expect(err.code).toBe('ERR_FRAME_TOO_LARGE');
    expect(err.detail).toMatchObject({ maxFrameBytes: 1000 });
    expect(encodeFrame(3, body, 4 + 2000 + 10).length).toBeGreaterThan(2000); // just fits
    expect(() => encodeFrame(-1, {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => encodeFrame(2 ** 32, {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });

  it('reassembles a frame split at every possible point, headers included', () => {
    const frame = Buffer.concat([encodeFrame(11, { type: 'X', n: 1 }), encodeFrame(12, { type: 'Y', s: 'héllo' })]);
    for (let cut = 1; cut < frame.length; cut++) {
      const decoder = new FrameDecoder();
      const out = pushAll(decoder, [frame.subarray(0, cut), frame.subarray(cut)]);
      expect(frames(out)).toEqual([{ id: 11, body: { type: 'X', n: 1 } }, { id: 12, body: { type: 'Y', s: 'héllo' } }]);
      expect(decoder.midFrame).toBe(false);
    }
  });

  it('decodes a stream fed one byte at a time, holding at most one partial frame', () => {
    const sent = Array.from({ length: 20 }, (_, i) => ({ type: 'T', i, pad: 'p'.repeat(i * 7) }));
    const stream = Buffer.concat(sent.map((body, i) => encodeFrame(i + 1, body)));
    const decoder = new FrameDecoder();
    const out: DecodedFrame[] = [];
    let largestHeld = 0;
    for (let i = 0; i < stream.length; i++) {
      out.push(...decoder.push(stream.subarray(i, i + 1)));
      largestHeld = Math.max(largestHeld, decoder.bufferedBytes);
    }
    expect(frames(out)).toEqual(sent.map((body, i) => ({ id: i + 1, body })));
    // The largest frame is 8 + 4 + its body; nothing beyond one frame was ever held.
    expect(largestHeld).toBeLessThanOrEqual(Math.max(...sent.map((body, i) => encodeFrame(i + 1, body).length)));
  });

  it('returns many frames from one chunk without copying their bodies', () => {
    const stream = Buffer.concat(Array.from({ length: 1000 }, (_, i) => encodeFrame(i + 1, { type: 'E', i })));
    const out = new FrameDecoder().push(stream);
    expect(out).toHaveLength(1000);
    expect(frames(out).every((f, i) => 'body' in f && f.id === i + 1 && (f.body as { i: number }).i === i)).toBe(true);
    const first = out[0] as { body: Buffer };
    expect(first.body.buffer).toBe(stream.buffer); // a view into the chunk, not a copy
  });

  it('hands back the raw body of a frame that is not msgpack, with its id (decoding is the caller\'s step)', () => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(4 + 3, 0);
    head.writeUInt32BE(99, 4);
    const out = new FrameDecoder().push(Buffer.concat([head, Buffer.from([0x92, 0xa1, 0x41])]));
    expect(out).toEqual([{ id: 99, body: Buffer.from([0x92, 0xa1, 0x41]) }]);
    expect(() => decodeBody((out[0] as { body: Buffer }).body)).toThrow();
  });

  it('reports a header announcing 4 GiB once, with its id, as soon as the header is in, and then ignores all input', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
    const good = encodeFrame(1, { type: 'ok' });
    const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 42]);
    expect(frames(decoder.push(Buffer.concat([good, huge.subarray(0, 5)])))).toEqual([{ id: 1, body: { type: 'ok' } }]);
    expect(decoder.push(huge.subarray(5))).toEqual([{ tooLarge: true, id: 42, length: 0xffff_ffff }]);
    expect(decoder.stopped).toBe(true);
    expect(decoder.push(Buffer.alloc(1024 * 1024, 0xff))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('reports a length under 4 (no room for an id) as malformed once its 4 bytes are in', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(Buffer.from([0, 0]))).toEqual([]);
    expect(decoder.push(Buffer.from([0, 2]))).toEqual([{ malformed: true, length: 2 }]);
    expect(decoder.push(encodeFrame(1, {}))).toEqual([]);
  });

  it('accepts an empty body (length exactly 4) and a body of exactly maxFrameBytes - 4', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 64 });
    const empty = Buffer.from([0, 0, 0, 4, 0, 0, 0, 5]);
    const full = Buffer.concat([Buffer.from([0, 0, 0, 64, 0, 0, 0, 6]), Buffer.alloc(60, 0xc0)]);
    const out = decoder.push(Buffer.concat([empty, full]));
    expect(out).toEqual([{ id: 5, body: Buffer.alloc(0) }, { id: 6, body: Buffer.alloc(60, 0xc0) }]);
    expect(() => new FrameDecoder({ maxFrameBytes: 3 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });

  it('reads what a plain msgpack encoder writes, and writes what a plain decoder reads', () => {
    const other = new Packr({ useRecords: false, variableMapSize: true });
    const body = { type: 'PutVariable', key: 'k', value: [1, -2, 3.5, true, null, 'ü', { nested: 2 ** 40 }] };
    const raw = other.pack(body);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(raw.length + 4, 0);
    head.writeUInt32BE(3, 4);
    expect(frames(new FrameDecoder().push(Buffer.concat([head, raw])))).toEqual([{ id: 3, body }]);
    expect(other.unpack(encodeFrame(3, body).subarray(8))).toEqual(body);
  });
});
