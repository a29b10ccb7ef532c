import { once } from 'node:events';
import { describe, expect, test } from 'vitest';
import { ControlPlaneClient, type ControlPlaneClientOptions } from '../../lib/control-plane/client.js';
import { ControlPlaneError } from '../../lib/control-plane/errors.js';
import { startReferenceControlPlane, type ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { WardenError } from '../../lib/errors.js';
import { START, TOKEN, expectBaseline, settledBaseline, rejection, withControlPlane } from './helpers.js';

const HB = { hostname: START.hostname, pid: START.pid };

function clientFor(cp: ReferenceControlPlane, options: Partial<ControlPlaneClientOptions> = {}): ControlPlaneClient {
  return new ControlPlaneClient({ baseUrl: cp.url, token: cp.token, minRetryMs: 1, maxRetryMs: 5, requestTimeoutMs: 2000, ...options });
}

async function running(cp: ReferenceControlPlane, client: ControlPlaneClient, id = 'ti-1'): Promise<void> {
  cp.store.createTaskInstance({ id });
  await client.startTask(id, START);
}

describe('ControlPlaneClient', () => {
  test('starts a task instance with a bearer token and gets the run context', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    cp.store.createTaskInstance({ id: 'ti-1', dag_id: 'd', run_id: 'r', task_id: 't', max_tries: 2 });
    const context = await client.startTask('ti-1', { ...START, start_date: new Date('2025-01-01T00:00:00Z') });
    expect(context.dag_run).toMatchObject({ dag_id: 'd', run_id: 'r' });
    expect(context.should_retry).toBe(true);
    expect(context.max_tries).toBe(2);
    const ti = cp.store.getTaskInstance('ti-1')!;
    expect(ti).toMatchObject({ state: 'running', hostname: 'host-a', unixname: 'user', pid: 4242, start_date: '2025-01-01T00:00:00.000Z' });
    expect(ti.calls.map((c) => [c.method, c.path, c.status])).toEqual([['PATCH', '/execution/task-instances/ti-1/run', 200]]);
  }));

  test('a wrong token is a typed 401, not retried', () => withControlPlane(async (cp) => {
    const client = new ControlPlaneClient({ baseUrl: cp.url, token: 'wrong', minRetryMs: 1 });
    cp.store.createTaskInstance({ id: 'ti-1' });
    const err = await rejection(client.startTask('ti-1', START));
    expect(err).toBeInstanceOf(ControlPlaneError);
    expect(err).toMatchObject({ code: 'ERR_CONTROL_PLANE', kind: 'http', status: 401, method: 'PATCH', path: '/execution/task-instances/ti-1/run', attempts: 1 });
    expect(err.message).toMatch(/HTTP 401.*check the token/);
    expect(err.message).not.toContain('wrong');
    expect(cp.store.getTaskInstance('ti-1')!.calls).toHaveLength(1);
  }));

  test('heartbeat: 204, then 409 after an admin forces the state; not retried, typed', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await running(cp, client);
    await client.heartbeat('ti-1', HB);
    await client.heartbeat('ti-1', HB);
    expect(cp.store.getTaskInstance('ti-1')!.heartbeats).toBe(2);
    cp.store.forceState('ti-1', 'failed');
    const err = await rejection(client.heartbeat('ti-1', HB));
    expect(err).toMatchObject({ kind: 'http', status: 409, attempts: 1, serverSaysStop: true, retryable: false });
    expect(err.body).toMatchObject({ detail: { reason: 'not_running', current_state: 'failed' } });
    expect(err.message).toContain('not_running');
    const calls = cp.store.getTaskInstance('ti-1')!.calls.filter((c) => c.path.endsWith('/heartbeat'));
    expect(calls.map((c) => c.status)).toEqual([204, 204, 409]);
  }));

  test('heartbeat: 404 for an unknown task instance and 410 for an archived one', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    const unknown = await rejection(client.heartbeat('nope', HB));
    expect(unknown).toMatchObject({ status: 404, serverSaysStop: true, attempts: 1 });
    await running(cp, client);
    cp.store.archive('ti-1');
    const gone = await rejection(client.heartbeat('ti-1', HB));
    expect(gone).toMatchObject({ status: 410, serverSaysStop: true, attempts: 1 });
    expect(cp.store.getTaskInstance('ti-1')!.calls.filter((c) => c.path.endsWith('/heartbeat'))).toHaveLength(1);
  }));

  test('heartbeat on a 500 makes one attempt: the next tick is the retry', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await running(cp, client);
    cp.store.addFault({ match: 'heartbeat', mode: '500', count: 5 });
    const err = await rejection(client.heartbeat('ti-1', HB));
    expect(err).toMatchObject({ kind: 'http', status: 500, attempts: 1, retryable: true, serverSaysStop: false });
    expect(cp.store.faults.list()[0]!.remaining).toBe(4);
  }));

  test('a start that gets 500 for a while is retried with backoff and then succeeds', () => withControlPlane(async (cp) => {
    const retries: number[] = [];
    const client = clientFor(cp, { onRetry: ({ attempt }) => retries.push(attempt) });
    cp.store.createTaskInstance({ id: 'ti-1' });
    cp.store.addFault({ match: 'start', mode: '500', count: 3 });
    await client.startTask('ti-1', START);
    expect(retries).toEqual([1, 2, 3]);
    expect(cp.store.getTaskInstance('ti-1')!.calls.map((c) => c.status)).toEqual([500, 500, 500, 200]);
  }));

  test('a start that keeps failing spends its retry budget and reports every attempt', () => withControlPlane(async (cp) => {
    const client = clientFor(cp, { retries: 2 });
    cp.store.createTaskInstance({ id: 'ti-1' });
    cp.store.addFault({ match: 'start', mode: '500', count: 10 });
    const err = await rejection(client.startTask('ti-1', START));
    expect(err).toMatchObject({ kind: 'http', status: 500, attempts: 3 });
    expect(err.message).toContain('after 3 attempts');
    expect(cp.store.getTaskInstance('ti-1')!.calls).toHaveLength(3);
  }));

  test('a dropped connection is a network error, retried until it recovers', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await running(cp, client);
    cp.store.addFault({ match: 'state', mode: 'close', count: 2 });
    await client.finish('ti-1', { state: 'failed' });
    expect(cp.store.getTaskInstance('ti-1')!.final_state).toMatchObject({ state: 'failed' });
    const hb = cp.store.addFault({ match: 'heartbeat', mode: 'close', count: 1 });
    const err = await rejection(client.heartbeat('ti-1', HB));
    expect(err).toMatchObject({ kind: 'network', status: null, attempts: 1, retryable: true });
    expect(hb.id).toBeGreaterThan(0);
  }));

  test('connection refused: the retry budget is spent, kind network', async () => {
    const baseline = await settledBaseline();
    const cp = await startReferenceControlPlane({ token: TOKEN });
    const url = cp.url;
    await cp.close();
    const client = new ControlPlaneClient({ baseUrl: url, token: TOKEN, retries: 3, minRetryMs: 1, maxRetryMs: 2 });
    const err = await rejection(client.startTask('ti-1', START));
    expect(err).toMatchObject({ code: 'ERR_CONTROL_PLANE', kind: 'network', status: null, attempts: 4 });
    expect(err.message).toMatch(/ECONNREFUSED/);
    await expectBaseline(baseline);
  });

  test('a hung server: the per-request timeout fires (kind timeout), then a retry succeeds', () => withControlPlane(async (cp) => {
    const client = clientFor(cp, { requestTimeoutMs: 150 });
    await running(cp, client);
    cp.store.addFault({ match: 'heartbeat', mode: 'hang', count: 1 });
    const err = await rejection(client.heartbeat('ti-1', HB));
    expect(err).toMatchObject({ kind: 'timeout', status: null, attempts: 1, retryable: true });
    expect(err.message).toContain('150 ms');
    cp.store.addFault({ match: 'state', mode: 'hang', count: 1 });
    await client.finish('ti-1', { state: 'success' });
    expect(cp.store.getTaskInstance('ti-1')!.state).toBe('success');
  }));

  test('aborting during a backoff wait stops retrying at once', () => withControlPlane(async (cp) => {
    // A one-minute backoff: only the abort can end this call within the test's timeout.
    const client = clientFor(cp, { minRetryMs: 60_000, maxRetryMs: 60_000, maxRetryTimeMs: 0 });
    cp.store.createTaskInstance({ id: 'ti-1' });
    cp.store.addFault({ match: 'start', mode: '500', count: 10 });
    const controller = new AbortController();
    const firstCall = once(cp.store, 'call');
    const pending = rejection(client.startTask('ti-1', START, controller.signal));
    await firstCall;
    controller.abort(new Error('task ended'));
    const err = await pending;
    expect(err).toMatchObject({ code: 'ERR_CONTROL_PLANE', kind: 'aborted', status: null, attempts: 1 });
    expect(cp.store.getTaskInstance('ti-1')!.calls).toHaveLength(1);
  }));

  test('aborting during an attempt ends it at once; an aborted signal sends nothing', () => withControlPlane(async (cp) => {
    const client = clientFor(cp, { requestTimeoutMs: 60_000 });
    await running(cp, client);
    cp.store.addFault({ match: 'heartbeat', mode: 'hang', count: 1 });
    const controller = new AbortController();
    const held = once(cp.store, 'fault');
    const pending = rejection(client.heartbeat('ti-1', HB, controller.signal));
    await held;
    controller.abort();
    expect(await pending).toMatchObject({ kind: 'aborted', attempts: 1 });
    const before = cp.store.getTaskInstance('ti-1')!.calls.length;
    expect(await rejection(client.finish('ti-1', { state: 'success' }, controller.signal))).toMatchObject({ kind: 'aborted' });
    expect(cp.store.getTaskInstance('ti-1')!.calls.length).toBe(before);
  }));

  test('finish: 204, 200 when repeated, 409 when the TI is not running', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await running(cp, client);
    await client.finish('ti-1', { state: 'up_for_retry', retry_reason: 'flaky' });
    await client.finish('ti-1', { state: 'up_for_retry' });
    const ti = cp.store.getTaskInstance('ti-1')!;
    expect(ti.state).toBe('up_for_retry');
    expect(ti.state_reports).toBe(1);
    expect(ti.final_state!.body).toMatchObject({ state: 'up_for_retry', retry_reason: 'flaky' });
    expect(typeof ti.final_state!.body.end_date).toBe('string');
    const err = await rejection(client.finish('ti-1', { state: 'failed' }));
    expect(err).toMatchObject({ status: 409, attempts: 1 });
    expect(err.body.detail).toMatchObject({ reason: 'invalid_state', previous_state: 'up_for_retry' });
  }));

  test('an error body is read to 64 KiB at most', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await running(cp, client);
    // The 422 echoes the offending input, so its body is far larger than 64 KiB.
    const err = await rejection(client.finish('ti-1', { state: 'failed', junk: 'x'.repeat(300_000) }));
    expect(err).toMatchObject({ status: 422, attempts: 1 });
    expect(typeof err.body).toBe('string');
    expect(Buffer.byteLength(err.body)).toBe(64 * 1024);
  }));

  test('variables, connections and XComs; a 404 on a read is ERR_NOT_FOUND', () => withControlPlane(async (cp) => {
    const client = clientFor(cp);
    await client.putVariable('a/b', { value: 'v1', description: 'd' });
    expect(await client.getVariable('a/b')).toEqual({ key: 'a/b', value: 'v1' });
    expect(cp.store.getVariable('a/b')).toEqual({ value: 'v1', description: 'd' });
    const missing = await rejection(client.getVariable('nope'));
    expect(missing).toBeInstanceOf(WardenError);
    expect(missing).not.toBeInstanceOf(ControlPlaneError);
    expect(missing.code).toBe('ERR_NOT_FOUND');
    expect(missing.cause).toMatchObject({ status: 404 });
    expect(cp.store.listTaskInstances()).toEqual([]);

    cp.store.putConnection({ conn_id: 'db', conn_type: 'postgres', host: 'h', port: 5432, password: 'pw' });
    expect(await client.getConnection('db')).toMatchObject({ conn_id: 'db', conn_type: 'postgres', port: 5432, password: 'pw', schema: null });
    expect((await rejection(client.getConnection('none'))).code).toBe('ERR_NOT_FOUND');

    await client.setXCom('d', 'r', 't', 'k', { n: 1 });
    await client.setXCom('d', 'r', 't', 'k', [2], { mapIndex: 3, mappedLength: 4 });
    expect(await client.getXCom('d', 'r', 't', 'k')).toEqual({ key: 'k', value: { n: 1 } });
    expect(await client.getXCom('d', 'r', 't', 'k', 3)).toEqual({ key: 'k', value: [2] });
    expect((await rejection(client.getXCom('d', 'r', 't', 'k', 7))).code).toBe('ERR_NOT_FOUND');
  }));

  test('a success body over maxResponseBytes is refused, not truncated', () => withControlPlane(async (cp) => {
    const client = clientFor(cp, { maxResponseBytes: 1000, retries: 0 });
    cp.store.putVariable('big', 'x'.repeat(5000));
    const err = await rejection(client.getVariable('big'));
    expect(err).toMatchObject({ kind: 'http', status: 200 });
    expect(err.body).toContain('maxResponseBytes');
  }));

  test('bad options and arguments throw synchronously', () => {
    const bad: unknown[] = [
      { baseUrl: 'not a url', token: 't' }, { baseUrl: 'ftp://x', token: 't' }, { baseUrl: 'http://x', token: '' },
      { baseUrl: 'http://x', token: 't', requestTimeoutMs: 0 }, { baseUrl: 'http://x', token: 't', retries: -1 },
      { baseUrl: 'http://x', token: 't', minRetryMs: 10, maxRetryMs: 5 },
    ];
    for (const options of bad) {
      expect(() => new ControlPlaneClient(options as ControlPlaneClientOptions)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    }
    const client = new ControlPlaneClient({ baseUrl: 'http://127.0.0.1:1/', token: 't' });
    expect(client.baseUrl).toBe('http://127.0.0.1:1');
    expect(() => client.heartbeat('', HB)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => client.getXCom('d', 'r', 't', 'k', 1.5)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => client.heartbeat('x', { hostname: 1, pid: 1 } as never)).toThrow(/hostname must be a string/);
    expect(() => client.startTask('x', { ...START, pid: 'p' } as never)).toThrow(/pid must be an integer/);
  });
});
