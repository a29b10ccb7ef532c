/**
 * The pieces behind the channel's speed: FrameQueue (frames encoded straight into write blocks),
 * FrameDecoder.visit (frames read in place, stoppable mid-chunk), decodeBody on a range, and the
 * child's PendingTable. Pure: no processes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PendingTable } from '../../lib/child/pending-table.js';
import { decodeBody, encodeFrame, FrameDecoder, type FrameVisitor } from '../../lib/comms/frame-codec.js';
import { FrameQueue } from '../../lib/comms/frame-queue.js';
import { expectNoLeaks, resources } from '../fixtures/comms/harness.js';

/** Decodes every frame of a byte stream. */
function decodeAll(bytes: Buffer): Array<{ id: number; body: unknown }> {
  return new FrameDecoder().push(bytes).map((f) => ('body' in f ? { id: f.id, body: decodeBody(f.body) } : { id: -1, body: f }));
}

describe('FrameQueue', () => {
  let baseline: string[];
  beforeEach(() => { baseline = resources(); });
  afterEach(async () => { await expectNoLeaks(baseline); });

  it('takes exactly the frames appended, in order, byte for byte what encodeFrame makes', () => {
    const q = new FrameQueue(16 * 1024 * 1024);
    const bodies = Array.from({ length: 500 }, (_, i) => ({ ok: 'v'.repeat(i % 90), i }));
    let size = 0;
    bodies.forEach((body, i) => (size += q.append(i + 1, body)));
    expect(q.bytes).toBe(size);
    expect(q.frames).toBe(500);
    const out = q.take()!;
    expect(out).toEqual(Buffer.concat(bodies.map((body, i) => encodeFrame(i + 1, body))));
    expect([q.bytes, q.frames, q.take()]).toEqual([0, 0, undefined]);
  });

  it('never writes again into bytes it handed out, across takes and blocks', () => {
    const q = new FrameQueue(16 * 1024 * 1024);
    const taken: Array<{ buf: Buffer; copy: Buffer }> = [];
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < (round % 7) + 1; i++) q.append(round * 10 + i + 1, { type: 'T', pad: 'x'.repeat((round * 37) % 200) });
      if (round % 50 === 0) q.appendEncoded(encodeFrame(0, { type: 'StartupDetails', round }));
      const buf = q.take()!;
      taken.push({ buf, copy: Buffer.from(buf) });
    }
    for (const { buf, copy } of taken) expect(buf.equals(copy)).toBe(true);
    const all = decodeAll(Buffer.concat(taken.map((t) => t.buf)));
    let appended = 0;
    for (let round = 0; round < 300; round++) appended += (round % 7) + 1;
    expect(all).toHaveLength(appended + 6); // every frame whole, none torn or lost
    expect(all.filter((f) => f.id === 0)).toHaveLength(6);
    expect(all.every((f) => f.id !== -1)).toBe(true);
  });

  it('keeps frames larger than a block whole, and an encoded frame in its place among the others', () => {
    const q = new FrameQueue(16 * 1024 * 1024);
    q.append(1, { a: 1 });
    q.appendEncoded(encodeFrame(2, { b: 2 }));
    q.append(3, { big: Buffer.alloc(100_000, 7) });
    q.append(4, { c: 3 });
    expect(decodeAll(q.take()!)).toEqual([
      { id: 1, body: { a: 1 } }, { id: 2, body: { b: 2 } }, { id: 3, body: { big: Buffer.alloc(100_000, 7) } }, { id: 4, body: { c: 3 } },
    ]);
  });

  it('refuses a frame over maxFrameBytes, a body msgpack cannot carry, or a bad id, and then holds nothing of it', () => {
    const q = new FrameQueue(1024);
    q.append(1, { fine: true });
    const before = q.bytes;
    expect(() => q.append(2, { blob: Buffer.alloc(2000) })).toThrow(expect.objectContaining({ code: 'ERR_FRAME_TOO_LARGE', detail: { length: expect.any(Number), maxFrameBytes: 1024 } }));
    expect(() => q.append(3, { f: () => 1, s: Symbol('s') })).toThrow(expect.objectContaining({ code: 'ERR_BAD_REQUEST' }));
    expect(() => q.append(-1, {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(q.bytes).toBe(before);
    expect(decodeAll(q.take()!)).toEqual([{ id: 1, body: { fine: true } }]);
  });
});

describe('FrameDecoder.visit', () => {
  it('reads frames in place, stops where the visitor says, and goes on from there', () => {
    const stream = Buffer.concat(Array.from({ length: 10 }, (_, i) => encodeFrame(i + 1, { i })));
    const decoder = new FrameDecoder();
    const seen: unknown[] = [];
    const visitor: FrameVisitor = {
      frame: (id, buf, start, end) => {
        expect(buf).toBe(stream); // in place: no copy, no view
        seen.push({ id, body: decodeBody(buf, start, end) });
        return id !== 4;
      },
      stop: () => { throw new Error('not expected'); },
    };
    const at = decoder.visit(stream, visitor);
    expect(seen).toHaveLength(4);
    expect(at).toBe(Buffer.concat(Array.from({ length: 4 }, (_, i) => encodeFrame(i + 1, { i }))).length);
    expect(decoder.visit(stream, visitor, at)).toBe(stream.length);
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, body: { i } })));
  });

  it('decodeBody reads a range and refuses an empty or trailing-bytes body', () => {
    const frame = encodeFrame(1, { type: 'X' });
    expect(decodeBody(frame, 8, frame.length)).toEqual({ type: 'X' });
    expect(() => decodeBody(frame, 8, 8)).toThrow(/empty/);
    expect(() => decodeBody(Buffer.concat([frame.subarray(8), Buffer.from([0xc0])]))).toThrow();
  });
});

describe('PendingTable', () => {
  it('finds and takes entries in any order, window or not', () => {
    const t = new PendingTable<string>();
    for (let id = 1; id <= 100; id++) t.set(id, `r${id}`);
    t.set(5000, 'far'); // not next in line: goes to the map
    expect(t.size).toBe(101);
    expect([t.has(50), t.has(5000), t.has(101)]).toEqual([true, true, false]);
    const order = [100, 1, 50, 5000, 2, 99, 3];
    expect(order.map((id) => t.take(id))).toEqual(['r100', 'r1', 'r50', 'far', 'r2', 'r99', 'r3']);
    expect(t.take(1)).toBeUndefined();
    expect(t.size).toBe(94);
    expect(t.drain().sort()).toEqual(Array.from({ length: 100 }, (_, i) => `r${i + 1}`).filter((r) => !['r100', 'r1', 'r50', 'r2', 'r99', 'r3'].includes(r)).sort());
    expect(t.size).toBe(0);
  });

  it('does not grow with the requests sent after one that never gets an answer', () => {
    const t = new PendingTable<number>();
    t.set(1, 1); // never answered
    let widest = 0;
    for (let id = 2; id < 200_000; id++) {
      t.set(id, id);
      widest = Math.max(widest, t.windowSlots);
      expect(t.take(id)).toBe(id);
    }
    expect(widest).toBeLessThan(4 * 2 + 1024);
    expect(t.size).toBe(1);
    expect(t.take(1)).toBe(1);
  });
});
