/**
 * What a task sees of the control plane through comms, against the real reference server: the
 * default handlers proxy its requests, an executor's handler replaces a default, and the bearer
 * token reaches neither the task's processes' environments nor any frame it receives.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { guardLeaks, liveWithToken, TOKEN_NAME } from '../helpers/leaks.js';
import { waitFor } from '../helpers/tasks.js';
import { cpTask, lines, servesAnother, startTi, withRig, type CallEvent, type Rig } from './control-plane-harness.js';

const { env, token: leakToken } = guardLeaks();

function seed(rig: Rig): void {
  rig.store.putVariable('greeting', 'hello from the control plane');
  rig.store.putConnection({ conn_id: 'db', conn_type: 'postgres', host: 'db.example', login: 'app', password: 'conn-password-1', port: 5432 });
}

const nonTi = (rig: Rig): CallEvent[] => rig.calls.filter((c) => c.tiId === undefined);

describe('the bearer token never reaches the task', () => {
  it('is in no environment of the task or its grandchild, and in no frame the task receives', async () => {
    await withRig({}, async (rig) => {
      seed(rig);
      // Even an executor that leaves WARDEN_TOKEN in the spec's env does not pass it on.
      const { task, out } = startTi(rig, { ...cpTask('dump', { ...env(), WARDEN_TOKEN: rig.token }), stdin: true });
      await waitFor(task, '"event":"ready"');
      const printed = lines(out());
      const grandchild = printed.find((l) => l.grandchild)!.grandchild as number;
      // Every live process of this test (found by the leak guard's own environment token).
      const pids = liveWithToken(Buffer.from(`${TOKEN_NAME}=${leakToken()}`));
      expect(pids).toContain(task.pid);
      expect(pids).toContain(grandchild);
      for (const pid of pids) {
        const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
        expect(environ, `environment of ${pid}`).toContain('WARDEN_COMMS_FD=4');
        expect(environ.includes(rig.token), `token in the environment of ${pid}`).toBe(false);
        expect(environ.split('\0').some((e) => e.startsWith('WARDEN_TOKEN=')), `WARDEN_TOKEN in ${pid}`).toBe(false);
      }
      // The frames: the startup frame and every response, as the task decoded them.
      const frames = printed.filter((l) => l.frame);
      expect(frames.map((f) => f.frame)).toEqual(['startup', 'GetVariable', 'GetConnection', 'GetVariable']);
      expect(frames[0].body).toMatchObject({ type: 'StartupDetails', runContext: { dag_run: { dag_id: 'dag' } } });
      expect(frames[1].body).toEqual({ ok: { key: 'greeting', value: 'hello from the control plane' } });
      expect(frames[2].body.ok).toMatchObject({ conn_id: 'db', password: 'conn-password-1' });
      expect(frames[3].body.error.code).toBe('ERR_NOT_FOUND');
      expect(out()).not.toContain(rig.token);
      // ... while every one of those calls did carry it to the server (they were answered, not 401).
      expect(nonTi(rig).map((c) => c.status)).toEqual([200, 200, 404]);
      task.end();
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
    });
  });
});

describe('default handlers proxy to the control plane', () => {
  it('GetVariable, PutVariable, GetConnection, SetXCom and GetXCom go through the server', async () => {
    await withRig({}, async (rig) => {
      seed(rig);
      const { task, out } = startTi(rig, cpTask('proxy', env()));
      const logged: string[] = [];
      task.on('log', (rec) => logged.push(JSON.stringify(rec)));
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0 });
      const { proxy } = lines(out()).find((l) => l.proxy);
      expect(proxy).toEqual({
        getVariable: { ok: { key: 'greeting', value: 'hello from the control plane' } },
        missingVariable: { error: expect.objectContaining({ code: 'ERR_NOT_FOUND' }) },
        putVariable: { ok: { ok: true } },
        getConnection: { ok: { conn_id: 'db', conn_type: 'postgres', host: 'db.example', schema: null, login: 'app', password: 'conn-password-1', port: 5432, extra: null } },
        setXCom: { ok: { ok: true } },
        getXCom: { ok: { key: 'answer', value: { n: 42 } } },
      });
      // The server saw each of them, in order, with the task's own XCom address.
      expect(nonTi(rig).map((c) => `${c.method} ${c.path} ${c.status}`)).toEqual([
        'GET /execution/variables/greeting 200',
        'GET /execution/variables/no-such-variable 404',
        'PUT /execution/variables/written_by_task 201',
        'GET /execution/connections/db 200',
        'POST /execution/xcoms/dag/run/step/answer 201',
        'GET /execution/xcoms/dag/run/step/answer 200',
      ]);
      expect(rig.store.getVariable('written_by_task')).toEqual({ value: 'hello back', description: null });
      expect(rig.store.getXCom({ dag_id: 'dag', run_id: 'run', task_id: 'step', key: 'answer' })).toEqual({ found: true, value: { n: 42 } });
      // The connection's password, fetched through the default handler, is masked in the task's log.
      const proxyRecord = logged.find((l) => l.includes('getConnection'))!;
      expect(proxyRecord).toContain('***');
      expect(logged.join('\n')).not.toContain('conn-password-1');
    });
  });

  it("an executor's supervisor.handle('GetVariable') replaces the default; the others still proxy", async () => {
    await withRig({}, async (rig) => {
      seed(rig);
      const seen: Array<{ key: unknown; task: string }> = [];
      rig.sup.handle('GetVariable', async (body, ctx) => {
        seen.push({ key: body.key, task: ctx.context.task.id });
        return { key: body.key, value: `executor's ${String(body.key)}` };
      });
      const { task, out } = startTi(rig, cpTask('proxy', env()));
      const r = await task.result;
      expect(r.state).toBe('success');
      const { proxy } = lines(out()).find((l) => l.proxy);
      expect(proxy.getVariable).toEqual({ ok: { key: 'greeting', value: "executor's greeting" } });
      expect(proxy.missingVariable).toEqual({ ok: { key: 'no-such-variable', value: "executor's no-such-variable" } });
      expect(proxy.getConnection.ok.conn_id).toBe('db');
      expect(seen).toEqual([{ key: 'greeting', task: task.id }, { key: 'no-such-variable', task: task.id }]);
      // No variable read reached the server; the rest did.
      const paths = nonTi(rig).map((c) => `${c.method} ${c.path}`);
      expect(paths.filter((p) => p.startsWith('GET /execution/variables'))).toEqual([]);
      expect(paths).toContain('GET /execution/connections/db');
      expect(paths).toContain('PUT /execution/variables/written_by_task');
      await servesAnother(rig, env());
    });
  });
});
