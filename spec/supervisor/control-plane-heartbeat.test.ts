/**
 * Heartbeats against the real reference control plane: the server's 404/409/410 ends the whole
 * tree (`server-terminated`, no state call), a failing control plane is tolerated up to
 * `maxFailedHeartbeats` in a row and then ends the task (`heartbeat-lost`), and a task flooding
 * stdout is torn down as promptly, with every byte it wrote delivered.
 */
import { describe, expect, it } from 'vitest';
import { guardLeaks } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { waitFor } from '../helpers/tasks.js';
import { cpTask, heartbeatCalls, recordAt, servesAnother, startTi, stateCalls, withRig, type Rig } from './control-plane-harness.js';

const { env } = guardLeaks();

/** Starts tree.sh (plain children, a TERM-ignoring subshell, a setsid child, a double-forked daemon) as a task instance. */
async function runningTree(rig: Rig): Promise<ReturnType<typeof startTi>> {
  const accepted = rig.nextCall((c) => c.path.endsWith('/run') && c.status === 200);
  const started = startTi(rig, { command: fixture('tree.sh'), env: env(), graceMs: 200 });
  await Promise.all([waitFor(started.task), accepted]);
  return started;
}

describe('the control plane says stop (404/409/410 on a heartbeat)', () => {
  const verdicts: Array<[number, string, (rig: Rig, tiId: string) => Promise<void>]> = [
    [409, 'the task instance is forced to failed (a user PATCH or a scheduler reset)', async (rig, id) => {
      expect((await rig.admin('PATCH', `task-instances/${id}`, { state: 'failed' })).status).toBe(200);
    }],
    [410, 'the task instance is cleared while running (archived)', async (rig, id) => {
      expect((await rig.admin('PATCH', `task-instances/${id}`, { archived: true })).status).toBe(200);
    }],
    [404, 'the task instance is deleted', async (rig, id) => {
      expect((await rig.admin('DELETE', `task-instances/${id}`)).status).toBe(204);
    }],
  ];

  it.each(verdicts)('%d when %s: the whole tree dies, state server-terminated, no state call', async (status, _why, force) => {
    await withRig({}, async (rig) => {
      const { task, tiId } = await runningTree(rig);
      await rig.nextCall((c) => c.tiId === tiId && c.status === 204); // heartbeats are flowing
      const verdict = rig.nextCall((c) => c.tiId === tiId && c.status === status);
      await force(rig, tiId);
      const answered = await verdict;
      const r = await task.result;
      expect(r).toMatchObject({ state: 'server-terminated', reason: 'server-terminated', survivors: 0, escapees: 2, error: null });
      expect(r.controlPlane).toMatchObject({ startAccepted: true, stopStatus: status, reportedState: null, finalStateReported: null, finalStateError: null });
      expect(r.controlPlane!.heartbeats).toBeGreaterThanOrEqual(1);
      // Nothing after the verdict: no state call ever, and no further heartbeat.
      const mine = rig.callsOf(tiId);
      expect(stateCalls(mine)).toEqual([]);
      expect(heartbeatCalls(mine).filter((c) => c.t > answered.t)).toEqual([]);
      if (status === 409) expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'failed', final_state: null, state_reports: 0 });
      await servesAnother(rig, env());
    });
  });
});

