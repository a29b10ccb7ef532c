import { once } from 'node:events';
import { request } from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { runControlPlaneCommand } from '../../lib/cli/control-plane-command.js';
import { startReferenceControlPlane, type ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { HB, RUN, TOKEN, call, expectBaseline, runningTi, settledBaseline, withControlPlane } from './helpers.js';

describe('reference control plane: faults', () => {
  test('500 for N matching calls, then normal; admin calls never faulted', () => withControlPlane(async (cp) => {
    await runningTi(cp);
    const added = await call(cp, 'POST', '/admin/faults', { body: { match: 'heartbeat', mode: '500', count: 2 } });
    expect(added).toMatchObject({ status: 201, body: { match: 'heartbeat', mode: '500', count: 2, remaining: 2 } });
    await call(cp, 'POST', '/admin/faults', { body: { match: '/admin', mode: 'close' } });
    expect((await call(cp, 'GET', '/admin/faults')).body).toHaveLength(2);
    const hb = () => call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', { body: HB });
    expect((await hb()).status).toBe(500);
    expect((await hb()).status).toBe(500);
    expect((await hb()).status).toBe(204);
    expect(cp.store.getTaskInstance('ti-1')!.heartbeats).toBe(1);
    expect((await call(cp, 'DELETE', '/admin/faults')).status).toBe(204);
    expect((await call(cp, 'GET', '/admin/faults')).body).toEqual([]);
    for (const body of [{ match: 'nope', mode: '500' }, { match: 'any', mode: 'explode' }, { match: 'any', mode: 'hang', count: 0 }]) {
      expect((await call(cp, 'POST', '/admin/faults', { body })).status).toBe(422);
    }
  }));

  test('close drops the connection; a path prefix matches', () => withControlPlane(async (cp) => {
    cp.store.addFault({ match: '/execution/variables', mode: 'close', count: 1 });
    await expect(call(cp, 'GET', '/execution/variables/k')).rejects.toThrow(/fetch failed/);
    expect((await call(cp, 'GET', '/execution/variables/k')).status).toBe(404);
  }));

  test('hang holds the request until close(), which ends it and leaves nothing', async () => {
    const baseline = await settledBaseline();
    const cp = await startReferenceControlPlane({ token: TOKEN });
    cp.store.createTaskInstance({ id: 'ti-1' });
    cp.store.addFault({ match: 'start', mode: 'hang', count: 1 });
    const held = once(cp.store, 'fault');
    const pending = call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN });
    const settled = pending.then(() => 'answered', () => 'dropped');
    expect(await held).toEqual([{ method: 'PATCH', path: '/execution/task-instances/ti-1/run', mode: 'hang' }]);
    expect(cp.store.getTaskInstance('ti-1')!.calls).toMatchObject([{ status: null, fault: 'hang' }]);
    await cp.close();
    await cp.close();
    expect(await settled).toBe('dropped');
    expect(cp.store.getTaskInstance('ti-1')!.state).toBe('queued');
    await expectBaseline(baseline);
  });
});

