/**
 * The two ends of a task's life against the real reference control plane: a start the server
 * refuses (or never answers) ends the task before any user code ran, and the terminal state the
 * task reports over comms reaches the server once, is replayed once when its call failed, and
 * bounds the rest of the task's life (overtime).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { guardLeaks } from '../helpers/leaks.js';
import { waitFor } from '../helpers/tasks.js';
import { cpTask, heartbeatCalls, lines, recordAt, servesAnother, startTi, stateCalls, withRig, type Rig } from './control-plane-harness.js';

const { env } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-cp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a refused start ends the task before user code runs', () => {
  // The start is held at the server until the child is waiting in connect(), so each case proves
  // the gate held a live child back, not that the child was too slow to get there.
  const refusals: Array<[string, (rig: Rig, tiId: string) => Promise<void>, RegExp]> = [
    ['409: the task instance is no longer startable', async (rig, id) => {
      expect((await rig.admin('PATCH', `task-instances/${id}`, { state: 'success' })).status).toBe(200);
      await rig.admin('POST', 'faults/release');
    }, /HTTP 409/],
    ['404: the task instance is unknown', async (rig, id) => {
      expect((await rig.admin('DELETE', `task-instances/${id}`)).status).toBe(204);
      await rig.admin('POST', 'faults/release');
    }, /HTTP 404/],
    ['unreachable after its retries (connection refused)', (rig) => rig.stopServer(), /no answer after 3 attempts/],
  ];

  it.each(refusals)('%s: state failed, ERR_START_REFUSED, the child never got past connect()', async (name, refuse, why) => {
    await withRig({ startRetries: 2, minRetryMs: 20 }, async (rig) => {
      const marker = join(dir, `marker-${name.slice(0, 3)}`);
      rig.store.addFault({ match: 'start', mode: 'hold' });
      const held = new Promise((resolve) => rig.store.once('fault', resolve));
      const { task, tiId, out } = startTi(rig, cpTask('gate', env(), [marker]));
      await Promise.all([held, waitFor(task, 'connecting')]);
      await refuse(rig, tiId);
      const r = await task.result;
      expect(r).toMatchObject({ state: 'failed', reason: 'spawn-failed', survivors: 0, error: { code: 'ERR_START_REFUSED' } });
      expect(r.error!.message).toMatch(why);
      expect(r.error!.message).toMatch(/before any user code ran/);
      expect(r.controlPlane).toMatchObject({ startAccepted: false, heartbeats: 0, finalStateReported: null });
      // The child was killed waiting for its startup frame: no line after connect(), no marker.
      expect(lines(out())).toEqual([{ event: 'connecting' }]);
      expect(existsSync(marker)).toBe(false);
      expect(r.signal ?? r.status).toBeTruthy();
      expect(heartbeatCalls(rig.callsOf(tiId))).toEqual([]);
      expect(stateCalls(rig.callsOf(tiId))).toEqual([]);
      if (name.startsWith('unreachable')) await rig.restartServer();
      await servesAnother(rig, env());
    });
  });

  it('an accepted start lets the same child through: the marker appears (the refusal specs can fail)', async () => {
    await withRig({}, async (rig) => {
      const marker = join(dir, 'marker-accepted');
      const { task, out } = startTi(rig, { ...cpTask('gate', env(), [marker]), stdin: true });
      await waitFor(task, 'connected');
      task.end();
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0 });
      expect(existsSync(marker)).toBe(true);
      const startup = lines(out()).find((l) => l.event === 'connected').startup;
      expect(startup).toMatchObject({ type: 'StartupDetails', tiId: expect.any(String), runContext: { dag_run: { dag_id: 'dag', run_id: 'run' } } });
    });
  });
});

describe('a task that does not wait for its start', () => {
  it('exits 0 before the start is answered: the start still lands, then the final state success', async () => {
    await withRig({}, async (rig) => {
      rig.store.addFault({ match: 'start', mode: 'hold' });
      const held = new Promise((resolve) => rig.store.once('fault', resolve));
      const { task, tiId } = startTi(rig, { command: 'bash', args: ['-c', 'exit 0'], env: env() });
      await Promise.all([held, new Promise((resolve) => task.once('exit', resolve))]);
      rig.store.releaseHeld();
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0 });
      expect(r.controlPlane).toMatchObject({ startAccepted: true, heartbeats: 0, finalStateReported: true });
      expect(rig.callsOf(tiId).map((c) => `${c.method} ${c.path.split('/').at(-1)} ${c.status}`)).toEqual(['PATCH run 200', 'PATCH state 204']);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ starts: 1, state: 'success', state_reports: 1 });
    });
  });
});

describe('terminal states reported over comms', () => {
  it('SucceedTask then exit 0: state success, reported exactly once, heartbeats stop', async () => {
    await withRig({}, async (rig) => {
      const { task, tiId, out } = startTi(rig, cpTask('succeed', env()));
      const r = await task.result;
      expect(lines(out())).toContainEqual({ succeed: { ok: { ok: true } } });
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0, survivors: 0 });
      expect(r.controlPlane).toMatchObject({ startAccepted: true, reportedState: 'success', finalStateReported: true, finalStateError: null });
      const calls = rig.callsOf(tiId);
      expect(stateCalls(calls)).toMatchObject([{ status: 204 }]);
      expect(heartbeatCalls(calls).filter((c) => c.t > stateCalls(calls)[0]!.t)).toEqual([]);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'success', state_reports: 1, final_state: { state: 'success' } });
    });
  });

  it('a task that exits while its SucceedTask call is still in flight: the state is still sent once', async () => {
    await withRig({}, async (rig) => {
      rig.store.addFault({ match: 'state', mode: 'hold' });
      const held = new Promise((resolve) => rig.store.once('fault', resolve));
      const { task, tiId, out } = startTi(rig, cpTask('succeed-exit', env(), ['100']));
      const exited = new Promise((resolve) => task.once('exit', resolve));
      await Promise.all([held, exited]);
      // The task gave up waiting for the answer and exited 0 while its state call was held.
      expect(lines(out())).toContainEqual({ succeed: { error: expect.objectContaining({ code: 'ERR_REQUEST_TIMEOUT' }) } });
      rig.store.releaseHeld();
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0 });
      expect(r.controlPlane).toMatchObject({ reportedState: 'success', finalStateReported: true });
      expect(stateCalls(rig.callsOf(tiId))).toMatchObject([{ status: 204, fault: 'hold' }]);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'success', state_reports: 1 });
    });
  });

  // The client retries a state call itself (startRetries); "fails" means every attempt failed.
  it('a terminal-state call that fails (every attempt): replayed once at the end, and it lands', async () => {
    await withRig({ startRetries: 1 }, async (rig) => {
      rig.store.addFault({ match: 'state', mode: '500', count: 2 });
      const { task, tiId, out } = startTi(rig, cpTask('succeed', env()));
      const r = await task.result;
      // The task's own request was answered: the failure is warden's to handle, not the task's.
      expect(lines(out())).toContainEqual({ succeed: { ok: { ok: true } } });
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0 });
      expect(r.controlPlane).toMatchObject({ reportedState: 'success', finalStateReported: true, finalStateError: null });
      expect(stateCalls(rig.callsOf(tiId)).map((c) => c.status)).toEqual([500, 500, 204]);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'success', state_reports: 1 });
      await servesAnother(rig, env());
    });
  });

  it('a terminal-state call whose replay fails too: finalStateReported false, with the error', async () => {
    await withRig({ startRetries: 1 }, async (rig) => {
      rig.store.addFault({ match: 'state', mode: '500', count: 4 });
      const { task, tiId } = startTi(rig, cpTask('succeed', env()));
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited' });
      expect(r.controlPlane).toMatchObject({ reportedState: 'success', finalStateReported: false, finalStateError: expect.stringMatching(/HTTP 500/) });
      expect(stateCalls(rig.callsOf(tiId)).map((c) => c.status)).toEqual([500, 500, 500, 500]);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'running', state_reports: 0 });
      await servesAnother(rig, env());
    });
  });

  it('a task that reports success but keeps running: ended after overtimeMs (overtime), still success', async () => {
    const overtimeMs = 300;
    await withRig({ overtimeMs }, async (rig) => {
      const { task, tiId } = startTi(rig, { ...cpTask('succeed-linger', env()), graceMs: 200 });
      const reported = rig.nextCall((c) => c.tiId === tiId && c.path.endsWith('/state'));
      const overtime = recordAt(task, /still running/);
      const r = await task.result;
      const late = (await overtime) - (await reported).t;
      expect(late).toBeGreaterThanOrEqual(overtimeMs - 50);
      expect(late).toBeLessThan(overtimeMs + 1000);
      expect(r).toMatchObject({ state: 'success', reason: 'overtime', survivors: 0 });
      expect(r.controlPlane).toMatchObject({ reportedState: 'success', finalStateReported: true });
      const calls = rig.callsOf(tiId);
      expect(stateCalls(calls)).toHaveLength(1);
      expect(heartbeatCalls(calls).filter((c) => c.t > stateCalls(calls)[0]!.t)).toEqual([]);
      await servesAnother(rig, env());
    });
  });
});
