/**
 * teardown: a 25-process tree with 2 double-forked daemons (lib/proc-tree.ts), static and with
 * churn, ended by each method in the same run:
 *   warden (cgroup | group)  the tree is a warden task (graceMs: 0); task.terminate('cancelled')
 *   tree-kill SIGKILL        tree-kill 1.2.2 on the detached root
 *   kill(-pgid)              process.kill(-pgid, 'SIGKILL') on the detached root's group
 *   bare /proc scan          one synchronous pass over /proc/<pid>/stat + environ for the trial's
 *                            mark, then SIGKILL the group and every match
 * "gone" = from the call until every member recorded at `ready` is dead (zombie or reaped), by
 * polling /proc/<pid>/stat once per event-loop turn. For a method that leaves members alive it
 * is the time the last member it did kill was seen dead. Survivors = live processes carrying the
 * trial's mark 100 ms after the wait (warden: after task.result too); they are then killed by
 * mark so no trial leaks into the next.
 * Goals: tree-kill / warden >= 10x; warden / bare scan <= 1.5x; warden survivors 0.
 */
import treeKill from 'tree-kill';
import { Supervisor, type Task, type TaskResult } from '../lib/index.js';
import { reaperPath } from '../lib/process/native-binding.js';
import { findMarked, killGroup, killMarked, killPid, markEntry, markedEnv, newMark } from './lib/marker.js';
import { environMatches, isLive, listPids, readEnviron, readStat } from './lib/proc.js';
import { readyWatch, recordMembers, spawnRawTree, treeArgs, TREE_SIZE, waitGone, type RawTree, type TreeVariant } from './lib/proc-tree.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, median, now, r3, sleep } from './lib/timing.js';

const SETTLE_MS = 100;

interface Trial {
  method: string;
  variant: TreeVariant;
  members: number;
  /** /proc scans needed after `ready` to see the whole tree (1 unless a member was mid-exec). */
  recordScans: number;
  allGone: boolean;
  goneMs: number;
  /** warden only: call until task.result resolved. */
  resultMs?: number;
  survivors: number;
  /** Processes the clean-up could not kill (should always be 0). */
  leaked: number;
  warden?: { firstKillMs: number; survivors: number; escapees: number; signalled: number; killRounds: number; steps: string; pipesForceClosed: boolean; state: string };
}

interface PeerMethod {
  name: string;
  /** Starts ending the tree; calls `done` when the method considers itself finished. */
  kill(tree: RawTree, mark: string, done: () => void): void;
}

/** One synchronous pass over /proc for the mark, then SIGKILL the group and every match. */
function bareScanKill(tree: RawTree, mark: string, done: () => void): void {
  const entry = markEntry(mark);
  const matches: number[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    const st = readStat(pid);
    if (!isLive(st)) continue;
    const env = readEnviron(pid);
    if (env && environMatches(env, entry, false)) matches.push(pid);
  }
  killGroup(tree.pid);
  for (const pid of matches) killPid(pid);
  done();
}

const PEERS: PeerMethod[] = [
  { name: 'tree-kill SIGKILL', kill: (tree, _mark, done) => treeKill(tree.pid, 'SIGKILL', () => done()) },
  {
    name: 'kill(-pgid)',
    kill: (tree, _mark, done) => {
      killGroup(tree.pid);
      done();
    },
  },
  { name: 'bare /proc scan', kill: bareScanKill },
];

async function peerTrial(method: PeerMethod, variant: TreeVariant): Promise<Trial> {
  const mark = newMark(`td-${variant}`);
  const tree = await spawnRawTree(variant, mark);
  const { members, scans } = await recordMembers(mark);
  let finished = false;
  const t0 = now();
  method.kill(tree, mark, () => (finished = true));
  const gone = await waitGone(members, t0, () => finished);
  await sleep(SETTLE_MS);
  const survivors = findMarked(mark).length;
  const leaked = await killMarked(mark);
  await tree.closed;
  return { method: method.name, variant, members: members.length, recordScans: scans, allGone: gone.allGone, goneMs: gone.lastDeathMs, survivors, leaked };
}

