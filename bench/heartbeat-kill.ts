/**
 * heartbeat-kill: the seed's story, timed. A 25-process tree with 2 double-forked daemons
 * (lib/proc-tree.ts, static) runs as a task instance of the reference control plane (in this
 * process, 127.0.0.1:0), heartbeating every HEARTBEAT_MS (shortened from the 5000 default). The
 * bench forces the task instance to `failed`, as a user's PATCH or a scheduler reset would; the
 * next heartbeat gets 409. Measured from that 409 answer (the server's `call` event, right after
 * it wrote the response) until every member recorded at `ready` is dead (zombie or reaped),
 * polling /proc once per event-loop turn:
 *   warden      a Supervisor with the control plane; the task's graceMs is 0 (SIGKILL at once),
 *               as the peer's SIGKILL, so both measure finding and killing, not a grace period
 *   tree-kill   the tree started raw (detached); a minimal supervisor heartbeats the same server
 *               at the same interval with the same client and, on the 404/409/410 answer, calls
 *               tree-kill 1.2.2 with SIGKILL on the root
 * Survivors = live processes carrying the trial's mark 100 ms after the method finished (warden:
 * after task.result); they are then killed by mark so no trial leaks into the next.
 * Goals: warden leaves 0 survivors; warden's median 409 -> gone is no slower than tree-kill's.
 */
import { hostname, userInfo } from 'node:os';
import treeKill from 'tree-kill';
import { ControlPlaneClient, ControlPlaneError, startReferenceControlPlane, Supervisor, type ReferenceControlPlane, type Task, type TaskResult } from '../lib/index.js';
import { findMarked, killMarked, markedEnv, newMark } from './lib/marker.js';
import { readyWatch, recordMembers, spawnRawTree, treeArgs, TREE_SIZE, waitGone } from './lib/proc-tree.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, median, now, r3, sleep } from './lib/timing.js';

const HEARTBEAT_MS = 100;
const SETTLE_MS = 100;

interface Trial {
  method: 'warden' | 'tree-kill';
  members: number;
  allGone: boolean;
  /** 409 answer -> last recorded member seen dead (or the last one the method killed). */
  goneMs: number;
  /** 409 answer -> the client side acted on it (warden: its record; peer: tree-kill called). */
  noticedMs: number;
  /** warden only: 409 answer -> task.result. */
  resultMs?: number;
  survivors: number;
  leaked: number;
  warden?: { reason: string; state: string; survivors: number; escapees: number; signalled: number; stopStatus: number | null };
}

type CallEvent = { tiId?: string; path: string; status: number | null };

/** Resolves with now() at the first `call` event that matches; the stamp is taken inside the emit. */
function callAt(cp: ReferenceControlPlane, match: (c: CallEvent) => boolean): Promise<number> {
  return new Promise((resolve) => {
    const on = (c: CallEvent): void => {
      if (!match(c)) return;
      const t = now();
      cp.store.off('call', on);
      resolve(t);
    };
    cp.store.on('call', on);
  });
}

let tiSeq = 0;
function newTi(cp: ReferenceControlPlane): string {
  const id = `hb-kill-${++tiSeq}`;
  cp.store.createTaskInstance({ id, dag_id: 'bench', run_id: 'heartbeat-kill', task_id: 'tree' });
  return id;
}

