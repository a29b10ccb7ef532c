/**
 * Issue 3 end to end, the working channel: the startup gate, requests and their answers through
 * the real Supervisor (`supervisor.handle`), from tasks that use `warden/child` by its package name
 * (spec/fixtures/comms/warden-task.mjs; it loads dist/, so build first) or are written in Python
 * (examples/python-task.py). Faults: comms-faults.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { startReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { WardenError } from '../../lib/errors.js';
import type { Supervisor } from '../../lib/supervisor/supervisor.js';
import { guardLeaks } from '../helpers/leaks.js';
import { repoRoot } from '../helpers/paths.js';
import { withSupervisor } from '../helpers/tasks.js';
import { echoLater, node, type Json, watchWith, type Watched } from './comms-harness.js';

const { env } = guardLeaks();
const watch = (sup: Supervisor, spec: Parameters<typeof watchWith>[2]): Watched => watchWith(env, sup, spec);

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