async function wardenTrial(name: string, sup: Supervisor, variant: TreeVariant): Promise<Trial> {
  const mark = newMark(`td-${variant}`);
  const task: Task = sup.start({ command: 'bash', args: treeArgs(variant), env: markedEnv(mark), graceMs: 0 });
  const watch = readyWatch();
  task.on('stdout', watch.feed);
  try {
    await Promise.race([watch.ready, task.result.then((r) => Promise.reject(new Error(`the tree task ended before ready: ${r.reason} ${r.status}`)))]);
  } finally {
    watch.stop();
    task.off('stdout', watch.feed);
  }
  const { members, scans } = await recordMembers(mark);
  let result: TaskResult | undefined;
  let resultMs = NaN;
  const t0 = now();
  task.terminate('cancelled');
  const settled = task.result.then((r) => {
    resultMs = now() - t0;
    result = r;
  });
  const gone = await waitGone(members, t0, () => result !== undefined);
  await settled;
  await sleep(SETTLE_MS);
  const survivors = findMarked(mark).length;
  const leaked = await killMarked(mark);
  const r = result!;
  const firstKill = r.teardown?.signals.find((x) => x.signal === 'SIGKILL');
  const steps = (r.teardown?.steps ?? []).map((s) => `${s.step} ${s.durationMs}`).join(', ');
  return {
    method: name,
    variant,
    members: members.length,
    recordScans: scans,
    allGone: gone.allGone,
    goneMs: gone.lastDeathMs,
    resultMs,
    survivors,
    leaked,
    warden: { firstKillMs: firstKill?.atMs ?? NaN, survivors: r.survivors, escapees: r.escapees, signalled: r.signalled, killRounds: r.teardown?.killRounds ?? 0, steps, pipesForceClosed: r.pipesForceClosed, state: r.state },
  };
}

