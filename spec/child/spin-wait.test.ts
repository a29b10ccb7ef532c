import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HandlerRegistry } from '../../lib/comms/handlers.js';
import { MAX_SKIP, MISSES_BEFORE_BACKOFF, SpinWait } from '../../lib/child/spin-wait.js';
import { nativeBinding } from '../../lib/process/native-binding.js';
import {
  attachChannel, buildChildLib, expectNoLeaks, removeChildLib, resources, spawnPeer, trackPeers,
} from '../fixtures/comms/harness.js';

const native = nativeBinding;
const multiCpu = availableParallelism() > 1;

describe('SpinWait: when a lone request spins', () => {
  /** A spin function that answers from a script (1 = the answer came in time) and records its calls. */
  function scripted(results: number[]) {
    const calls: Array<[number, number]> = [];
    return { calls, spin: (fd: number, micros: number) => (calls.push([fd, micros]), results.shift() ?? 0) };
  }

  it('spins every time while answers come within the budget', () => {
    const s = scripted(Array(100).fill(1));
    const wait = new SpinWait(7, 40, s.spin);
    for (let i = 0; i < 100; i++) wait.wait();
    expect(wait.stats).toEqual({ spins: 100, hits: 100, skipped: 0 });
    expect(s.calls.every(([fd, micros]) => fd === 7 && micros === 40)).toBe(true);
  });

  it('backs off exponentially after misses in a row, up to MAX_SKIP, and a hit ends the backoff', () => {
    const s = scripted([]); // every spin misses
    const wait = new SpinWait(3, 50, s.spin);
    const spinsAt: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const before = wait.stats.spins;
      wait.wait();
      if (wait.stats.spins > before) spinsAt.push(i);
    }
    // Pairs of misses, separated by runs of 1, 2, 4 ... skipped requests, capped at MAX_SKIP.
    expect(spinsAt.slice(0, 8)).toEqual([0, 1, 3, 4, 7, 8, 13, 14]);
    const gaps = spinsAt.slice(1).map((at, i) => at - spinsAt[i]! - 1).filter((g) => g > 0);
    expect(Math.max(...gaps)).toBe(MAX_SKIP);
    expect(wait.stats.hits).toBe(0);
    expect(wait.stats.spins).toBeLessThan(40); // of 5000: a slow handler costs next to nothing
    expect(wait.stats.spins + wait.stats.skipped).toBe(5000);

    // A spin that sees its answer in time resets the backoff: the next misses skip 1 again.
    const t = scripted([0, 0, 1, 0, 0]);
    const w2 = new SpinWait(3, 50, t.spin);
    for (let i = 0; i < 4; i++) w2.wait(); // miss, miss, one skipped, hit
    expect(w2.stats).toEqual({ spins: 3, hits: 1, skipped: 1 });
    for (let i = 0; i < MISSES_BEFORE_BACKOFF + 1; i++) w2.wait();
    expect(w2.stats).toEqual({ spins: 5, hits: 1, skipped: 2 });
  });
});

