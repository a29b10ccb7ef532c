import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { HandlerRegistry } from '../../lib/comms/handlers.js';
import { connect } from '../../lib/child/index.js';
import { Deadlines, type DeadlineEntry } from '../../lib/child/deadlines.js';
import { RequestIdAllocator } from '../../lib/child/request-ids.js';
import { formatRecord } from '../../lib/child/task-log.js';
import {
  attachChannel, buildChildLib, removeChildLib, spawnPeer, trackPeers, type Peer,
} from '../fixtures/comms/harness.js';

let childLib: string;
beforeAll(async () => { childLib = (await buildChildLib()).url; });
afterAll(() => removeChildLib());

const json = (line: string) => JSON.parse(line) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Resolves with the child's exit code, or fails if it is still running after `ms` (it would otherwise hang the suite). */
function exitsWithin(peer: Peer, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`the child did not exit on its own within ${ms} ms`)), ms);
  });
  return Promise.race([peer.exited, deadline]).finally(() => clearTimeout(timer));
}

function echoHandlers() {
  return new HandlerRegistry()
    .handle('Echo', async (body) => {
      // Answer out of order: later requests often finish first.
      for (let i = Math.floor(Math.random() * 5); i > 0; i--) await new Promise<void>((done) => setImmediate(done));
      return body['value'];
    })
    .handle('GetVariable', (body) => {
      throw new WardenError('ERR_NOT_FOUND', `variable ${String(body['key'])} is not set`, { detail: { key: body['key'] } });
    })
    .handle('Hang', (_body, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(null))));
}

describe('warden/child in a real task process', () => {
  const { track } = trackPeers();

  function task(scenario: string, options: { maxInflightRequests?: number; handlers?: HandlerRegistry } = {}) {
    const peer = spawnPeer('child-task.mjs', [scenario], { WARDEN_CHILD_LIB: childLib });
    const attached = attachChannel(peer.comms, { taskId: 't-child', handlers: echoHandlers(), ...options });
    track(peer, attached);
    return { peer, attached, channel: attached.channel };
  }

  it('resolves connect() only after the startup frame', async () => {
    const { peer, channel } = task('gate');
    await peer.line((l) => l.includes('connecting'));
    peer.child.stdin!.write('ping\n');
    expect(json(await peer.line((l) => l.includes('pong')))).toEqual({ pong: true, connected: false });
    channel.sendStartup({ taskId: 't-child', attempt: 1, runContext: { dagId: 'd' } });
    const connected = json(await peer.line((l) => l.includes('"event":"connected"')));
    expect(connected['startup']).toEqual({ type: 'StartupDetails', taskId: 't-child', attempt: 1, runContext: { dagId: 'd' } });
    expect(await exitsWithin(peer, 10_000)).toBe(0);
  });

  it('fails connect() with a clear ERR_NOT_UNDER_WARDEN when the fds are missing, and logs to stderr instead', async () => {
    const peer = spawnPeer('child-task.mjs', ['no-fds'], { WARDEN_CHILD_LIB: childLib, WARDEN_COMMS_FD: undefined, WARDEN_LOG_FD: undefined });
    track(peer);
    expect(await exitsWithin(peer, 10_000)).toBe(0);
    await peer.closed;
    const error = json(peer.stdout[0]!);
    expect(error).toMatchObject({ code: 'ERR_NOT_UNDER_WARDEN', isWardenError: true });
    expect(error['message']).toMatch(/WARDEN_COMMS_FD is not set, so this task is not running under warden.*warden run/);
    const notices = peer.stderr.filter((l) => l.startsWith('warden/child:'));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/WARDEN_LOG_FD is not set/);
    const records = peer.stderr.filter((l) => l.startsWith('{')).map(json);
    expect(records).toEqual([
      { timestamp: expect.any(String), level: 'info', logger: 'task', event: 'one' },
      { timestamp: expect.any(String), level: 'warning', logger: 'task', event: 'two', n: 2 },
    ]);
  });

  it('rejects connect() in-process for a missing, malformed or closed fd', async () => {
    await expect(connect({ env: {} })).rejects.toMatchObject({ code: 'ERR_NOT_UNDER_WARDEN' });
    await expect(connect({ env: { WARDEN_COMMS_FD: 'four' } })).rejects.toThrow(/is not an fd number/);
    await expect(connect({ env: { WARDEN_COMMS_FD: '987' } })).rejects.toThrow(/WARDEN_COMMS_FD=987 names no open socket or pipe/);
    expect(() => connect({ env: {}, requestTimeoutMs: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });

  it('resolves concurrent requests with the right values, and rejects with the response error, timeout and code', async () => {
    const { peer, attached, channel } = task('concurrent', { maxInflightRequests: 256 });
    channel.sendStartup({ taskId: 't-child' });
    expect(await exitsWithin(peer, 10_000)).toBe(0);
    await peer.closed;
    const { results } = json(peer.stdout.find((l) => l.includes('results'))!);
    expect(results).toHaveLength(202);
    for (let i = 0; i < 200; i++) expect(results[i]).toEqual({ ok: `value-${i}` });
    expect(results[200].error).toEqual({ code: 'ERR_NOT_FOUND', message: 'variable missing is not set', detail: { key: 'missing' }, isWardenError: true });
    expect(results[201].error).toMatchObject({ code: 'ERR_REQUEST_TIMEOUT', isWardenError: true });
    expect(channel.stats.requests).toBe(202);
    await attached.socketClosed;
    expect(channel.endReason).toBe('eof'); // the child's exit closed fd 4
    const log = peer.logLines.map(json);
    expect(log).toEqual([{ timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), level: 'info', logger: 'task', event: 'done', count: 202, big: '10' }]);
  });

  it('rejects pending and later requests with ERR_CHANNEL_CLOSED when the supervisor closes the channel', async () => {
    let handling!: () => void;
    const handled = new Promise<void>((done) => { handling = done; });
    const handlers = echoHandlers().replace('Hang', (_b, ctx) => {
      handling();
      return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(null)));
    });
    const { peer, channel } = task('closed', { handlers });
    channel.sendStartup({});
    await peer.line((l) => l.includes('sent'));
    await handled;
    channel.close('task finished');
    expect(await exitsWithin(peer, 10_000)).toBe(0);
    await peer.closed;
    const [first, second, last] = peer.stdout.slice(1).map(json);
    expect(first).toMatchObject({ code: 'ERR_CHANNEL_CLOSED', isWardenError: true });
    expect(second).toMatchObject({ code: 'ERR_CHANNEL_CLOSED' });
    expect(last).toEqual({ closed: true });
  });

  it('lets the task process exit on its own once user code is done, with no one closing fd 4', async () => {
    const { peer, attached, channel } = task('idle');
    channel.sendStartup({});
    expect(await exitsWithin(peer, 10_000)).toBe(0);
    await attached.socketClosed;
    expect(json(peer.stdout[0]!)).toEqual({ answer: 'once' });
    expect(channel.endReason).toBe('eof');
    expect(peer.logLines.map(json)[0]).toMatchObject({ level: 'info', event: 'answered', answer: 'once' });
  });
});

