/**
 * Issue 3 end to end: the comms channel through the real Supervisor (`supervisor.handle`), with
 * real task processes that use `warden/child` by its package name (spec/fixtures/comms/
 * warden-task.mjs; it loads dist/, so build first), speak the wire themselves
 * (raw-frames.mjs, flood.mjs), or are written in Python (examples/python-task.py).
 */
import { describe, expect, it } from 'vitest';
import { startReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { WardenError } from '../../lib/errors.js';
import type { LogRecord } from '../../lib/logs/records.js';
import type { Supervisor } from '../../lib/supervisor/supervisor.js';
import type { Task } from '../../lib/supervisor/task.js';
import type { TaskSpec } from '../../lib/supervisor/types.js';
import { guardLeaks } from '../helpers/leaks.js';
import { fixture, repoRoot } from '../helpers/paths.js';
import { withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Watched {
  task: Task;
  /** JSON lines the task printed on stdout so far. */
  lines(): Json[];
  /** Records of the task's log so far (stdout lines excluded). */
  records(): LogRecord[];
  /** Resolves with the first log record whose event is `event`. */
  record(event: string): Promise<LogRecord>;
}

/** Starts a task and collects what it prints and what its log says. */
function watch(sup: Supervisor, spec: Omit<TaskSpec, 'env'>): Watched {
  const task = sup.start({ timeoutMs: 15_000, ...spec, env: env() });
  let out = '';
  const records: LogRecord[] = [];
  const waiters: Array<{ event: string; found: (r: LogRecord) => void }> = [];
  task.on('stdout', (chunk) => (out += chunk.toString()));
  task.on('log', (r) => {
    if (r.logger === 'task.stdout') return;
    records.push(r);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.event === r.event) waiters.splice(i, 1)[0]!.found(r);
    }
  });
  return {
    task,
    lines: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json),
    records: () => records,
    record: (event) => {
      const seen = records.find((r) => r.event === event);
      if (seen) return Promise.resolve(seen);
      return new Promise((found, fail) => {
        waiters.push({ event, found });
        void task.result.then(() => setImmediate(() => fail(new Error(`the task settled without a ${event} record`))));
      });
    },
  };
}

const node = (script: string, ...args: string[]): Omit<TaskSpec, 'env'> => ({ command: process.execPath, args: [fixture(`comms/${script}`), ...args] });
const events = (w: Watched): string[] => w.records().map((r) => String(r.event));

/** A well-behaved task on the same supervisor, to show it still serves after a fault. */
async function stillServes(sup: Supervisor): Promise<void> {
  const ok = watch(sup, node('warden-task.mjs', 'ask', '5'));
  expect(await ok.task.result).toMatchObject({ state: 'success', reason: 'exited', survivors: 0 });
  expect(ok.lines()).toEqual([{ answers: [0, 1, 2, 3, 4] }]);
}

/** Echo answers a few turns later, so that responses leave out of order. */
function echoLater(sup: Supervisor): void {
  sup.handle('Echo', async (body: { value: unknown }) => {
    for (let i = Math.floor(Math.random() * 4); i > 0; i--) await new Promise<void>((done) => setImmediate(done));
    return body.value;
  });
}

