import { once } from 'node:events';
import { describe, expect, test } from 'vitest';
import { ReferenceStore } from '../../lib/control-plane/reference-store.js';
import { startReferenceControlPlane, type ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { HB, RUN, TOKEN, call, rawRequest, runningTi, withControlPlane } from './helpers.js';

describe('reference control plane: auth and validation', () => {
  test('every call but health needs the bearer token: 401 JSON', () => withControlPlane(async (cp) => {
    expect(await call(cp, 'GET', '/execution/health', { token: null })).toMatchObject({ status: 200, body: { status: 'healthy' } });
    for (const token of [null, 'wrong', `${TOKEN}x`]) {
      const res = await call(cp, 'PUT', '/execution/task-instances/x/heartbeat', { token, body: HB });
      expect(res.status).toBe(401);
      expect(res.body.detail).toMatchObject({ reason: 'unauthorized' });
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect((await call(cp, 'GET', '/admin/task-instances', { token: null })).status).toBe(401);
    expect((await call(cp, 'GET', '/admin/task-instances')).status).toBe(200);
  }));

  test('bad bodies get FastAPI-shaped 422s, never a crash', () => withControlPlane(async (cp) => {
    await runningTi(cp);
    const hb = (init: Parameters<typeof call>[3]) => call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', init);
    const bad = await hb({ raw: '{"hostname": ', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0]).toMatchObject({ type: 'json_invalid', msg: 'JSON decode error' });
    expect((await hb({ body: { hostname: 'h', pid: 'x' } })).body.detail).toEqual([
      { type: 'int_type', loc: ['body', 'pid'], msg: 'Input should be a valid integer', input: 'x' },
    ]);
    expect((await hb({ body: { hostname: 'h' } })).body.detail[0]).toMatchObject({ type: 'missing', loc: ['body', 'pid'] });
    expect((await hb({ body: { ...HB, extra: 1 } })).body.detail[0]).toMatchObject({ type: 'extra_forbidden', loc: ['body', 'extra'] });
    expect((await hb({ body: [1] })).body.detail[0]).toMatchObject({ type: 'model_attributes_type' });
    expect((await hb({})).body.detail[0]).toMatchObject({ type: 'missing', loc: ['body'] });
    const state = (body: unknown) => call(cp, 'PATCH', '/execution/task-instances/ti-1/state', { body });
    const unknown = await state({ state: 'exploded', end_date: '2025-01-01T00:00:00Z' });
    expect(unknown.status).toBe(422);
    expect(unknown.body.detail[0]).toMatchObject({ type: 'literal_error', loc: ['body', 'state'] });
    expect((await state({ state: 'failed', end_date: 'yesterday' })).body.detail[0]).toMatchObject({ type: 'datetime_parsing', loc: ['body', 'end_date'] });
    expect((await state({ state: 'failed', end_date: '2025-01-01T00:00:00' })).body.detail[0]).toMatchObject({ type: 'timezone_aware' });
    expect((await state({ state: 'deferred', classpath: 'x' })).body.detail[0]).toMatchObject({ type: 'missing', loc: ['body', 'next_method'] });
    expect((await call(cp, 'GET', '/execution/xcoms/d/r/t/k?map_index=one')).body.detail[0]).toMatchObject({ type: 'int_parsing', loc: ['query', 'map_index'] });
    // Still serving, and nothing changed.
    expect((await hb({ body: HB })).status).toBe(204);
    expect(cp.store.getTaskInstance('ti-1')!.state).toBe('running');
  }));

  test('bodies over maxBodyBytes get 413, declared or chunked; routes 404/405; bad paths 400', () => withControlPlane(async (cp) => {
    const big = await call(cp, 'PUT', '/execution/variables/k', { raw: JSON.stringify({ value: 'x'.repeat(5000) }) });
    expect(big).toMatchObject({ status: 413, body: { detail: 'Request body larger than 4096 bytes' } });
    expect((await rawRequest(cp, 'PUT', '/execution/variables/k', ['{"value": "', 'y'.repeat(6000), '"}'])).status).toBe(413);
    expect((await rawRequest(cp, 'PUT', '/execution/variables/k', ['{"value": ', '"small"}'])).status).toBe(201);
    expect(cp.store.getVariable('k')).toEqual({ value: 'small', description: null });
    expect((await call(cp, 'GET', '/nowhere')).status).toBe(404);
    expect((await call(cp, 'GET', '/execution/nowhere')).body).toEqual({ detail: 'Not Found' });
    expect((await call(cp, 'DELETE', '/execution/task-instances/x/heartbeat')).status).toBe(405);
    expect((await call(cp, 'GET', '/execution/variables/%E0%A4%A')).status).toBe(400);
  }, { maxBodyBytes: 4096 }));

  test('bad options throw synchronously; a port in use is a typed rejection', async () => {
    for (const options of [{ port: -1 }, { port: 1.5 }, { token: '' }, { maxBodyBytes: 0 }]) {
      expect(() => startReferenceControlPlane(options)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    }
    await withControlPlane(async (cp) => {
      const port = Number(new URL(cp.url).port);
      await expect(startReferenceControlPlane({ port })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('EADDRINUSE') });
    });
  });

  test('a handler that throws answers 500 and the server keeps serving', async () => {
    const store = new ReferenceStore();
    store.getVariable = () => {
      throw new Error('boom');
    };
    await withControlPlane(async (cp) => {
      expect(await call(cp, 'GET', '/execution/variables/k')).toMatchObject({ status: 500, body: { detail: 'Internal Server Error: boom' } });
      expect((await call(cp, 'GET', '/execution/connections/c')).status).toBe(404);
    }, { store });
  });
});

describe('reference control plane: Airflow semantics', () => {
  test('start: 200 from queued, idempotent for the same process, 409 otherwise, 404 unknown', () => withControlPlane(async (cp) => {
    await call(cp, 'POST', '/admin/task-instances', { body: { id: 'ti-1', dag_id: 'd', max_tries: 1, conf: { a: 1 } } });
    const first = await call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ dag_run: { dag_id: 'd', conf: { a: 1 }, state: 'running' }, max_tries: 1, should_retry: true, xcom_keys_to_clear: [] });
    expect((await call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN })).status).toBe(200);
    const other = await call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: { ...RUN, pid: 1 } });
    expect(other).toMatchObject({ status: 409, body: { detail: { reason: 'invalid_state', previous_state: 'running' } } });
    expect((await call(cp, 'PATCH', '/execution/task-instances/none/run', { body: RUN })).body).toEqual({ detail: { reason: 'not_found', message: 'Task Instance not found' } });
    expect(cp.store.getTaskInstance('ti-1')!.starts).toBe(1);
  }));

  test('heartbeat: 204 counted, 409 running elsewhere or not running, 410 archived, 404 unknown', () => withControlPlane(async (cp) => {
    await runningTi(cp);
    const hb = (body: unknown, id = 'ti-1') => call(cp, 'PUT', `/execution/task-instances/${id}/heartbeat`, { body });
    expect((await hb(HB)).status).toBe(204);
    expect((await hb({ ...HB, pid: 7 })).body.detail).toMatchObject({ reason: 'running_elsewhere', current_pid: 4242 });
    const forced = await call(cp, 'PATCH', '/admin/task-instances/ti-1', { body: { state: 'failed' } });
    expect(forced.body).toMatchObject({ state: 'failed', heartbeats: 1 });
    expect(await hb(HB)).toMatchObject({ status: 409, body: { detail: { reason: 'not_running', current_state: 'failed' } } });
    await call(cp, 'PATCH', '/admin/task-instances/ti-1', { body: { archived: true } });
    expect((await hb(HB)).status).toBe(410);
    expect((await hb(HB, 'none')).status).toBe(404);
    const view = (await call(cp, 'GET', '/admin/task-instances/ti-1')).body;
    expect(view.heartbeats).toBe(1);
    expect(view.last_heartbeat_at).toEqual(expect.any(String));
    expect(view.calls.map((c: { status: number }) => c.status)).toEqual([200, 204, 409, 409, 410]);
  }));

  test('terminal state: recorded once, 200 when repeated, 409 when not running; deferral resumes', () => withControlPlane(async (cp) => {
    await runningTi(cp);
    const patch = (body: unknown) => call(cp, 'PATCH', '/execution/task-instances/ti-1/state', { body });
    const deferred = { state: 'deferred', classpath: 'a.Trigger', next_method: 'resume', next_kwargs: { n: 1 }, trigger_timeout: 60 };
    expect((await patch(deferred)).status).toBe(204);
    expect((await patch(deferred)).status).toBe(200);
    expect((await patch({ state: 'success', end_date: '2025-01-01T00:00:00Z' })).status).toBe(409);
    await call(cp, 'PATCH', '/admin/task-instances/ti-1', { body: { state: 'queued' } });
    const resumed = await call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN });
    expect(resumed.body).toMatchObject({ next_method: 'resume', next_kwargs: { n: 1 } });
    expect((await patch({ state: 'success', end_date: '2025-01-01T00:00:01Z', task_outlets: [] })).status).toBe(204);
    const ti = cp.store.getTaskInstance('ti-1')!;
    expect(ti).toMatchObject({ state: 'success', end_date: '2025-01-01T00:00:01Z', state_reports: 2, next_method: null });
    expect(ti.final_state).toMatchObject({ state: 'success', body: { task_outlets: [] } });
    expect((await patch({ state: 'up_for_reschedule', reschedule_date: '2025-01-02T00:00:00Z', end_date: '2025-01-01T00:00:00Z' })).status).toBe(409);
  }));

  test('variables, connections, XComs and rendered fields over the Execution API', () => withControlPlane(async (cp) => {
    expect((await call(cp, 'PUT', '/execution/variables/a%2Fb', { body: { val: 'v' } })).status).toBe(201);
    expect((await call(cp, 'GET', '/execution/variables/a/b')).body).toEqual({ key: 'a/b', value: 'v' });
    expect((await call(cp, 'GET', '/execution/variables/zz')).body.detail).toMatchObject({ reason: 'not_found' });
    expect((await call(cp, 'PUT', '/admin/connections/db', { body: { conn_type: 'http', port: 70000 } })).status).toBe(422);
    expect((await call(cp, 'PUT', '/admin/connections/db', { body: { conn_type: 'http', login: 'me' } })).status).toBe(200);
    expect((await call(cp, 'GET', '/execution/connections/db')).body).toEqual({ conn_id: 'db', conn_type: 'http', host: null, schema: null, login: 'me', password: null, port: null, extra: null });
    expect((await call(cp, 'POST', '/execution/xcoms/d/r/t/k?map_index=2', { body: null })).status).toBe(201);
    expect((await call(cp, 'GET', '/execution/xcoms/d/r/t/k?map_index=2')).body).toEqual({ key: 'k', value: null });
    expect((await call(cp, 'GET', '/execution/xcoms/d/r/t/k')).status).toBe(404);
    await runningTi(cp, 'ti-2', { dag_id: 'd', run_id: 'r', task_id: 't' });
    expect((await call(cp, 'PUT', '/execution/task-instances/ti-2/rtif', { body: { cmd: 'echo hi' } })).status).toBe(201);
    expect((await call(cp, 'GET', '/execution/task-instances/ti-2/rtif')).body).toEqual({ cmd: 'echo hi' });
    expect((await call(cp, 'PUT', '/execution/task-instances/ti-2/rtif', { body: 'x' })).status).toBe(422);
  }));

  test('admin API: create, list, inspect, bounds', () => withControlPlane(async (cp) => {
    const created = await call(cp, 'POST', '/admin/task-instances', { body: {} });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ state: 'queued', try_number: 1, max_tries: 0, map_index: -1, heartbeats: 0, final_state: null });
    expect((await call(cp, 'POST', '/admin/task-instances', { body: { id: created.body.id } })).status).toBe(409);
    expect((await call(cp, 'POST', '/admin/task-instances', { body: { try_number: -1 } })).status).toBe(422);
    expect((await call(cp, 'POST', '/admin/task-instances', { body: { state: 'bogus' } })).status).toBe(422);
    expect((await call(cp, 'GET', '/admin/task-instances/none')).status).toBe(404);
    expect((await call(cp, 'PATCH', '/admin/task-instances/none', { body: { state: 'failed' } })).status).toBe(404);
    expect((await call(cp, 'PATCH', `/admin/task-instances/${created.body.id}`, { body: {} })).status).toBe(422);
    expect((await call(cp, 'GET', '/admin/task-instances')).body).toHaveLength(1);
    expect((await call(cp, 'PUT', '/admin/variables/v1', { body: { value: '1' } })).status).toBe(200);
    expect((await call(cp, 'PUT', '/admin/variables/v2', { body: { value: '2' } })).status).toBe(200);
    expect((await call(cp, 'PUT', '/admin/variables/v3', { body: { value: '3' } })).body.detail).toMatch(/at most 2 entries/);
    expect((await call(cp, 'DELETE', '/admin/variables/v2')).status).toBe(204);
    expect((await call(cp, 'DELETE', '/admin/variables/v2')).status).toBe(404);
    await runningTi(cp, 'ti-1');
    for (let i = 0; i < 5; i++) await call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', { body: HB });
    expect(cp.store.getTaskInstance('ti-1')!.calls).toHaveLength(3);
    expect(cp.store.getTaskInstance('ti-1')!.heartbeats).toBe(5);
  }, { storeOptions: { maxEntries: 2, maxCallsPerTask: 3 } }));
});