async function wardenTrial(cp: ReferenceControlPlane, sup: Supervisor): Promise<Trial> {
  const mark = newMark('hbk-warden');
  const tiId = newTi(cp);
  const accepted = callAt(cp, (c) => c.tiId === tiId && c.path.endsWith('/run') && c.status === 200);
  const task: Task = sup.start({ command: 'bash', args: treeArgs('static'), env: markedEnv(mark), graceMs: 0, ti: { id: tiId } });
  const watch = readyWatch();
  task.on('stdout', watch.feed);
  try {
    await Promise.race([Promise.all([watch.ready, accepted]), task.result.then((r) => Promise.reject(new Error(`the tree task ended before ready: ${r.reason} ${r.error?.message ?? ''}`)))]);
  } finally {
    watch.stop();
    task.off('stdout', watch.feed);
  }
  const { members } = await recordMembers(mark);
  let noticed = NaN;
  const onRecord = (r: { event: string }): void => {
    if (Number.isNaN(noticed) && /heartbeat answered 40[49]|heartbeat answered 410/.test(r.event)) noticed = now();
  };
  task.on('record', onRecord);
  const answered = callAt(cp, (c) => c.tiId === tiId && c.status === 409);
  cp.store.forceState(tiId, 'failed');
  const t0 = await answered;
  let result: TaskResult | undefined;
  let resultAt = NaN;
  const settled = task.result.then((r) => {
    resultAt = now();
    result = r;
  });
  const gone = await waitGone(members, t0, () => result !== undefined);
  await settled;
  task.off('record', onRecord);
  await sleep(SETTLE_MS);
  const survivors = findMarked(mark).length;
  const leaked = await killMarked(mark);
  const r = result!;
  return {
    method: 'warden',
    members: members.length,
    allGone: gone.allGone,
    goneMs: gone.lastDeathMs,
    noticedMs: noticed - t0,
    resultMs: resultAt - t0,
    survivors,
    leaked,
    warden: { reason: r.reason, state: r.state, survivors: r.survivors, escapees: r.escapees, signalled: r.signalled, stopStatus: r.controlPlane?.stopStatus ?? null },
  };
}

/** A supervisor as a script would write one: heartbeat on a timer, tree-kill the root on a stop answer. */
async function treeKillTrial(cp: ReferenceControlPlane, client: ControlPlaneClient): Promise<Trial> {
  const mark = newMark('hbk-treekill');
  const tiId = newTi(cp);
  const tree = await spawnRawTree('static', mark);
  const host = hostname();
  await client.startTask(tiId, { hostname: host, unixname: userInfo().username, pid: tree.pid, start_date: new Date() });
  const { members } = await recordMembers(mark);
  let finished = false;
  let noticed = NaN;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const beat = (): void => {
    timer = setTimeout(() => {
      client.heartbeat(tiId, { hostname: host, pid: tree.pid }).then(
        () => {
          if (!stopped) beat();
        },
        (err: unknown) => {
          if (stopped) return;
          if (err instanceof ControlPlaneError && err.serverSaysStop) {
            stopped = true;
            noticed = now();
            treeKill(tree.pid, 'SIGKILL', () => (finished = true));
            return;
          }
          beat();
        },
      );
    }, HEARTBEAT_MS);
  };
  beat();
  const answered = callAt(cp, (c) => c.tiId === tiId && c.status === 409);
  cp.store.forceState(tiId, 'failed');
  const t0 = await answered;
  const gone = await waitGone(members, t0, () => finished);
  stopped = true;
  clearTimeout(timer);
  await sleep(SETTLE_MS);
  const survivors = findMarked(mark).length;
  const leaked = await killMarked(mark);
  await tree.closed;
  return { method: 'tree-kill', members: members.length, allGone: gone.allGone, goneMs: gone.lastDeathMs, noticedMs: noticed - t0, survivors, leaked };
}

