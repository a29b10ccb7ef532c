import { describe, expect, test } from 'vitest';
import { ControlPlaneClient } from '../../lib/control-plane/client.js';
import { defaultHandlers, TERMINAL_REQUEST_TYPES, type DefaultHandlerContext } from '../../lib/control-plane/handlers.js';
import { isSensitiveName } from '../../lib/control-plane/sensitive-names.js';
import type { ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import type { FinishBody, TerminalStateName } from '../../lib/control-plane/types.js';
import { START, rejection, withControlPlane } from './helpers.js';

const TI = { id: 'ti-1', dagId: 'dag', runId: 'run', taskId: 'me', mapIndex: 2 };

function setup(cp: ReferenceControlPlane) {
  const client = new ControlPlaneClient({ baseUrl: cp.url, token: cp.token, minRetryMs: 1, maxRetryMs: 5 });
  const reported: [TerminalStateName, FinishBody][] = [];
  const masked: string[] = [];
  const handlers = defaultHandlers(client, TI, { onTerminalState: (state, body) => void reported.push([state, body]) });
  const ctx: DefaultHandlerContext = { signal: new AbortController().signal, taskId: 'task-1', maskSecret: (v) => void masked.push(v) };
  cp.store.createTaskInstance({ id: TI.id, dag_id: TI.dagId, run_id: TI.runId, task_id: TI.taskId, map_index: TI.mapIndex });
  return { client, handlers, ctx, reported, masked };
}

describe('default comms handlers', () => {
  test('GetVariable returns {key, value}, masks secret-looking keys, ERR_NOT_FOUND when absent', () => withControlPlane(async (cp) => {
    const { handlers, ctx, masked } = setup(cp);
    cp.store.putVariable('region', 'eu-west-1');
    cp.store.putVariable('DB_PASSWORD', 'hunter2!');
    cp.store.putVariable('empty_token', null);
    expect(await handlers.GetVariable!({ type: 'GetVariable', key: 'region' }, ctx)).toEqual({ key: 'region', value: 'eu-west-1' });
    expect(masked).toEqual([]);
    expect(await handlers.GetVariable!({ key: 'DB_PASSWORD' }, ctx)).toEqual({ key: 'DB_PASSWORD', value: 'hunter2!' });
    expect(await handlers.GetVariable!({ key: 'empty_token' }, ctx)).toEqual({ key: 'empty_token', value: null });
    expect(masked).toEqual(['hunter2!']);
    const missing = await rejection(handlers.GetVariable!({ key: 'nope' }, ctx));
    expect(missing.code).toBe('ERR_NOT_FOUND');
    expect((await rejection(handlers.GetVariable!({ key: 7 }, ctx))).code).toBe('ERR_BAD_REQUEST');
  }));

  test('PutVariable stores on the control plane; a non-string value is sent as JSON', () => withControlPlane(async (cp) => {
    const { handlers, ctx, masked } = setup(cp);
    expect(await handlers.PutVariable!({ key: 'k', value: 'v', description: 'd' }, ctx)).toEqual({ ok: true });
    expect(await handlers.PutVariable!({ key: 'n', value: { a: [1] } }, ctx)).toEqual({ ok: true });
    await handlers.PutVariable!({ key: 'api_key', value: 'abcdef' }, ctx);
    expect(cp.store.getVariable('k')).toEqual({ value: 'v', description: 'd' });
    expect(cp.store.getVariable('n')).toEqual({ value: '{"a":[1]}', description: null });
    expect(masked).toEqual(['abcdef']);
  }));

  test('GetConnection masks the password, the extra and secret values inside the extra', () => withControlPlane(async (cp) => {
    const { handlers, ctx, masked } = setup(cp);
    const extra = JSON.stringify({ region: 'us-east-1', auth: { access_token: 'tok-123456' } });
    cp.store.putConnection({ conn_id: 'api', conn_type: 'http', host: 'example.org', password: 'p@ss-word', extra });
    const conn = await handlers.GetConnection!({ conn_id: 'api' }, ctx);
    expect(conn).toMatchObject({ conn_id: 'api', host: 'example.org', password: 'p@ss-word', extra });
    expect(masked).toEqual(['p@ss-word', extra, 'tok-123456']);
    expect((await rejection(handlers.GetConnection!({ conn_id: 'none' }, ctx))).code).toBe('ERR_NOT_FOUND');
  }));

  test('a masker on the channel context is used when the context has none of its own', () => withControlPlane(async (cp) => {
    const { client } = setup(cp);
    const masked: string[] = [];
    const handlers = defaultHandlers(client, TI);
    cp.store.putVariable('secret_x', 'shhhhh');
    await handlers.GetVariable!({ key: 'secret_x' }, { signal: new AbortController().signal, taskId: 't', context: { maskSecret: (v: string) => masked.push(v) } });
    await handlers.MaskSecret!({ value: { a: 'one-value', b: ['two-value'] }, name: 'x' }, { signal: new AbortController().signal, taskId: 't', context: { maskSecret: (v: string) => masked.push(v) } });
    expect(masked).toEqual(['shhhhh', 'one-value', 'two-value']);
  }));

  test('SetXCom/GetXCom default to the task instance; another task defaults to map index -1', () => withControlPlane(async (cp) => {
    const { handlers, ctx } = setup(cp);
    expect(await handlers.SetXCom!({ key: 'out', value: { rows: 3 } }, ctx)).toEqual({ ok: true });
    expect(cp.store.getXCom({ dag_id: 'dag', run_id: 'run', task_id: 'me', key: 'out', map_index: 2 })).toEqual({ found: true, value: { rows: 3 } });
    expect(await handlers.GetXCom!({ key: 'out' }, ctx)).toEqual({ key: 'out', value: { rows: 3 } });
    cp.store.setXCom({ dag_id: 'dag', run_id: 'run', task_id: 'up', key: 'return_value' }, 'hello');
    expect(await handlers.GetXCom!({ key: 'return_value', task_id: 'up' }, ctx)).toEqual({ key: 'return_value', value: 'hello' });
    expect((await rejection(handlers.GetXCom!({ key: 'return_value', task_id: 'up', map_index: 0 }, ctx))).code).toBe('ERR_NOT_FOUND');
    expect((await rejection(handlers.SetXCom!({ key: 'k', value: 1, map_index: 'x' }, ctx))).code).toBe('ERR_BAD_REQUEST');
  }));

  test('Set/GetRenderedFields go to the rtif endpoint; a 410 (archived) is swallowed, a 404 is not', () => withControlPlane(async (cp) => {
    const { handlers, ctx, client } = setup(cp);
    expect(await handlers.SetRenderedFields!({ rendered_fields: { bash_command: 'echo 1' } }, ctx)).toEqual({ ok: true });
    expect(await handlers.GetRenderedFields!({}, ctx)).toEqual({ rendered_fields: { bash_command: 'echo 1' } });
    cp.store.archive(TI.id);
    expect(await handlers.SetRenderedFields!({ rendered_fields: { x: 1 } }, ctx)).toEqual({ ok: true });
    const other = defaultHandlers(client, { ...TI, id: 'missing' });
    expect(await rejection(other.SetRenderedFields!({ rendered_fields: {} }, ctx))).toMatchObject({ code: 'ERR_CONTROL_PLANE', status: 404 });
    expect((await rejection(handlers.SetRenderedFields!({ rendered_fields: [1] }, ctx))).code).toBe('ERR_BAD_REQUEST');
  }));

  test('terminal states are reported to the callback only, and each body is one the server accepts', () => withControlPlane(async (cp) => {
    const { handlers, ctx, reported, client } = setup(cp);
    const requests: [string, Record<string, unknown>][] = [
      ['SucceedTask', { end_date: new Date('2025-01-01T00:00:00Z'), rendered_map_index: 'a' }],
      ['TaskState', { state: 'skipped', end_date: '2025-01-01T00:00:00Z' }],
      ['RetryTask', { retry_delay_seconds: 30, retry_reason: 'flaky' }],
      ['DeferTask', { classpath: 'pkg.Trigger', next_method: 'resume', trigger_kwargs: { a: 1 }, trigger_timeout: 60 }],
      ['RescheduleTask', { reschedule_date: '2025-01-02T00:00:00Z' }],
    ];
    for (const [type, body] of requests) expect(await handlers[type]!({ type, ...body }, ctx)).toEqual({ ok: true });
    expect(reported.map(([state]) => state)).toEqual(['success', 'skipped', 'up_for_retry', 'deferred', 'up_for_reschedule']);
    expect(reported[0]![1]).toEqual({ state: 'success', end_date: '2025-01-01T00:00:00.000Z', task_outlets: [], outlet_events: [], rendered_map_index: 'a' });
    expect(reported[3]![1]).toEqual({ state: 'deferred', classpath: 'pkg.Trigger', next_method: 'resume', trigger_kwargs: { a: 1 }, next_kwargs: {}, trigger_timeout: 60 });
    // The handlers made no call: the control plane saw nothing for this task instance.
    expect(cp.store.getTaskInstance(TI.id)!.calls).toEqual([]);
    // Each reported body, sent by the supervisor as is, is accepted by the server.
    for (const [i, [, body]] of reported.entries()) {
      const id = `ti-${i + 10}`;
      cp.store.createTaskInstance({ id });
      await client.startTask(id, START);
      await client.finish(id, body);
      expect(cp.store.getTaskInstance(id)!.final_state!.state).toBe(body.state);
    }
  }));

  test('bad terminal requests are ERR_BAD_REQUEST; a callback error reaches the child; no callback, no types', () => withControlPlane(async (cp) => {
    const { handlers, ctx, client } = setup(cp);
    expect((await rejection(handlers.TaskState!({ state: 'success' }, ctx))).code).toBe('ERR_BAD_REQUEST');
    expect((await rejection(handlers.DeferTask!({ classpath: 'x' }, ctx))).code).toBe('ERR_BAD_REQUEST');
    expect((await rejection(handlers.RescheduleTask!({}, ctx))).code).toBe('ERR_BAD_REQUEST');
    expect((await rejection(handlers.SucceedTask!({ end_date: 'soon' }, ctx))).code).toBe('ERR_BAD_REQUEST');
    const refusing = defaultHandlers(client, TI, { onTerminalState: async () => { throw new Error('already reported'); } });
    expect((await rejection(refusing.SucceedTask!({}, ctx))).message).toBe('already reported');
    const bare = defaultHandlers(client, TI);
    for (const type of TERMINAL_REQUEST_TYPES) expect(bare[type]).toBeUndefined();
    expect(Object.keys(bare).sort()).toEqual(['GetConnection', 'GetRenderedFields', 'GetVariable', 'GetXCom', 'MaskSecret', 'PutVariable', 'SetRenderedFields', 'SetXCom']);
  }));

  test("the task's signal cancels a proxied request", () => withControlPlane(async (cp) => {
    const { handlers } = setup(cp);
    cp.store.addFault({ match: '/execution/variables', mode: 'hang', count: 1 });
    const controller = new AbortController();
    const pending = rejection(handlers.GetVariable!({ key: 'k' }, { signal: controller.signal, taskId: 't' }));
    cp.store.once('fault', () => controller.abort());
    expect(await pending).toMatchObject({ code: 'ERR_CONTROL_PLANE', kind: 'aborted' });
  }));

  test('sensitive names follow Airflow: case-insensitive substrings, extendable', () => {
    for (const name of ['password', 'DB_PASSWD', 'aws_secret_access_key', 'Authorization', 'my_api_key', 'apikey', 'slack_token', 'private_key_pem']) {
      expect(isSensitiveName(name)).toBe(true);
    }
    for (const name of ['region', 'user', 'host']) expect(isSensitiveName(name)).toBe(false);
    expect(isSensitiveName('pin_code', ['pin'])).toBe(true);
  });
});