describe('the startup gate', () => {
  it('connect() resolves only after the StartupDetails frame: with a control plane, once it accepted the start', async () => {
    const cp = await startReferenceControlPlane({ token: 'spec-token' });
    try {
      cp.store.createTaskInstance({ id: 'ti-gate', dag_id: 'dag', run_id: 'run', task_id: 'gated' });
      // Every start call fails until the task has shown it is running and waiting.
      cp.store.addFault({ match: 'start', mode: '500', count: 1000 });
      await withSupervisor({ controlPlane: { url: cp.url, token: 'spec-token', minRetryMs: 20, startRetries: 20 } }, async (sup) => {
        const w = watch(sup, { ...node('warden-task.mjs', 'gate'), ti: { id: 'ti-gate' } });
        const order: string[] = [];
        w.task.on('record', (r) => {
          if (r.event === 'start accepted by the control plane') order.push('accepted');
        });
        w.task.on('stdout', (chunk) => {
          const text = chunk.toString();
          if (text.includes('"connecting"')) {
            order.push('connecting');
            cp.store.clearFaults();
          }
          if (text.includes('"connected"')) order.push('connected');
        });
        const r = await w.task.result;
        expect(r).toMatchObject({ state: 'success', reason: 'exited', survivors: 0 });
        expect(order).toEqual(['connecting', 'accepted', 'connected']);
        const connected = w.lines().find((l) => l['event'] === 'connected')!;
        expect(connected['startup']).toMatchObject({ type: 'StartupDetails', taskId: w.task.id, tiId: 'ti-gate', runContext: { dag_run: { dag_id: 'dag' } } });
        // User code ran after the gate, and its fd 3 record reached the task's log.
        expect(w.records().find((x) => x.event === 'user code ran')).toMatchObject({ logger: 'task', level: 'info', taskId: w.task.id });
      });
    } finally {
      await cp.close();
    }
  });

  it('without a control plane the frame goes out at spawn, and the task process ends on its own once its code is done', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('warden-task.mjs', 'ask', '20'));
      const r = await w.task.result;
      // Had warden/child kept the event loop alive, this would have ended by the 15 s timeout instead.
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0, survivors: 0, pipesForceClosed: false });
      expect(r.durationMs).toBeLessThan(10_000);
      expect(w.lines()).toEqual([{ answers: Array.from({ length: 20 }, (_, i) => i) }]);
      expect(w.records().find((x) => x.event === 'asked')).toMatchObject({ logger: 'task', count: 20 });
      expect(w.task.channel!.endReason).toBe('eof');
      expect(w.task.channel!.stats).toMatchObject({ requests: 20, responses: 20, errors: {} });
    });
  });
});

describe('requests and their answers', () => {
  it('answers concurrent requests with the right values, and an unknown type, a throwing handler and a missing key with their codes', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      sup.handle('Throw', (body: { why: string }) => {
        throw new Error(`disk on fire (${body.why})`);
      });
      sup.handle('GetVariable', ({ key }: { key: string }) => {
        throw new WardenError('ERR_NOT_FOUND', `variable ${key} is not set`, { detail: { key } });
      });
      const w = watch(sup, node('warden-task.mjs', 'mixed'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      const [result] = w.lines();
      expect(result!['echoes']).toEqual(Array.from({ length: 40 }, (_, i) => ({ ok: `value-${i}` })));
      expect(result!['unknown'].error).toMatchObject({ code: 'ERR_UNKNOWN_REQUEST', isWardenError: true });
      expect(result!['unknown'].error.message).toMatch(/no handler for request type "NoSuchType"; known types: .*Echo/);
      expect(result!['thrown'].error).toMatchObject({ code: 'ERR_HANDLER', message: 'disk on fire (because)' });
      expect(result!['notFound'].error).toEqual({ code: 'ERR_NOT_FOUND', message: 'variable missing is not set', detail: { key: 'missing' }, isWardenError: true });
      // The supervisor's side of the story, in the task's log.
      expect(w.records().find((x) => x.event === 'comms.unknown-request')).toMatchObject({ logger: 'warden', level: 'warning', type: 'NoSuchType' });
      expect(w.records().find((x) => x.event === 'comms.handler-failed')).toMatchObject({ level: 'warning', type: 'Throw', error: 'disk on fire (because)' });
      expect(w.records().find((x) => x.event === 'comms.closed')).toMatchObject({ reason: 'eof', requests: 43, responses: 43, errors: { ERR_UNKNOWN_REQUEST: 1, ERR_HANDLER: 1, ERR_NOT_FOUND: 1 } });
    });
  });

  it('delivers binary answers as Buffers that stay intact while later answers arrive', async () => {
    await withSupervisor({}, async (sup) => {
      sup.handle('Blob', ({ size, fill }: { size: number; fill: number }) => Buffer.alloc(size, fill));
      const w = watch(sup, node('warden-task.mjs', 'bytes'));
      expect(await w.task.result).toMatchObject({ state: 'success', survivors: 0 });
      expect(w.lines()).toEqual([{ first: true, later: true }]);
    });
  });

  it('answers a handler that never resolves with ERR_HANDLER_TIMEOUT and aborts its ctx.signal', async () => {
    await withSupervisor({ comms: { handlerTimeoutMs: 200 } }, async (sup) => {
      const reasons: unknown[] = [];
      sup.handle('Hang', (_body, ctx) => new Promise(() => ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason))));
      const w = watch(sup, node('warden-task.mjs', 'hang'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      const [result] = w.lines();
      expect(result!['error']).toMatchObject({ code: 'ERR_HANDLER_TIMEOUT', detail: { handlerTimeoutMs: 200 } });
      expect(result!['error'].message).toMatch(/the Hang handler did not answer request \d+ within handlerTimeoutMs \(200\)/);
      expect(result!['waitedMs']).toBeGreaterThanOrEqual(190);
      expect(reasons).toEqual([expect.objectContaining({ code: 'ERR_HANDLER_TIMEOUT' })]);
      expect(w.records().find((x) => x.event === 'comms.handler-timeout')).toMatchObject({ level: 'warning', type: 'Hang', handlerTimeoutMs: 200 });
    });
  });

  it('answers 10,000 requests sent at once: each gets one answer, those beyond maxInflightRequests ERR_BUSY', async () => {
    await withSupervisor({}, async (sup) => {
      echoLater(sup);
      const w = watch(sup, node('warden-task.mjs', 'burst', '10000'));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      const [{ counts, wrong }] = w.lines() as [Json];
      expect(wrong).toBe(0);
      expect(Object.keys(counts).sort()).toEqual(['ERR_BUSY', 'ok']);
      expect(counts.ok + counts.ERR_BUSY).toBe(10_000);
      expect(counts.ok).toBeGreaterThanOrEqual(64);
      expect(w.task.channel!.stats).toMatchObject({ requests: 10_000, responses: 10_000, errors: { ERR_BUSY: counts.ERR_BUSY } });
      // Said once per request would be thousands of records: the log carries a bounded sample and the count.
      const busy = w.records().filter((x) => x.event === 'comms.busy');
      expect(busy.length).toBe(10);
      expect(busy[9]).toHaveProperty('more');
      expect(w.records().find((x) => x.event === 'comms.closed')).toMatchObject({ level: 'info', errors: { ERR_BUSY: counts.ERR_BUSY } });
    });
  });
});

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
      await stillServes(sup);
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
      await stillServes(sup);
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
      await stillServes(sup);
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
      await stillServes(sup);
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