describe('a failing control plane (heartbeat budget)', () => {
  it('500s for a while, never maxFailedHeartbeats in a row: the task survives and ends success', async () => {
    await withRig({ maxFailedHeartbeats: 3 }, async (rig) => {
      rig.store.addFault({ match: 'heartbeat', mode: '500', count: 2 });
      const { task, tiId } = startTi(rig, { ...cpTask('gate', env(), ['/dev/null']), stdin: true });
      const recovered = (n: number) => {
        let seen = 0;
        return rig.nextCall((c) => c.tiId === tiId && c.status === 204 && ++seen === n);
      };
      await recovered(1);
      // A second bout of 2 failures: 4 in all, but never 3 consecutive.
      rig.store.addFault({ match: 'heartbeat', mode: '500', count: 2 });
      await recovered(2);
      task.end(); // the task's stdin ends: it exits 0
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0, survivors: 0 });
      expect(r.controlPlane).toMatchObject({ startAccepted: true, failedHeartbeats: 4, finalStateReported: true, stopStatus: null });
      expect(r.controlPlane!.heartbeats).toBeGreaterThanOrEqual(2);
      expect(heartbeatCalls(rig.callsOf(tiId)).filter((c) => c.status === 500)).toHaveLength(4);
      expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'success', state_reports: 1 });
      await servesAnother(rig, env());
    });
  });

  // The verdict must come from the heartbeat schedule, not from how long a stuck request takes:
  // the first heartbeat goes one interval after the start, and each of the maxFailed failures
  // must be known before the next tick, so the kill starts by interval * (maxFailed + 1).
  const INTERVAL = 200;
  const MAX_FAILED = 3;
  const BOUND = INTERVAL * (MAX_FAILED + 1);
  const MARGIN = 100;

  const budgets: Array<[string, (rig: Rig) => Promise<void>, boolean]> = [
    ['answering 500', async (rig) => void rig.store.addFault({ match: 'heartbeat', mode: '500', count: 1000 }), true],
    ['hanging (no answer: the per-request timeout fires)', async (rig) => void rig.store.addFault({ match: 'heartbeat', mode: 'hang', count: 1000 }), true],
    ['unreachable (connection refused)', (rig) => rig.stopServer(), false],
  ];

  it.each(budgets)('%s until the budget is spent: heartbeat-lost, the whole tree dies within the bound', async (name, fail, reachable) => {
    // requestTimeoutMs far above the interval: a hung heartbeat must still be given up in time.
    // Default retries (5, from 500 ms): the one best-effort state call after heartbeat-lost must
    // not wait through them when the control plane is down.
    const options = { heartbeatIntervalMs: INTERVAL, maxFailedHeartbeats: MAX_FAILED, requestTimeoutMs: 5000, startRetries: 5, minRetryMs: 500 };
    await withRig(options, async (rig) => {
      const { task, tiId } = await runningTree(rig);
      // Start the count at a heartbeat answered 204, then break the control plane.
      const ok = await rig.nextCall((c) => c.tiId === tiId && c.status === 204);
      const failures: string[] = [];
      task.on('record', (rec) => {
        if (/^heartbeat failed/.test(rec.event)) failures.push(rec.event);
      });
      await fail(rig);
      const lost = recordAt(task, /heartbeat-lost/);
      const r = await task.result;
      const settledAt = performance.now();
      const verdictAt = await lost;
      const verdictAfter = verdictAt - ok.t;
      expect(r).toMatchObject({ state: 'failed', reason: 'heartbeat-lost', survivors: 0, escapees: 2 });
      expect(r.controlPlane).toMatchObject({ startAccepted: true, failedHeartbeats: MAX_FAILED, stopStatus: null });
      expect(verdictAfter, `verdict ${verdictAfter.toFixed(0)} ms after the last good heartbeat`).toBeLessThan(BOUND + MARGIN);
      expect(failures).toHaveLength(MAX_FAILED);
      // A hung heartbeat is given up by its own timeout (3/4 of the interval), not by requestTimeoutMs.
      if (name.startsWith('hanging')) for (const f of failures) expect(f).toMatch(/no complete answer within 150 ms/);
      // The result follows the teardown (grace 200 ms), not the control plane's retries.
      expect(settledAt - verdictAt - r.teardown!.durationMs).toBeLessThan(INTERVAL * 2);
      if (reachable) {
        // One best-effort state call reported the final state.
        expect(r.controlPlane).toMatchObject({ finalStateReported: true, finalStateError: null });
        expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'failed', state_reports: 1 });
        rig.store.clearFaults();
      } else {
        expect(r.controlPlane!.finalStateReported).toBe(false);
        expect(r.controlPlane!.finalStateError).toMatch(/no answer/);
        expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'running', state_reports: 0 });
        await rig.restartServer();
      }
      await servesAnother(rig, env());
    });
  });
});

describe('a task flooding stdout while its heartbeat gets 409', () => {
  it('is torn down promptly and every byte it wrote before the end arrives', async () => {
    await withRig({}, async (rig) => {
      const accepted = rig.nextCall((c) => c.path.endsWith('/run') && c.status === 200);
      const { task, tiId, err } = startTi(rig, { ...cpTask('flood', env()), graceMs: 5000 });
      let received = 0;
      let firstLine = -1;
      let head = '';
      let onMiB: () => void = () => {};
      const aMiBIn = new Promise<void>((resolve) => (onMiB = resolve));
      task.on('stdout', (b: Buffer) => {
        received += b.length;
        if (received > 1024 * 1024) onMiB();
        if (firstLine < 0) {
          head += b.toString('latin1', 0, Math.min(b.length, 256));
          const nl = head.indexOf('\n');
          if (nl >= 0) firstLine = nl + 1;
        }
      });
      await accepted;
      await waitFor(task, 'aaaa'); // flooding
      await aMiBIn; // well into it (on a loaded machine the 409 could otherwise come first)
      const verdict = rig.nextCall((c) => c.tiId === tiId && c.status === 409);
      const seen = recordAt(task, /heartbeat answered 409/);
      const during = received;
      rig.store.forceState(tiId, 'failed');
      const answered = await verdict;
      const reacted = await seen;
      const r = await task.result;
      expect(received - during, 'the flood went on while the 409 came').toBeGreaterThan(0);
      // The supervisor's loop is not starved by the flood: the 409 is acted on at once, and the
      // task (which exits on SIGTERM) is gone long before its grace would run out.
      expect(reacted - answered.t).toBeLessThan(500);
      expect(r).toMatchObject({ state: 'server-terminated', reason: 'server-terminated', survivors: 0, exitCode: 0, pipesForceClosed: false });
      expect(r.teardown!.steps.find((s) => s.step === 'grace-wait')).toMatchObject({ detail: 'every member exited' });
      expect(r.teardown!.steps.find((s) => s.step === 'grace-wait')!.durationMs).toBeLessThan(2000);
      // Nothing lost: the bytes received after the first line are exactly what the task wrote.
      const report = JSON.parse(err().trim().split('\n').at(-1)!) as { wrote: number };
      expect(report.wrote).toBeGreaterThan(1024 * 1024);
      expect(received - firstLine).toBe(report.wrote);
      expect(stateCalls(rig.callsOf(tiId))).toEqual([]);
      await servesAnother(rig, env());
    });
  });
});
