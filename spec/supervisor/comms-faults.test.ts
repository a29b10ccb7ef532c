/**
 * Issue 3 end to end, the faults: bad bytes on fd 4 (raw-frames.mjs speaks the wire itself), a
 * child that exits with requests in flight, one that never reads its answers (flood.mjs). The
 * supervisor stays up and serves other tasks; the log says why. The working channel:
 * comms-requests.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Supervisor } from '../../lib/supervisor/supervisor.js';
import { guardLeaks } from '../helpers/leaks.js';
import { withSupervisor } from '../helpers/tasks.js';
import { echoLater, events, node, stillServes, watchWith, type Watched } from './comms-harness.js';

const { env } = guardLeaks();
const watch = (sup: Supervisor, spec: Parameters<typeof watchWith>[2]): Watched => watchWith(env, sup, spec);

describe('bad input on fd 4: the supervisor stays up, the task ends in a defined state, the log says why', () => {
  it('text where a frame header belongs: answered ERR_FRAME_TOO_LARGE for the id it seems to carry, then the channel closes', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('raw-frames.mjs', 'garbage'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0, survivors: 0 });
      const lines = w.lines();
      expect(lines[0]).toMatchObject({ id: 0, body: { type: 'StartupDetails' } });
      // "GET " read as a length (0x47455420), "/ HT" as the id.
      expect(lines[1]).toEqual({ id: 0x2f204854, body: { error: { code: 'ERR_FRAME_TOO_LARGE', message: expect.stringMatching(/goes on without comms/), detail: { length: 0x47455420, maxFrameBytes: 16 * 1024 * 1024 } } } });
      expect(lines[2]).toEqual({ eof: true });
      expect(w.records().find((x) => x.event === 'comms.frame-too-large')).toMatchObject({ level: 'error', logger: 'warden', length: 0x47455420, action: expect.stringMatching(/goes on without comms/) });
      expect(events(w)).toContain('comms channel closed: frame-too-large; the task goes on without comms');
      await stillServes(env, sup);
    });
  });

  it('zero bytes (a length under 4): the channel closes at once and the log names stray bytes', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('raw-frames.mjs', 'zeros'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      expect(w.lines().slice(1)).toEqual([{ eof: true }]);
      expect(w.records().find((x) => x.event === 'comms.malformed-frame')).toMatchObject({ level: 'error', length: 0, reason: expect.stringMatching(/stray bytes on fd 4/) });
      expect(w.task.channel!.endReason).toBe('malformed-frame');
      await stillServes(env, sup);
    });
  });

  it('a header claiming 4 GiB: answered ERR_FRAME_TOO_LARGE for its id without reading the body, then closed', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('raw-frames.mjs', 'huge'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      expect(w.lines().slice(1)).toEqual([
        { id: 7, body: { error: { code: 'ERR_FRAME_TOO_LARGE', message: expect.stringMatching(/request 7 is 4294967295 bytes, over maxFrameBytes/), detail: { length: 0xffff_ffff, maxFrameBytes: 16 * 1024 * 1024 } } } },
        { eof: true },
      ]);
      expect(w.records().find((x) => x.event === 'comms.frame-too-large')).toMatchObject({ requestId: 7, length: 0xffff_ffff });
      // It read the header and what came with it, never the gigabytes.
      expect(w.task.channel!.stats.bytesIn).toBeLessThan(64 * 1024);
      await stillServes(env, sup);
    });
  });

  it('a body that is not msgpack: ERR_BAD_REQUEST for that id, and the channel goes on serving', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('raw-frames.mjs', 'not-msgpack'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      const [, bad, good, end] = w.lines();
      expect(bad).toEqual({ id: 5, body: { error: { code: 'ERR_BAD_REQUEST', message: expect.stringMatching(/^request 5: the body is not valid msgpack/) } } });
      expect(good).toEqual({ id: 6, body: { ok: 'still here' } });
      expect(end).toEqual({ eof: true });
      expect(w.records().find((x) => x.event === 'comms.bad-request')).toMatchObject({ level: 'warning', requestId: 5, error: expect.stringMatching(/not valid msgpack/) });
      expect(w.task.channel!.endReason).toBe('eof');
    });
  });
});

describe('faults of the task', () => {
  it('a child that exits with requests in flight: their handlers see ctx.signal abort, nothing is written after', async () => {
    await withSupervisor({}, async (sup) => {
      let calls = 0;
      let allIn!: () => void;
      const inFlight = new Promise<void>((done) => (allIn = done));
      const aborts: unknown[] = [];
      sup.handle('Hang', (_body, ctx) => new Promise((resolve) => {
        if (++calls === 5) allIn();
        // Answers right after the abort: that answer must go nowhere.
        ctx.signal.addEventListener('abort', () => {
          aborts.push(ctx.signal.reason);
          resolve('too late');
        });
      }));
      const w = watch(sup, { ...node('warden-task.mjs', 'exit-in-flight', '5'), stdin: true });
      await inFlight;
      expect(w.task.channel!.inflightRequests).toBe(5);
      const bytesOut = w.task.channel!.stats.bytesOut;
      w.task.write('exit\n');
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', survivors: 0 });
      expect(aborts).toHaveLength(5);
      for (const reason of aborts) expect(reason).toMatchObject({ code: 'ERR_CHANNEL_CLOSED' });
      await new Promise<void>((done) => setImmediate(done)); // the late answers have run
      expect(w.task.channel!.stats).toMatchObject({ requests: 5, responses: 0, bytesOut });
      expect(w.records().find((x) => x.event === 'comms.closed')).toMatchObject({ reason: 'eof', cancelledRequests: 5 });
    });
  });

  it('a child that never reads its responses: memory stays bounded, and another task is served meanwhile', async () => {
    const maxQueuedWriteBytes = 1024 * 1024;
    await withSupervisor({ comms: { maxQueuedWriteBytes } }, async (sup) => {
      sup.handle('Blob', (body: { size: number }) => Buffer.alloc(body.size, 0x62));
      echoLater(sup);
      const rss0 = process.memoryUsage().rss;
      // 2,000 requests for 64 KiB each: 128 MiB of answers if warden buffered them.
      const flood = watch(sup, { ...node('flood.mjs', '2000', 'Blob', '65536'), stdin: true });
      const paused = await flood.record('comms.read-paused');
      expect(paused).toMatchObject({ level: 'warning', maxQueuedWriteBytes, reason: expect.stringMatching(/not reading its responses/) });
      expect(flood.task.channel!.readingPaused).toBe(true);
      await stillServes(env, sup);
      const stats = flood.task.channel!.stats;
      // Bound: maxQueuedWriteBytes plus the response that crossed it (a synchronous handler).
      expect(stats.maxQueuedBytes).toBeLessThanOrEqual(maxQueuedWriteBytes + 65_536 + 64);
      expect(stats.responses).toBeLessThan(100);
      expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 1024 * 1024);
      flood.task.end(); // its cue to let go of fd 4 and exit
      expect(await flood.task.result).toMatchObject({ state: 'success', reason: 'exited', survivors: 0 });
    });
  });
});
