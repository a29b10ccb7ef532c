/**
 * Entry of `npm run bench`: runs every registered bench in sequence, prints one table, writes
 * the figures to dist/bench-results.json (generated, never committed).
 *
 *   node dist/bench/run.js [bench ...]      only the named benches
 *   BENCH_QUICK=1 node dist/bench/run.js    smoke run (~30 s): fewer rounds and trials
 *
 * Adding a bench: write `bench/<name>.ts` exporting `run<Name>(quick): Promise<BenchReport>`,
 * measure its baseline in the same run (bench/lib/baselines.ts has the comms and log baselines
 * ready), build rows with `row()` from bench/lib/report.ts (ratio = value / baseline), tag every
 * process it starts with a mark (bench/lib/marker.ts), and add it to `benches` below.
 *
 * Rules every bench keeps: it ends on its own (no process.exit), it signals only pids it recorded
 * or found by its mark, and this runner checks that no marked process survives the run.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { findRunMarked, killMarked, RUN_ID } from './lib/marker.js';
import { formatReports, type BenchReport } from './lib/report.js';
import { now, yieldTurn } from './lib/timing.js';
import { runComms } from './comms.js';
import { runHeartbeatKill } from './heartbeat-kill.js';
import { runIdle } from './idle.js';
import { runLogs } from './logs.js';
import { runSpawn } from './spawn.js';
import { runTeardown } from './teardown.js';

export interface Bench {
  name: string;
  run(quick: boolean): Promise<BenchReport>;
}

export const benches: Bench[] = [
  { name: 'spawn', run: runSpawn },
  { name: 'teardown', run: runTeardown },
  { name: 'comms', run: runComms },
  { name: 'logs', run: runLogs },
  { name: 'heartbeat-kill', run: runHeartbeatKill },
  { name: 'idle', run: runIdle },
];

/** Benches still to write, listed in the output so nobody forgets them. */
export const planned: Array<{ name: string; plan: string }> = [];

/** Task cgroups of this process that warden left behind (cgroup v2 only; empty elsewhere). */
function leftoverCgroups(): string[] {
  try {
    const mount = readFileSync('/proc/self/mountinfo', 'latin1')
      .split('\n')
      .map((l) => l.split(' '))
      .find((f) => f[f.indexOf('-') + 1] === 'cgroup2')?.[4];
    const own = readFileSync('/proc/self/cgroup', 'latin1').split('\n').find((l) => l.startsWith('0::'));
    if (!mount || !own) return [];
    const base = `${mount}${own.slice(3).replace(/\/$/, '')}/warden`;
    return readdirSync(base).filter((n) => n.startsWith(`${process.pid}.`));
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === '1';
  const only = process.argv.slice(2);
  const unknown = only.filter((n) => !benches.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown bench(es): ${unknown.join(', ')}; known: ${benches.map((b) => b.name).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const selected = only.length ? benches.filter((b) => only.includes(b.name)) : benches;
  const started = new Date().toISOString();
  const t0 = now();
  console.log(`warden bench ${quick ? '(quick) ' : ''}run ${RUN_ID}: node ${process.version}, ${cpus().length} cpu(s), uid ${process.getuid?.() ?? '?'}`);
  // After the first write, so that stdout's own handle counts as already there.
  const handlesAtStart = process.getActiveResourcesInfo();
  const reports: BenchReport[] = [];
  const errors: Array<{ bench: string; error: string }> = [];
  for (const b of selected) {
    process.stdout.write(`running ${b.name} ...`);
    const bt = now();
    try {
      reports.push(await b.run(quick));
      process.stdout.write(` ${((now() - bt) / 1000).toFixed(1)} s\n`);
    } catch (err) {
      process.stdout.write(' failed\n');
      errors.push({ bench: b.name, error: (err as Error)?.stack ?? String(err) });
      process.exitCode = 1;
    }
    // Whatever a bench left, the next one must not inherit it.
    const left = findRunMarked().length;
    if (left) {
      errors.push({ bench: b.name, error: `${left} marked process(es) alive after the bench; killed by mark` });
      await killMarked(undefined);
      process.exitCode = 1;
    }
  }

  console.log(formatReports(reports));
  for (const e of errors) console.log(`\nERROR in ${e.bench}: ${e.error}`);
  for (const p of planned) if (!only.length || only.includes(p.name)) console.log(`\n(not yet written) ${p.name}: ${p.plan}`);

  // Handles of the last children close a few turns after their processes end; give them 200 ms.
  const busy = (): string[] => {
    const extra = process.getActiveResourcesInfo();
    for (const h of handlesAtStart) {
      const at = extra.indexOf(h);
      if (at >= 0) extra.splice(at, 1);
    }
    return extra;
  };
  const until = now() + 200;
  while (busy().length > 0 && now() < until) await yieldTurn();
  const marked = findRunMarked().length;
  const cgroups = leftoverCgroups();
  const handles = busy();
  const goals = reports.flatMap((r) => r.rows).filter((x) => x.pass !== null);
  console.log(`\ngoals: ${goals.filter((x) => x.pass).length}/${goals.length} pass`);
  console.log(`marked processes alive at the end: ${marked}; warden cgroups of this process left: ${cgroups.length}${cgroups.length ? ` (${cgroups.slice(0, 5).join(', ')})` : ''}; active handles beyond those at start: ${handles.length ? handles.join(', ') : 'none'}`);
  if (marked) process.exitCode = 1;

  const out = fileURLToPath(new URL('../bench-results.json', import.meta.url));
  writeFileSync(
    out,
    `${JSON.stringify({ runId: RUN_ID, started, quick, node: process.version, cpus: cpus().length, durationMs: Math.round(now() - t0), reports, errors, markedAlive: marked, leftoverCgroups: cgroups, activeHandles: handles }, null, 2)}\n`,
  );
  console.log(`total ${((now() - t0) / 1000).toFixed(1)} s; figures written to ${out}`);
}

await main();
