import { fileURLToPath } from 'node:url';
import { startReferenceControlPlane } from '../control-plane/reference-server.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { at, cookieSurvivors, out, printTeardown, printTree } from './demo-print.js';
import { DEMO_TREE } from './demo-task.js';

const demoTask = fileURLToPath(new URL('./demo-task.js', import.meta.url));

/**
 * Part 1, the seed's story (Airflow PR 65738): a running task instance is forced to `failed`
 * behind the task's back; its next heartbeat gets 409 and its whole tree, escaped daemon
 * included, must die while the supervisor stays healthy.
 */
async function seedStory(): Promise<boolean> {
  out('Part 1: the control plane says the task is no longer running (HTTP 409)');
  const cp = await startReferenceControlPlane();
  const { store } = cp;
  store.createTaskInstance({ id: 'ti-demo', dag_id: 'demo_dag', run_id: 'manual__demo', task_id: 'build_tree' });
  store.putVariable('greeting', 'hello from the control plane');
  store.on('call', (c: { method: string; path: string; status: number | null }) => {
    if (c.path.includes('/heartbeat')) at(`control plane: heartbeat answered ${c.status}`);
    else if (c.path.endsWith('/run')) at(`control plane: start answered ${c.status}`);
    else if (c.path.includes('/variables/')) at(`control plane: ${c.method} ${c.path.replace(/^.*\/execution\//, '')} answered ${c.status}`);
    else if (c.path.endsWith('/state')) at(`control plane: state call answered ${c.status}`);
  });
  const supervisor = new Supervisor({ controlPlane: { url: cp.url, token: cp.token, heartbeatIntervalMs: 400 } });
  supervisor.on('record', (r) => {
    if (/^(start accepted|heartbeat answered|sent |escalated|the leader exited)/.test(r.event)) at(`warden: ${r.event}`);
  });
  const task = supervisor.start({
    id: 'seed-story',
    command: process.execPath,
    args: [demoTask],
    ti: { id: 'ti-demo', dagId: 'demo_dag', runId: 'manual__demo', taskId: 'build_tree' },
    graceMs: 1000,
  });
  task.on('spawn', (s) => at(`warden: started pid ${s.pid} in its own process group; containment ${s.containment}`));
  task.on('log', (r) => {
    if (r.logger === 'task') at(`task log: ${r.event} ${JSON.stringify({ key: r.key, value: r.value })}`);
  });
  let forced = false;
  task.on('stdout', (chunk) => {
    if (forced || !chunk.toString().includes('ready')) return;
    forced = true;
    printTree(task);
    task.timer(600, () => {
      store.forceState('ti-demo', 'failed');
      at('admin: task instance forced to failed (what a scheduler reset or a REST PATCH does)');
    });
  });
  const result = await task.result;
  printTeardown(result);
  const left = cookieSurvivors(task);
  out(`              final state ${result.state}; independent /proc scan for the task's cookie: ${left} live process(es)`);
  // The supervisor is still healthy: it runs another task at once.
  const next = await supervisor.run({ command: 'true' });
  out(`              the supervisor goes on: the next task ended ${next.state}`);
  await supervisor.close();
  await cp.close();
  return left === 0 && result.survivors === 0 && result.state === 'server-terminated' && next.state === 'success';
}

/** Part 2: the same kind of tree, ignoring SIGTERM, ended by warden's own timeout. */
async function timeoutStory(): Promise<boolean> {
  out('');
  out("Part 2: the same kind of tree ended by warden's timeout (1500 ms, grace 800 ms)");
  const supervisor = new Supervisor();
  const task = supervisor.start({ id: 'timeout-story', command: 'bash', args: ['-c', DEMO_TREE], timeoutMs: 1500, graceMs: 800 });
  task.on('stdout', (chunk) => {
    if (chunk.toString().includes('ready')) printTree(task);
  });
  const result = await task.result;
  printTeardown(result);
  const left = cookieSurvivors(task);
  out(`              independent /proc scan for the task's cookie: ${left} live process(es)`);
  await supervisor.close();
  return left === 0 && result.survivors === 0 && result.reason === 'timeout';
}

/** `npm start`. Exits 0 when both stories end with nothing left running. */
export async function runDemo(_argv: readonly string[]): Promise<number> {
  out('warden demo: no orphans, no hangs, nothing left behind.');
  out('');
  const ok1 = await seedStory();
  const ok2 = await timeoutStory();
  out('');
  out(ok1 && ok2 ? 'demo done: every process of both tasks is gone.' : 'demo FAILED: something was left behind (see above).');
  return ok1 && ok2 ? 0 : 1;
}
