import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { CommsChannel, type CommsChannelOptions } from '../../lib/comms/channel.js';
import { encodeFrame } from '../../lib/comms/frame-codec.js';
import { HandlerRegistry } from '../../lib/comms/handlers.js';
import {
  attachChannel, expectNoLeaks, finish, FrameCollector, resources, spawnPeer, type Attached, type Peer,
} from '../fixtures/comms/harness.js';

/** A relay child: what the spec writes to its stdin reaches the channel on fd 4; responses come out on stdout. */
type RelayOptions = Partial<Omit<CommsChannelOptions, 'io' | 'log' | 'handlers' | 'context'>> & { feed?: boolean };
function relay<C>(handlers: HandlerRegistry<any, C>, options: RelayOptions = {}) { // eslint-disable-line @typescript-eslint/no-explicit-any
  const peer = spawnPeer('relay.mjs', [], {}, true);
  const out = new FrameCollector(peer.child.stdout!);
  const attached = attachChannel<C>(peer.comms, { taskId: 't1', handlers, ...options });
  return { peer, out, attached, channel: attached.channel };
}

function rawFrame(id: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length + 4, 0);
  head.writeUInt32BE(id, 4);
  return Buffer.concat([head, body]);
}

function basicHandlers() {
  return new HandlerRegistry()
    .handle('Echo', (body) => ({ echoed: body['value'] ?? null }))
    .handle('Add', async (body) => (body['a'] as number) + (body['b'] as number));
}

