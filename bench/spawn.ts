/**
 * spawn: per-spawn time of `/bin/true`, from the call until the result is known.
 *   baseline  raw child_process.spawn, stdio pipe, until `close`
 *   warden    supervisor.start({ command: '/bin/true' }) until `await task.result`
 *             (isolated, 5 fds, reactor, default containment: a cgroup per task when root)
 *   warden-group   the same with new Supervisor({ containment: 'group' }) (no cgroup hop)
 *   warden-subreaper   containment 'subreaper': warden-reaper leads the task, the command is its
 *                  child (one more fork and exec per task; what 'auto' gives a user without root)
 *   warden-group, child_process   the same with spawner: 'node' (libuv's fork instead of the
 *             native posix_spawn), to show what the native spawner is worth
 * warden starts tasks through its native spawner (posix_spawn) when the install built it; the
 * rows name the spawner each supervisor used.
 * Rounds of N spawns, the variants interleaved ABC CBA... to cancel drift; a round's per-spawn
 * time is the mean call-to-result latency of its spawns; the figure is the median over rounds.
 * The ratio is the median over rounds of warden's round / the raw round run next to it (same
 * round index), which cancels drift from other load on the machine better than a ratio of medians.
 * Goal (issue): warden <= 1.25x raw, sequential and with 16 in flight.
 */
import { Supervisor } from '../lib/index.js';
import { reaperPath } from '../lib/process/native-binding.js';
import { rawSpawnTrue } from './lib/baselines.js';
import { markedEnv, newMark } from './lib/marker.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, mean, median, min, now, r3 } from './lib/timing.js';

type Once = () => Promise<unknown>;

interface Round {
  variant: string;
  mode: string;
  perSpawnMs: number;
  spawnsPerSec: number;
}

/** Runs `total` calls with at most `inFlight` at once; returns each call's latency in ms and the wall time. */
async function runRound(once: Once, total: number, inFlight: number): Promise<{ latencies: number[]; wallMs: number }> {
  const latencies: number[] = [];
  let started = 0;
  const t0 = now();
  const worker = async (): Promise<void> => {
    while (started < total) {
      started++;
      const t = now();
      await once();
      latencies.push(now() - t);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
  return { latencies, wallMs: now() - t0 };
}

const GOAL = { of: 'ratio', op: '<=', target: 1.25 } as const;

export async function runSpawn(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const rounds = quick ? 2 : 6;
  const perRound = quick ? 100 : 300;
  const env = markedEnv(newMark('spawn'));
  const auto = new Supervisor();
  const group = new Supervisor({ containment: 'group' });
  const groupNode = new Supervisor({ containment: 'group', spawner: 'node' });
  // What 'auto' gives an ordinary user (no writable cgroup), where warden-reaper was built.
  const reaper = group.spawner === 'native' && reaperPath !== undefined ? new Supervisor({ containment: 'subreaper' }) : undefined;
  const notes: string[] = [];
  const failures = new Map<string, number>();
  const wardenOnce = (sup: Supervisor, label: string): Once => async () => {
    const r = await sup.start({ command: '/bin/true', env }).result;
    if (r.state !== 'success' || r.survivors !== 0 || r.pipesForceClosed) failures.set(label, (failures.get(label) ?? 0) + 1);
  };
  const variants: Array<{ name: string; once: Once }> = [
    { name: 'raw spawn', once: () => rawSpawnTrue(env) },
    { name: `warden (${auto.containment}, ${auto.spawner})`, once: wardenOnce(auto, 'warden') },
    { name: `warden (group, ${group.spawner})`, once: wardenOnce(group, 'warden-group') },
    ...(reaper ? [{ name: 'warden (subreaper, native)', once: wardenOnce(reaper, 'warden-subreaper') }] : []),
    ...(group.spawner === 'native' ? [{ name: 'reference: warden (group, child_process)', once: wardenOnce(groupNode, 'warden-group-node') }] : []),
  ];
  const modes = [
    { name: 'sequential', inFlight: 1 },
    { name: '16 in flight', inFlight: 16 },
  ];
  const all: Round[] = [];
  try {
    for (const v of variants) await runRound(v.once, 30, 4); // warm-up, discarded
    for (const mode of modes) {
      for (let r = 0; r < rounds; r++) {
        for (const v of balancedOrder(variants, r)) {
          const { latencies, wallMs } = await runRound(v.once, perRound, mode.inFlight);
          all.push({ variant: v.name, mode: mode.name, perSpawnMs: mean(latencies), spawnsPerSec: (perRound / wallMs) * 1000 });
        }
      }
    }
  } finally {
    await auto.close();
    await group.close();
    await groupNode.close();
    await reaper?.close();
  }

  const rows: Row[] = [];
  for (const mode of modes) {
    const of = (variant: string): Round[] => all.filter((x) => x.mode === mode.name && x.variant === variant);
    const summary = (variant: string): { ms: number; rate: number; detail: string } => {
      const rs = of(variant);
      const ms = rs.map((x) => x.perSpawnMs);
      const rate = median(rs.map((x) => x.spawnsPerSec));
      return { ms: median(ms), rate, detail: `rounds ${rs.length}x${perRound}, range ${min(ms).toFixed(2)}-${max(ms).toFixed(2)} ms, ${Math.round(rate)} spawns/s` };
    };
    const raw = summary(variants[0]!.name);
    const rawRounds = of(variants[0]!.name);
    rows.push(row({ name: `${mode.name}: ${variants[0]!.name}`, value: raw.ms, unit: 'ms/spawn', detail: raw.detail }));
    for (const v of variants.slice(1)) {
      const s = summary(v.name);
      const paired = of(v.name).map((x, i) => x.perSpawnMs / rawRounds[i]!.perSpawnMs);
      rows.push(
        row({
          name: `${mode.name}: ${v.name}`,
          value: s.ms,
          unit: 'ms/spawn',
          baseline: { name: 'raw', value: raw.ms },
          ratio: median(paired),
          // The child_process row is a reference (what the native spawner saves), not a goal.
          ...(v.name.endsWith('child_process)') ? {} : { goal: GOAL }),
          detail: `${s.detail}; ratio = median of paired rounds (${min(paired).toFixed(2)}-${max(paired).toFixed(2)}), of medians ${(s.ms / raw.ms).toFixed(2)}`,
        }),
      );
    }
  }
  for (const [label, n] of failures) notes.push(`${label}: ${n} spawn(s) of /bin/true did not settle as success with 0 survivors and no forced pipes`);
  return { name: 'spawn', rows, notes, durationMs: now() - t0, raw: all.map((x) => ({ ...x, perSpawnMs: r3(x.perSpawnMs), spawnsPerSec: Math.round(x.spawnsPerSec) })) };
}