export async function runTeardown(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const trials = quick ? 3 : 10;
  const auto = new Supervisor();
  const group = new Supervisor({ containment: 'group' });
  const wardenAuto = `warden (${auto.containment})`;
  const wardenGroup = 'warden (group)';
  // The tier 'auto' gives an ordinary user, where warden-reaper was built (skipped when that is what auto is).
  const reaper = auto.containment !== 'subreaper' && group.spawner === 'native' && reaperPath !== undefined ? new Supervisor({ containment: 'subreaper' }) : undefined;
  const wardenReaper = 'warden (subreaper)';
  const wardens = [wardenAuto, ...(reaper ? [wardenReaper] : []), wardenGroup];
  type Runner = { name: string; run: (v: TreeVariant) => Promise<Trial> };
  const runners: Runner[] = [
    { name: wardenAuto, run: (v) => wardenTrial(wardenAuto, auto, v) },
    ...(reaper ? [{ name: wardenReaper, run: (v: TreeVariant) => wardenTrial(wardenReaper, reaper, v) }] : []),
    { name: wardenGroup, run: (v) => wardenTrial(wardenGroup, group, v) },
    ...PEERS.map((m) => ({ name: m.name, run: (v: TreeVariant) => peerTrial(m, v) })),
  ];
  const variants: TreeVariant[] = ['static', 'churn'];
  const all: Trial[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      for (const v of variants) for (const m of balancedOrder(runners, i)) all.push(await m.run(v));
    }
  } finally {
    await auto.close();
    await group.close();
    await reaper?.close();
  }

  const rows: Row[] = [];
  const notes: string[] = [];
  for (const v of variants) {
    const of = (method: string): Trial[] => all.filter((t) => t.variant === v && t.method === method);
    const goneMed = (method: string): number => median(of(method).map((t) => t.goneMs));
    const goneDetail = (method: string): string => {
      const ts = of(method);
      const g = ts.map((t) => t.goneMs);
      const allGone = ts.filter((t) => t.allGone).length;
      return `max ${max(g).toFixed(1)}, all recorded gone in ${allGone}/${ts.length}, members ${median(ts.map((t) => t.members))}`;
    };
    const scan = { name: 'bare scan', value: goneMed('bare /proc scan') };
    for (const w of wardens) {
      rows.push(row({ name: `${v}: ${w} gone`, value: goneMed(w), unit: 'ms', baseline: scan, goal: { of: 'ratio', op: '<=', target: 1.5 }, detail: goneDetail(w) }));
    }
    for (const w of wardens) {
      const res = of(w).map((t) => t.resultMs ?? NaN);
      rows.push(row({ name: `${v}: ${w} until task.result`, value: median(res), unit: 'ms', detail: `max ${max(res).toFixed(1)}` }));
    }
    for (const w of wardens) {
      rows.push(row({ name: `${v}: tree-kill SIGKILL gone vs ${w}`, value: goneMed('tree-kill SIGKILL'), unit: 'ms', baseline: { name: w, value: goneMed(w) }, goal: { of: 'ratio', op: '>=', target: 10 }, detail: goneDetail('tree-kill SIGKILL') }));
    }
    for (const m of ['kill(-pgid)', 'bare /proc scan']) rows.push(row({ name: `${v}: ${m} gone`, value: goneMed(m), unit: 'ms', detail: goneDetail(m) }));
    for (const r of runners) {
      const ts = of(r.name);
      const s = ts.map((t) => t.survivors);
      const isWarden = r.name.startsWith('warden');
      rows.push(
        row({
          name: `${v}: survivors ${r.name}`,
          value: max(s),
          unit: 'procs (max)',
          goal: isWarden ? { of: 'value', op: '<=', target: 0 } : null,
          detail: `median ${median(s)} of ~${median(ts.map((t) => t.members))} recorded, per trial [${s.join(' ')}]`,
        }),
      );
    }
  }
  // Under the subreaper tier warden-reaper carries the mark too: one member more.
  const static25 = all.filter((t) => t.variant === 'static' && t.members !== TREE_SIZE + (t.method === wardenReaper ? 1 : 0));
  if (static25.length) notes.push(`${static25.length} static trial(s) recorded a member count other than ${TREE_SIZE}: ${[...new Set(static25.map((t) => t.members))].join(', ')}`);
  const rescanned = all.filter((t) => t.recordScans > 1).length;
  if (rescanned) notes.push(`${rescanned}/${all.length} trial(s) needed more than one /proc scan after ready to record the whole tree (members mid-exec)`);
  const leaked = all.reduce((n, t) => n + t.leaked, 0);
  if (leaked) notes.push(`${leaked} marked process(es) could not be killed by the clean-up`);
  for (const w of wardens) {
    const ws = all.filter((t) => t.method === w && t.warden);
    const bad = ws.filter((t) => t.warden!.survivors !== 0 || t.warden!.pipesForceClosed);
    if (bad.length) notes.push(`${w}: ${bad.length} trial(s) reported survivors or force-closed pipes in task.result`);
    const disagree = ws.filter((t) => t.warden!.survivors !== t.survivors);
    if (disagree.length) notes.push(`${w}: task.result.survivors disagreed with the bench's marker count in ${disagree.length} trial(s)`);
    for (const v of variants) {
      const wv = ws.filter((t) => t.variant === v);
      if (!wv.length) continue;
      notes.push(
        `${w} ${v}: first SIGKILL at median ${median(wv.map((t) => t.warden!.firstKillMs)).toFixed(2)} ms after terminate(), escapees median ${median(wv.map((t) => t.warden!.escapees))}, signalled median ${median(wv.map((t) => t.warden!.signalled))}, kill rounds median ${median(wv.map((t) => t.warden!.killRounds))}; steps (ms) of the median-gone trial: ${[...wv].sort((a, b) => a.goneMs - b.goneMs)[wv.length >> 1]!.warden!.steps}`,
      );
    }
  }
  return {
    name: 'teardown',
    rows,
    notes,
    durationMs: now() - t0,
    raw: all.map((t) => ({ ...t, goneMs: r3(t.goneMs), ...(t.resultMs !== undefined ? { resultMs: r3(t.resultMs) } : {}) })),
  };
}