describe('CommsChannel against a real child on fd 4', () => {
  let baseline: string[];
  let cleanup: { peer: Peer; attached?: Attached<any> }[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  beforeEach(() => {
    baseline = resources();
    cleanup = [];
  });
  afterEach(async () => {
    for (const { peer, attached } of cleanup) await finish(peer, attached);
    await expectNoLeaks(baseline);
  });

  it('answers requests split across headers, fed one byte at a time, and many per chunk', async () => {
    const { peer, out, attached, channel } = relay(basicHandlers(), { feed: false });
    cleanup.push({ peer, attached });
    const stream = Buffer.concat(Array.from({ length: 30 }, (_, i) => encodeFrame(i + 1, { type: 'Add', a: i, b: 1000 })));
    channel.onData(stream.subarray(0, 3)); // a header cut in two
    channel.onData(stream.subarray(3, 13)); // rest of the header and part of the body
    for (let i = 13; i < 200; i++) channel.onData(stream.subarray(i, i + 1)); // one byte at a time
    channel.onData(stream.subarray(200)); // the remaining frames in one chunk
    await out.count(30);
    expect(out.frames.map((f) => f.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (const frame of out.frames) expect(frame.body).toEqual({ ok: frame.id - 1 + 1000 });
    expect(channel.stats).toMatchObject({ requests: 30, responses: 30, errors: {}, bytesIn: stream.length });
  });

  it('closes the channel on garbage bytes, logs why, and never throws', async () => {
    const text = relay(basicHandlers());
    const zeros = relay(basicHandlers());
    cleanup.push(text, zeros);
    // Text: its first 4 bytes read as a length of ~1.7 GB.
    text.peer.child.stdin!.write('hello, this is not a frame\n');
    // A length of 2 leaves no room for an id.
    zeros.peer.child.stdin!.write(Buffer.from([0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef]));
    await text.out.until(() => text.out.ended);
    await zeros.out.until(() => zeros.out.ended);
    expect(text.channel.endReason).toBe('frame-too-large');
    expect(text.attached.logs.some((l) => l.level === 'error' && l.event === 'comms.frame-too-large')).toBe(true);
    expect(zeros.channel.endReason).toBe('malformed-frame');
    expect(zeros.attached.closeReason).toBe('malformed-frame');
    expect(zeros.attached.logs.find((l) => l.event === 'comms.malformed-frame')?.fields['reason']).toMatch(/does not speak warden framing/);
    expect(zeros.out.frames).toEqual([]); // no id to answer
    expect(text.attached.writesAfterEnd + zeros.attached.writesAfterEnd).toBe(0);
  });

  it('answers a header claiming 4 GiB with ERR_FRAME_TOO_LARGE for its id, then closes without buffering', async () => {
    const { peer, out, attached, channel } = relay(basicHandlers(), { maxFrameBytes: 1024 * 1024 });
    cleanup.push({ peer, attached });
    peer.child.stdin!.write(Buffer.concat([encodeFrame(1, { type: 'Echo', value: 'before' }), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 42])]));
    // The start of the "4 GiB" body. Kept under the socket buffer: a child still writing when the
    // channel closes gets EPIPE, and Node's net.Socket then drops the responses it had not read.
    peer.child.stdin!.write(Buffer.alloc(16 * 1024, 0x61));
    await out.until(() => out.ended);
    expect(out.byId(1)).toEqual({ ok: { echoed: 'before' } });
    expect(out.byId(42)).toEqual({ error: { code: 'ERR_FRAME_TOO_LARGE', message: expect.stringMatching(/4294967295 bytes, over maxFrameBytes \(1048576\)/), detail: { length: 0xffff_ffff, maxFrameBytes: 1024 * 1024 } } });
    expect(channel.endReason).toBe('frame-too-large');
    expect(attached.closeReason).toBe('frame-too-large');
    expect(attached.logs.find((l) => l.event === 'comms.frame-too-large')?.fields).toMatchObject({ requestId: 42, action: expect.stringMatching(/goes on without comms/) });
    expect(channel.stats.requests).toBe(2);
    expect(channel.stats.errors).toEqual({ ERR_FRAME_TOO_LARGE: 1 });
    expect(attached.writesAfterEnd).toBe(0);
  });

  it('answers a body that is not msgpack (or not a request) with ERR_BAD_REQUEST for its id, and keeps serving', async () => {
    const { peer, out, attached, channel } = relay(basicHandlers());
    cleanup.push({ peer, attached });
    peer.child.stdin!.write(Buffer.concat([
      rawFrame(5, Buffer.from([0x92, 0xa1])), // truncated array
      rawFrame(6, Buffer.from([0xc0, 0xc0])), // two values
      rawFrame(7, Buffer.from([0x93, 1, 2, 3])), // an array, not a map
      rawFrame(8, encodeFrame(0, { type: 42 }).subarray(8)), // type is not a string
      rawFrame(9, Buffer.alloc(0)), // empty body
      encodeFrame(0, { type: 'Echo' }), // id 0 is the startup frame's
      encodeFrame(10, { type: 'Echo', value: 'still here' }),
    ]));
    await out.count(7);
    for (const id of [5, 6, 7, 8, 9, 0]) expect(out.byId(id)).toEqual({ error: { code: 'ERR_BAD_REQUEST', message: expect.any(String) } });
    expect(out.byId(5).error.message).toMatch(/not valid msgpack/);
    expect(out.byId(7).error.message).toMatch(/got an array/);
    expect(out.byId(8).error.message).toMatch(/"type" is a number/);
    expect(out.byId(10)).toEqual({ ok: { echoed: 'still here' } });
    expect(channel.stats.errors).toEqual({ ERR_BAD_REQUEST: 6 });
  });

  it('answers 10,000 requests sent at once: maxInflightRequests handled, the excess ERR_BUSY at once, none dropped', async () => {
    let release!: () => void;
    const gate = new Promise<void>((done) => { release = done; });
    const handlers = new HandlerRegistry().handle('Slow', async (body) => {
      await gate;
      return body['n'];
    });
    const { peer, out, attached, channel } = relay(handlers);
    cleanup.push({ peer, attached });
    const total = 10_000;
    peer.child.stdin!.write(Buffer.concat(Array.from({ length: total }, (_, i) => encodeFrame(i + 1, { type: 'Slow', n: i + 1 }))));
    await out.count(total - 64);
    expect(out.frames.every((f) => f.body.error?.code === 'ERR_BUSY')).toBe(true);
    expect(channel.inflightRequests).toBe(64);
    release();
    await out.count(total);
    const ids = new Set(out.frames.map((f) => f.id));
    expect(ids.size).toBe(total);
    const ok = out.frames.filter((f) => 'ok' in f.body);
    expect(ok).toHaveLength(64);
    for (const f of ok) expect(f.body.ok).toBe(f.id);
    expect(channel.stats).toMatchObject({ requests: total, responses: total, errors: { ERR_BUSY: total - 64 } });
  });

  it('cancels in-flight handlers when the child exits, and writes nothing after', async () => {
    const signals: AbortSignal[] = [];
    let started!: () => void;
    const allStarted = new Promise<void>((done) => { started = done; });
    const handlers = new HandlerRegistry().handle('Hang', (body, ctx) => new Promise((resolve) => {
      signals.push(ctx.signal);
      if (signals.length === 10) started();
      ctx.signal.addEventListener('abort', () => resolve(`late answer to ${String(body['n'])}`));
    }));
    const peer = spawnPeer('send-and-exit.mjs', ['10', 'Hang']);
    const attached = attachChannel(peer.comms, { taskId: 't-exit', handlers });
    cleanup.push({ peer, attached });
    await allStarted;
    await attached.socketClosed;
    expect(await peer.closed).toBe(0);
    expect(attached.channel.endReason).toBe('eof');
    expect(signals.every((s) => s.aborted && (s.reason as WardenError).code === 'ERR_CHANNEL_CLOSED')).toBe(true);
    await Promise.resolve(); // let the handlers' late answers settle
    expect(attached.writesAfterEnd).toBe(0);
    expect(attached.channel.stats.responses).toBe(0);
    expect(attached.closeReason).toBeUndefined(); // the owner saw the end; the channel does not ask again
  });

  it('bounds memory for a child that never reads its responses, and keeps serving another child', async () => {
    const maxQueuedWriteBytes = 1024 * 1024;
    const size = 64 * 1024;
    const handlers = new HandlerRegistry().handle('Echo', (body) => 'x'.repeat(body['size'] as number));
    const stuck = spawnPeer('flood.mjs', ['2000', 'Echo', String(size)]);
    const stuckAttached = attachChannel(stuck.comms, { taskId: 't-stuck', handlers, maxQueuedWriteBytes });
    cleanup.push({ peer: stuck, attached: stuckAttached });
    await stuckAttached.paused;
    const other = relay(basicHandlers());
    cleanup.push(other);
    other.peer.child.stdin!.write(encodeFrame(1, { type: 'Echo', value: 'served' }));
    await other.out.count(1);
    expect(other.out.byId(1)).toEqual({ ok: { echoed: 'served' } });
    const stats = stuckAttached.channel.stats;
    expect(stuckAttached.channel.readingPaused).toBe(true);
    // Over the bound by at most one response (its handler ran synchronously, in the chunk that crossed it).
    expect(stats.maxQueuedBytes).toBeLessThanOrEqual(maxQueuedWriteBytes + size + 64);
    expect(stats.maxQueuedBytes).toBeGreaterThan(maxQueuedWriteBytes);
    expect(stats.responses).toBeLessThan(2000);
    expect(stuckAttached.pauses).toBe(1);
  });

  it('answers a handler that never resolves with ERR_HANDLER_TIMEOUT and aborts its signal', async () => {
    let seen: AbortSignal | undefined;
    const handlers = basicHandlers().handle('Never', (_body, ctx) => {
      seen = ctx.signal;
      return new Promise(() => {});
    });
    const { peer, out, attached, channel } = relay(handlers, { handlerTimeoutMs: 100 });
    cleanup.push({ peer, attached });
    peer.child.stdin!.write(Buffer.concat([encodeFrame(1, { type: 'Never' }), encodeFrame(2, { type: 'Echo', value: 'fast' })]));
    await out.count(2);
    expect(out.frames[0]).toEqual({ id: 2, body: { ok: { echoed: 'fast' } } }); // responses go out in any order
    expect(out.byId(1)).toEqual({ error: { code: 'ERR_HANDLER_TIMEOUT', message: expect.stringMatching(/Never handler did not answer request 1 within handlerTimeoutMs \(100\)/), detail: { handlerTimeoutMs: 100 } } });
    expect(seen?.aborted).toBe(true);
    expect((seen?.reason as WardenError).code).toBe('ERR_HANDLER_TIMEOUT');
    expect(channel.inflightRequests).toBe(0);
    expect(attached.logs.some((l) => l.event === 'comms.handler-timeout')).toBe(true);
  });

  it('answers an unknown type with ERR_UNKNOWN_REQUEST naming the known types', async () => {
    const { peer, out, attached } = relay(basicHandlers());
    cleanup.push({ peer, attached });
    peer.child.stdin!.write(encodeFrame(3, { type: 'GetConnection', id: 'db' }));
    await out.count(1);
    expect(out.byId(3)).toEqual({ error: { code: 'ERR_UNKNOWN_REQUEST', message: 'no handler for request type "GetConnection"; known types: Echo, Add' } });
  });

  it('answers a throwing handler with ERR_HANDLER and its message, and passes WardenError codes through', async () => {
    const handlers = new HandlerRegistry()
      .handle('Boom', () => { throw new Error('kaboom'); })
      .handle('AsyncBoom', async () => { throw new TypeError('async kaboom'); })
      .handle('GetVariable', async (body) => {
        throw new WardenError('ERR_NOT_FOUND', `variable ${String(body['key'])} does not exist`, { detail: { key: body['key'] } });
      })
      .handle('Unencodable', () => ({ fn: () => 1, sym: Symbol('s') }));
    const { peer, out, attached, channel } = relay(handlers);
    cleanup.push({ peer, attached });
    peer.child.stdin!.write(Buffer.concat([
      encodeFrame(1, { type: 'Boom' }), encodeFrame(2, { type: 'AsyncBoom' }),
      encodeFrame(3, { type: 'GetVariable', key: 'nope' }), encodeFrame(4, { type: 'Unencodable' }),
    ]));
    await out.count(4);
    expect(out.byId(1)).toEqual({ error: { code: 'ERR_HANDLER', message: 'kaboom' } });
    expect(out.byId(2)).toEqual({ error: { code: 'ERR_HANDLER', message: 'async kaboom' } });
    expect(out.byId(3)).toEqual({ error: { code: 'ERR_NOT_FOUND', message: 'variable nope does not exist', detail: { key: 'nope' } } });
    expect(out.byId(4).error.code).toBe('ERR_HANDLER');
    expect(channel.stats.errors).toEqual({ ERR_HANDLER: 3, ERR_NOT_FOUND: 1 });
    expect(attached.logs.filter((l) => l.event === 'comms.handler-failed')).toHaveLength(2);
  });

  it('sends the startup frame once, with id 0', async () => {
    const { peer, out, attached, channel } = relay(basicHandlers());
    cleanup.push({ peer, attached });
    expect(channel.sendStartup({ taskId: 't1', attempt: 2, type: 'ignored' })).toBe(true);
    expect(channel.sendStartup({ taskId: 'again' })).toBe(false);
    peer.child.stdin!.write(encodeFrame(1, { type: 'Echo', value: 'after' }));
    await out.count(2);
    expect(out.frames.filter((f) => f.id === 0)).toEqual([{ id: 0, body: { type: 'StartupDetails', taskId: 't1', attempt: 2 } }]);
  });

  it('ends on close() and on the task signal: handlers cancelled, io.close called once, nothing written after', async () => {
    const controller = new AbortController();
    const signals: AbortSignal[] = [];
    let started!: () => void;
    const bothStarted = new Promise<void>((done) => { started = done; });
    const handlers = new HandlerRegistry().handle('Hang', (_b, ctx) => {
      signals.push(ctx.signal);
      if (signals.length === 2) started();
      return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve('late')));
    });
    const a = relay(handlers, { signal: controller.signal });
    const b = relay(handlers);
    cleanup.push(a, b);
    a.peer.child.stdin!.write(encodeFrame(1, { type: 'Hang' }));
    b.peer.child.stdin!.write(encodeFrame(1, { type: 'Hang' }));
    await bothStarted;
    controller.abort();
    b.channel.close('task done');
    await a.out.until(() => a.out.ended);
    await b.out.until(() => b.out.ended);
    expect([a.channel.endReason, b.channel.endReason]).toEqual(['task-aborted', 'task done']);
    expect([a.attached.closeReason, b.attached.closeReason]).toEqual(['task-aborted', 'task done']);
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(a.out.frames.length + b.out.frames.length).toBe(0);
    expect(a.attached.writesAfterEnd + b.attached.writesAfterEnd).toBe(0);
  });

  it('checks its options and the registry at the boundary', () => {
    const io = { write: () => true, pauseReading() {}, resumeReading() {}, close() {} };
    const handlers = new HandlerRegistry();
    expect(() => new CommsChannel({ io, taskId: 't', handlers, maxInflightRequests: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => new CommsChannel({ io, taskId: 't', handlers, maxFrameBytes: 10 })).toThrow(/maxFrameBytes must be an integer from 1024/);
    handlers.handle('A', () => 1);
    expect(() => handlers.handle('A', () => 2)).toThrow(/already registered; use replace\(\)/);
    handlers.replace('A', () => 3);
    expect(handlers.types()).toEqual(['A']);
    expect(() => handlers.handle('', () => 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });
});