export async function runHeartbeatKill(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const trials = quick ? 5 : 20;
  const cp = await startReferenceControlPlane();
  const sup = new Supervisor({ controlPlane: { url: cp.url, token: cp.token, heartbeatIntervalMs: HEARTBEAT_MS } });
  const client = new ControlPlaneClient({ baseUrl: cp.url, token: cp.token, requestTimeoutMs: Math.floor((HEARTBEAT_MS * 3) / 4) });
  const wardenName = `warden (${sup.containment})`;
  const runners = [
    { name: 'warden', run: () => wardenTrial(cp, sup) },
    { name: 'tree-kill', run: () => treeKillTrial(cp, client) },
  ];
  const all: Trial[] = [];
  try {
    for (let i = 0; i < trials; i++) for (const m of balancedOrder(runners, i)) all.push(await m.run());
  } finally {
    await sup.close();
    await cp.close();
  }

  const of = (m: Trial['method']): Trial[] => all.filter((t) => t.method === m);
  const w = of('warden');
  const p = of('tree-kill');
  const gone = (ts: Trial[]): number[] => ts.map((t) => t.goneMs);
  const detail = (ts: Trial[]): string =>
    `max ${max(gone(ts)).toFixed(1)}, all recorded gone in ${ts.filter((t) => t.allGone).length}/${ts.length}, members ${median(ts.map((t) => t.members))}, n ${ts.length}`;
  const rows: Row[] = [
    row({ name: `409 -> tree gone: ${wardenName}`, value: median(gone(w)), unit: 'ms', detail: detail(w) }),
    row({
      name: '409 -> tree gone: tree-kill SIGKILL (peer)',
      value: median(gone(p)),
      unit: 'ms',
      baseline: { name: wardenName, value: median(gone(w)) },
      goal: { of: 'ratio', op: '>=', target: 1 },
      detail: `${detail(p)}; for tree-kill "gone" is the last member it did kill`,
    }),
    row({ name: `409 -> verdict acted on: ${wardenName}`, value: median(w.map((t) => t.noticedMs)), unit: 'ms', detail: `max ${max(w.map((t) => t.noticedMs)).toFixed(1)}` }),
    row({ name: '409 -> verdict acted on: tree-kill peer', value: median(p.map((t) => t.noticedMs)), unit: 'ms', detail: `max ${max(p.map((t) => t.noticedMs)).toFixed(1)}` }),
    row({ name: `409 -> task.result: ${wardenName}`, value: median(w.map((t) => t.resultMs ?? NaN)), unit: 'ms', detail: `max ${max(w.map((t) => t.resultMs ?? NaN)).toFixed(1)}` }),
    row({ name: `survivors: ${wardenName}`, value: max(w.map((t) => t.survivors)), unit: 'procs (max)', goal: { of: 'value', op: '<=', target: 0 }, detail: `per trial [${w.map((t) => t.survivors).join(' ')}]` }),
    row({ name: 'survivors: tree-kill SIGKILL', value: max(p.map((t) => t.survivors)), unit: 'procs (max)', detail: `median ${median(p.map((t) => t.survivors))}, per trial [${p.map((t) => t.survivors).join(' ')}]` }),
  ];
  const notes: string[] = [`heartbeat interval ${HEARTBEAT_MS} ms (default 5000); warden graceMs 0; tree of ${TREE_SIZE} with 2 double-forked daemons`];
  const odd = all.filter((t) => t.members !== TREE_SIZE);
  if (odd.length) notes.push(`${odd.length} trial(s) recorded a member count other than ${TREE_SIZE}: ${[...new Set(odd.map((t) => t.members))].join(', ')}`);
  const wrong = w.filter((t) => t.warden!.reason !== 'server-terminated' || t.warden!.state !== 'server-terminated' || t.warden!.stopStatus !== 409 || t.warden!.survivors !== 0);
  if (wrong.length) notes.push(`warden: ${wrong.length} trial(s) did not end server-terminated by a 409 with 0 survivors in task.result`);
  const disagree = w.filter((t) => t.warden!.survivors !== t.survivors);
  if (disagree.length) notes.push(`warden: task.result.survivors disagreed with the bench's marker count in ${disagree.length} trial(s)`);
  notes.push(`warden escapees median ${median(w.map((t) => t.warden!.escapees))}, signalled median ${median(w.map((t) => t.warden!.signalled))}`);
  const leaked = all.reduce((n, t) => n + t.leaked, 0);
  if (leaked) notes.push(`${leaked} marked process(es) could not be killed by the clean-up`);
  return {
    name: 'heartbeat-kill',
    rows,
    notes,
    durationMs: now() - t0,
    raw: all.map((t) => ({ ...t, goneMs: r3(t.goneMs), noticedMs: r3(t.noticedMs), ...(t.resultMs !== undefined ? { resultMs: r3(t.resultMs) } : {}) })),
  };
}