describe.skipIf(native === undefined)('the addon\'s spinReadable on a real socket', () => {
  let baseline: string[];
  beforeEach(() => { baseline = resources(); });
  afterEach(async () => { await expectNoLeaks(baseline); });

  it('returns 0 once the budget is spent, 1 as soon as bytes or a hangup are there, and checks its arguments', async () => {
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const accepted = new Promise<Socket>((done) => server.once('connection', done));
    const client = tcpConnect((server.address() as { port: number }).port, '127.0.0.1');
    await new Promise<void>((done) => client.once('connect', done));
    const peer = await accepted;
    const fd = (client as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(2);

    const t0 = process.hrtime.bigint();
    expect(native!.spinReadable(fd, 2000)).toBe(0);
    expect(Number(process.hrtime.bigint() - t0) / 1000).toBeGreaterThanOrEqual(2000);

    const got = new Promise<Buffer>((done) => client.once('data', done));
    peer.write('x'); // written to the kernel at once; the event loop does not turn before the spin
    expect(native!.spinReadable(fd, 10_000)).toBe(1);
    expect((await got).toString()).toBe('x'); // spinning left the bytes for the socket to read

    expect(() => native!.spinReadable(fd, -1)).toThrow(TypeError);
    expect(() => native!.spinReadable(fd, 10_001)).toThrow(TypeError);
    expect(() => (native!.spinReadable as (...a: unknown[]) => number)('4', 10)).toThrow(TypeError);

    const ended = new Promise<void>((done) => client.once('end', done));
    peer.destroy(); // closes the fd at once: the client reads EOF
    expect(native!.spinReadable(fd, 10_000)).toBe(1); // EOF counts: the loop must see it
    await ended;
    client.destroy();
    await new Promise<void>((done) => server.close(() => done()));
  });
});

describe.skipIf(native === undefined || !multiCpu)('the spin-then-sleep wait in a real task', () => {
  let childLib: string;
  beforeAll(async () => { childLib = (await buildChildLib()).url; });
  afterAll(() => removeChildLib());

  const { track } = trackPeers();

  const handlers = () => new HandlerRegistry()
    .handle('Now', (body) => body['value'])
    .handle('Slow', (body) => new Promise((done) => setTimeout(() => done(body['value']), 10)));

  async function run(args: string[], env: NodeJS.ProcessEnv = {}, launcher: string[] = []) {
    const peer = spawnPeer('child-task.mjs', ['spin', ...args], { WARDEN_CHILD_LIB: childLib, ...env }, false, launcher);
    const attached = attachChannel(peer.comms, { taskId: 't-spin', handlers: handlers() });
    track(peer, attached);
    attached.channel.sendStartup({});
    expect(await peer.exited).toBe(0);
    await peer.closed;
    const out = JSON.parse(peer.stdout.at(-1)!) as { wrong: number; spin: { micros: number; spins: number; hits: number; skipped: number } | null };
    expect(out.wrong).toBe(0);
    return { ...out, peer, channel: attached.channel };
  }

  it('spins for the answers of a handler that answers at once, and every answer is right', async () => {
    const { spin, channel } = await run(['300', 'Now']);
    expect(spin).toMatchObject({ micros: 50 });
    expect(spin!.spins + spin!.skipped).toBe(300);
    expect(spin!.hits).toBeGreaterThan(0);
    expect(channel.stats).toMatchObject({ requests: 300, responses: 300, errors: {} });
  });

  it('backs off from a handler slower than the budget: few spins, and every request answered', async () => {
    const { spin } = await run(['80', 'Slow']);
    // All-miss backoff makes 12 spins of 80. A spin stretched past the handler's 10 ms by a
    // preemption on a loaded machine sees its answer, counts as a hit and restarts the backoff,
    // so leave room for a few.
    expect(spin!.spins).toBeLessThanOrEqual(24);
    expect(spin!.hits).toBeLessThanOrEqual(3);
    expect(spin!.skipped).toBe(80 - spin!.spins);
  });

  it('is off with spinMicros 0 or WARDEN_COMMS_SPIN_US=0, follows the variable, and a bad value warns and keeps the default', async () => {
    expect((await run(['20', 'Now', '0'])).spin).toBeNull();
    expect((await run(['20', 'Now'], { WARDEN_COMMS_SPIN_US: '0' })).spin).toBeNull();
    expect((await run(['20', 'Now'], { WARDEN_COMMS_SPIN_US: '120' })).spin).toMatchObject({ micros: 120 });
    const bad = await run(['20', 'Now'], { WARDEN_COMMS_SPIN_US: 'fast' });
    expect(bad.spin).toMatchObject({ micros: 50 });
    expect(bad.peer.stderr.join('\n')).toMatch(/WARDEN_COMMS_SPIN_US="fast" is not a number of microseconds/);
  });

  it('is off in a task that may use only one CPU (spinning would only hold up the supervisor there)', async () => {
    const { spin } = await run(['20', 'Now'], {}, ['taskset', '-c', '0']);
    expect(spin).toBeNull();
  });
});