describe('a Python task through the supervisor (examples/python-task.py)', () => {
  const python = { command: 'python3', args: [`${repoRoot}examples/python-task.py`] };

  function variables(sup: Supervisor, values: Record<string, string>): void {
    sup.handle('GetVariable', ({ key }: { key: string }) => {
      if (!(key in values)) throw new WardenError('ERR_NOT_FOUND', `variable ${key} is not set`, { detail: { key } });
      return { key, value: values[key] };
    });
  }

  it('reads the startup frame, asks for a variable, prints it and logs a record on fd 3', async () => {
    await withSupervisor({}, async (sup) => {
      variables(sup, { greeting: 'hello from warden, ünïcode and all' });
      const w = watch(sup, python);
      let stdout = '';
      w.task.on('stdout', (chunk) => (stdout += chunk.toString()));
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'success', status: 0, survivors: 0 });
      expect(stdout).toBe('hello from warden, ünïcode and all\n');
      expect(w.records().find((x) => x.event === 'greeted')).toMatchObject({ logger: 'task', level: 'info', task: w.task.id, value: 'hello from warden, ünïcode and all' });
      expect(w.task.channel!.stats).toMatchObject({ requests: 1, responses: 1, errors: {} });
    });
  });

  it('fails with the error code when the handler says ERR_NOT_FOUND', async () => {
    await withSupervisor({}, async (sup) => {
      variables(sup, {});
      const w = watch(sup, python);
      const r = await w.task.result;
      expect(r).toMatchObject({ state: 'failed', status: 1, survivors: 0 });
      expect(w.records().find((x) => x.logger === 'task.stderr')).toMatchObject({ event: 'GetVariable failed: ERR_NOT_FOUND: variable greeting is not set' });
    });
  });
});

describe('supervisor.handle', () => {
  it('replaces a default handler, refuses a second handler for a type, and checks its arguments', async () => {
    await withSupervisor({}, async (sup) => {
      sup.handle('MaskSecret', () => 'replaced'); // the default MaskSecret may be replaced once
      sup.handle('Echo', (body: { value: unknown }) => body.value);
      expect(() => sup.handle('Echo', () => 2)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/"Echo" is already registered/) }));
      expect(() => sup.handle('', () => 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
      expect(() => sup.handle('X', 'nope' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
      const w = watch(sup, node('warden-task.mjs', 'mask'));
      expect(await w.task.result).toMatchObject({ state: 'success', survivors: 0 });
      expect(w.lines()).toEqual([{ mask: 'replaced', echo: 'e' }]);
    });
  });
});
