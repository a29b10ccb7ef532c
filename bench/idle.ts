/**
 * idle: what N running tasks that do nothing cost the supervisor (method of
 * /work/shared/reference/baselines.md, "Idle cost"), in the same run:
 *   warden      a Supervisor running N tasks of `sleep 1000`, default containment: per task the
 *               reactor's four sockets, the comms channel and the exit backstop on the one timer
 *               wheel
 *   naive       N raw `child_process.spawn('sleep', ['1000'])` children with piped stdio, each
 *               with its own 1 s liveness timer that reads /proc/<pid>/stat (phases spread over
 *               the second): what a supervisor written the obvious way does
 *   floor       the same raw children with no timer at all
 * Figures: the supervisor's CPU (user + system, ms per second of wall time) over a window once
 * every child runs, and its RSS growth per child. Goal (a guard, no issue sets one): warden's
 * CPU <= 1.0x the naive supervisor's. Rounds interleave the variants; a figure is
 * the median over rounds and a ratio the median of per-round paired ratios.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Supervisor, type Task } from '../lib/index.js';
import { markedEnv, newMark } from './lib/marker.js';
import { readStat } from './lib/proc.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, median, min, now, sleep } from './lib/timing.js';

interface Trial {
  variant: string;
  round: number;
  cpuMsPerSec: number;
  rssKiBPerChild: number;
}

/** CPU (ms) this process used per second of wall time while `wait` ran. */
async function cpuOver(windowMs: number): Promise<number> {
  const cpu0 = process.cpuUsage();
  const t0 = now();
  await sleep(windowMs);
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / 1000 / ((now() - t0) / 1000);
}

async function rawTrial(variant: 'naive' | 'floor', n: number, windowMs: number, round: number): Promise<Trial> {
  const env = markedEnv(newMark(`idle-${variant}`));
  const rss0 = process.memoryUsage().rss;
  const children: ChildProcess[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const child = spawn('sleep', ['1000'], { stdio: ['ignore', 'pipe', 'pipe'], env });
      child.stdout!.on('data', () => {});
      child.stderr!.on('data', () => {});
      children.push(child);
      if (variant === 'naive') {
        // One liveness check per child per second, phases spread: the naive supervisor's timer.
        const pid = child.pid!;
        timers.push(setTimeout(() => timers.push(setInterval(() => readStat(pid), 1000)), (i * 1000) / n));
      }
    }
    await sleep(1500); // every child running, every timer started
    const rssKiBPerChild = (process.memoryUsage().rss - rss0) / 1024 / n;
    const cpuMsPerSec = await cpuOver(windowMs);
    return { variant, round, cpuMsPerSec, rssKiBPerChild };
  } finally {
    for (const t of timers) clearTimeout(t);
    const closed = children.map((c) => once(c, 'close'));
    for (const c of children) c.kill('SIGKILL'); // recorded by this bench
    await Promise.all(closed);
  }
}

async function wardenTrial(n: number, windowMs: number, round: number): Promise<Trial> {
  const env = markedEnv(newMark('idle-warden'));
  const rss0 = process.memoryUsage().rss;
  const supervisor = new Supervisor();
  const tasks: Task[] = [];
  try {
    for (let i = 0; i < n; i++) tasks.push(supervisor.start({ command: 'sleep', args: ['1000'], env, graceMs: 0 }));
    await sleep(1500);
    const rssKiBPerChild = (process.memoryUsage().rss - rss0) / 1024 / n;
    const cpuMsPerSec = await cpuOver(windowMs);
    const running = tasks.filter((t) => t.phase === 'running').length;
    if (running !== n) throw new Error(`idle: ${n - running} of ${n} warden tasks were not running during the window`);
    return { variant: 'warden', round, cpuMsPerSec, rssKiBPerChild };
  } finally {
    await supervisor.close(); // SIGKILL to every task's tree (graceMs 0)
    const bad = (await Promise.all(tasks.map((t) => t.result))).filter((r) => r.survivors !== 0).length;
    if (bad) throw new Error(`idle: ${bad} warden task(s) left survivors`);
  }
}

export async function runIdle(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const n = quick ? 50 : 200;
  const rounds = quick ? 1 : 3;
  const windowMs = quick ? 2000 : 5000;
  const variants = [
    { name: 'naive', run: (r: number) => rawTrial('naive', n, windowMs, r) },
    { name: 'floor', run: (r: number) => rawTrial('floor', n, windowMs, r) },
    { name: 'warden', run: (r: number) => wardenTrial(n, windowMs, r) },
  ];
  const all: Trial[] = [];
  for (let r = 0; r < rounds; r++) for (const v of balancedOrder(variants, r)) all.push(await v.run(r));

  const of = (variant: string): Trial[] => all.filter((t) => t.variant === variant).sort((a, b) => a.round - b.round);
  const cpu = (variant: string): number => median(of(variant).map((t) => t.cpuMsPerSec));
  const rss = (variant: string): number => median(of(variant).map((t) => t.rssKiBPerChild));
  const range = (variant: string): string => {
    const xs = of(variant).map((t) => t.cpuMsPerSec);
    return `rounds ${xs.length}, range ${min(xs).toFixed(2)}-${max(xs).toFixed(2)} ms/s`;
  };
  const paired = of('warden').map((t, i) => t.cpuMsPerSec / of('naive')[i]!.cpuMsPerSec);
  const rows: Row[] = [
    row({ name: `${n} idle children: floor (no timer)`, value: cpu('floor'), unit: 'ms CPU/s', detail: range('floor') }),
    row({ name: `${n} idle children: naive (a 1 s timer each)`, value: cpu('naive'), unit: 'ms CPU/s', detail: range('naive') }),
    row({
      name: `${n} idle tasks: warden vs naive`,
      value: cpu('warden'),
      unit: 'ms CPU/s',
      baseline: { name: 'naive', value: cpu('naive') },
      ratio: median(paired),
      // No issue sets a goal here; this one guards the obvious: idle tasks under warden cost no
      // more than the naive supervisor's.
      goal: { of: 'ratio', op: '<=', target: 1.0 },
      detail: `${range('warden')}; ratio = median of paired rounds (${min(paired).toFixed(2)}-${max(paired).toFixed(2)})`,
    }),
    row({ name: 'RSS per child: floor', value: rss('floor'), unit: 'KiB' }),
    row({ name: 'RSS per task: warden vs floor', value: rss('warden'), unit: 'KiB', baseline: { name: 'floor', value: rss('floor') }, detail: 'growth of the supervisor\'s RSS once all run, divided by the count (noisy: the heap grows in steps)' }),
  ];
  const notes = [`window ${windowMs} ms once every child ran 1.5 s; warden checks each task once per exitCheckMs (default 1000), every task on one shared grid, and for its native children the check is a table lookup plus one waitpid per child per half second for the whole process (the naive timer reads /proc/<pid>/stat)`];
  return { name: 'idle', rows, notes, durationMs: now() - t0, raw: all };
}