describe('request ids and log records', () => {
  it('numbers requests from 1, wraps before 2^32, and skips 0 and ids in flight', () => {
    const ids = new RequestIdAllocator();
    const inFlight = new Set<number>();
    expect([ids.next(inFlight), ids.next(inFlight)]).toEqual([1, 2]);
    const wrapping = new RequestIdAllocator(0xffff_fffe);
    const busy = new Set([1, 2]);
    expect([wrapping.next(busy), wrapping.next(busy), wrapping.next(busy)]).toEqual([0xffff_fffe, 0xffff_ffff, 3]);
    expect(() => new RequestIdAllocator(0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });

  it('expires request deadlines in order with one timer, skipping removed entries', async () => {
    const entry = (name: string) => ({ name, deadline: 0, prev: undefined, next: undefined, list: undefined } as DeadlineEntry & { name: string });
    const expired: string[] = [];
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => { allDone = resolve; });
    const deadlines = new Deadlines<DeadlineEntry & { name: string }>((e) => {
      expired.push(e.name);
      if (deadlines.size === 0) allDone();
    });
    const [a, b, c, d] = [entry('a'), entry('b'), entry('c'), entry('d')];
    deadlines.add(a, 40);
    deadlines.add(b, 40);
    deadlines.add(c, 10);
    deadlines.add(d, 40);
    deadlines.remove(b);
    deadlines.remove(b); // twice is harmless
    expect(deadlines.size).toBe(3);
    await done;
    expect(expired).toEqual(['c', 'a', 'd']);
    expect([a.list, c.list, d.list]).toEqual([undefined, undefined, undefined]);
  });

  it('writes one JSON object per line whatever the fields hold', () => {
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    const line = formatRecord('error', 'multi\nline', { n: 1n, circular });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(JSON.parse(line)).toMatchObject({ level: 'error', logger: 'task', event: 'multi\nline', fieldsError: expect.stringMatching(/could not be written as JSON/) });
    expect(JSON.parse(formatRecord('info', 'e', { logger: 'task.custom', n: 2n }))).toMatchObject({ logger: 'task.custom', n: '2' });
  });
});