describe('reference control plane: hold and delete', () => {
  test('hold keeps calls waiting until release, then serves them normally', () => withControlPlane(async (cp) => {
    cp.store.createTaskInstance({ id: 'ti-1' });
    expect((await call(cp, 'POST', '/admin/faults', { body: { match: 'start', mode: 'hold', count: 1 } })).status).toBe(201);
    const held = once(cp.store, 'fault');
    const pending = call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN });
    expect(await held).toEqual([{ method: 'PATCH', path: '/execution/task-instances/ti-1/run', mode: 'hold' }]);
    // While it is held the server serves other calls, and the store changes under it.
    expect(cp.store.faults.held).toBe(1);
    expect((await call(cp, 'PATCH', '/admin/task-instances/ti-1', { body: { state: 'success' } })).status).toBe(200);
    expect((await call(cp, 'POST', '/admin/faults/release')).body).toEqual({ released: 1 });
    // Served against the state at release: no longer startable.
    expect(await pending).toMatchObject({ status: 409, body: { detail: { reason: 'invalid_state', previous_state: 'success' } } });
    expect(cp.store.getTaskInstance('ti-1')!.calls).toMatchObject([{ status: 409, fault: 'hold' }]);
    expect((await call(cp, 'POST', '/admin/faults/release')).body).toEqual({ released: 0 });
  }));

  test('close() drops a held call unserved and leaves nothing', async () => {
    const baseline = await settledBaseline();
    const cp = await startReferenceControlPlane({ token: TOKEN });
    cp.store.createTaskInstance({ id: 'ti-1' });
    cp.store.addFault({ match: 'start', mode: 'hold' });
    const held = once(cp.store, 'fault');
    const settled = call(cp, 'PATCH', '/execution/task-instances/ti-1/run', { body: RUN }).then(() => 'answered', () => 'dropped');
    await held;
    await cp.close();
    expect(await settled).toBe('dropped');
    expect(cp.store.getTaskInstance('ti-1')!.state).toBe('queued');
    await expectBaseline(baseline);
  });

  test('deleting a task instance: 204, then 404 on heartbeats and on the admin API', () => withControlPlane(async (cp) => {
    await runningTi(cp);
    expect((await call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', { body: HB })).status).toBe(204);
    expect((await call(cp, 'DELETE', '/admin/task-instances/ti-1')).status).toBe(204);
    expect((await call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', { body: HB })).body).toEqual({ detail: { reason: 'not_found', message: 'Task Instance not found' } });
    expect((await call(cp, 'PUT', '/execution/task-instances/ti-1/heartbeat', { body: HB })).status).toBe(404);
    expect((await call(cp, 'DELETE', '/admin/task-instances/ti-1')).status).toBe(404);
    expect((await call(cp, 'GET', '/admin/task-instances/ti-1')).status).toBe(404);
    expect(cp.store.deleteTaskInstance('ti-1')).toBe(false);
  }));
});

describe('warden control-plane command', () => {
  test('prints URL and token as JSON, serves, and stops on SIGTERM leaving no listener', async () => {
    const baseline = await settledBaseline();
    const listeners = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const firstLine = once(stdout, 'data');
    const exit = runControlPlaneCommand(['--port', '0', '--token', 'cli-token'], { stdout, stderr });
    const info = JSON.parse(String((await firstLine)[0]));
    expect(info).toMatchObject({ token: 'cli-token', pid: process.pid, url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });
    expect(String(stderr.read())).toContain(`listening on ${info.url}`);
    const health = await fetch(`${info.url}/execution/health`);
    expect(await health.json()).toEqual({ status: 'healthy' });
    // Call the command's own SIGTERM listener, as the signal would, without signalling the test runner.
    const onTerm = process.listeners('SIGTERM').at(-1)!;
    onTerm('SIGTERM');
    expect(await exit).toBe(0);
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(listeners);
    await expectBaseline(baseline);
  });

  test('generates a token, stops on its signal option, and refuses bad usage', async () => {
    const baseline = await settledBaseline();
    const stdout = new PassThrough();
    const controller = new AbortController();
    const firstLine = once(stdout, 'data');
    const exit = runControlPlaneCommand([], { stdout, stderr: new PassThrough(), signal: controller.signal });
    const info = JSON.parse(String((await firstLine)[0]));
    expect(info.token).toMatch(/^[\w-]{20,}$/);
    controller.abort();
    expect(await exit).toBe(0);
    await expect(runControlPlaneCommand(['--port', '70000'])).rejects.toThrow(/--port/);
    await expect(runControlPlaneCommand(['--port', 'x'])).rejects.toThrow(/--port/);
    await expect(runControlPlaneCommand(['extra'])).rejects.toThrow(/takes no arguments/);
    await expectBaseline(baseline);
  });
});
