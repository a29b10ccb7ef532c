/**
 * comms: round trips per second of a ~100-byte request/response, sequential (one in flight) and a
 * burst (200,000 issued at once, all awaited), in the same run:
 *   warden        a real Supervisor task; the child (bench/children/warden-echo.ts) uses
 *                 `warden/child` and issues `request('Echo', {v})`, answered by an `Echo` handler
 *                 registered with `supervisor.handle`; the child times itself and prints JSON.
 *                 Defaults throughout, so the task's spin-then-sleep wait is on (50 us)
 *   warden, no spin   the same with WARDEN_COMMS_SPIN_US=0, sequential only: a reference row
 *                 showing what the spin adds, and what a task that turns it off gets
 *   node IPC      fork + process.send, serialization json (nodeIpcEcho, bench/lib/baselines.ts)
 *   bare socket   raw 100-byte messages echoed on an fd socket, no framing, no codec: the floor
 * Rounds interleave the variants ABC CBA...; a figure is the median over rounds, and a ratio the
 * median of per-round paired ratios (sequential figures swing with CPU placement, so only ratios
 * from the same round mean much).
 * The requester's CPU per sequential round trip is reported too (warden's child, node IPC's
 * parent), so that what the spin costs is in the same table as what it buys.
 * Goals (issue 3): warden sequential >= 1.0x node IPC, burst >= 1.5x node IPC.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Supervisor } from '../lib/index.js';
import { nativeBinding } from '../lib/process/native-binding.js';
import { bareSocketEcho, nodeIpcEcho, type CommsFigures } from './lib/baselines.js';
import { markedEnv, newMark } from './lib/marker.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, median, min, now } from './lib/timing.js';

const MESSAGE_BYTES = 100;
/** warden/child spins where the addon is built and the task may use more than one CPU. */
const spinAvailable = nativeBinding !== undefined && availableParallelism() > 1;
const echoChild = fileURLToPath(new URL('./children/warden-echo.js', import.meta.url));

interface ChildReport {
  sequential: number;
  burst: number;
  seqMs: number;
  seqCpuUs: number;
  burstMs: number;
  warmMs: number;
  wrong: number;
  spin: { micros: number; spins: number; hits: number; skipped: number } | null;
}

/** One warden trial: a task whose child measures itself. Throws when the task did not end cleanly. */
async function wardenEcho(supervisor: Supervisor, mark: string, sequential: number, burst: number, spin = true): Promise<CommsFigures> {
  const task = supervisor.start({
    command: process.execPath,
    args: [echoChild, String(sequential), String(burst), String(MESSAGE_BYTES)],
    env: spin ? markedEnv(mark) : { ...markedEnv(mark), WARDEN_COMMS_SPIN_US: '0' },
    timeoutMs: 120_000,
  });
  let out = '';
  task.on('stdout', (chunk) => (out += chunk.toString()));
  const result = await task.result;
  if (result.state !== 'success' || result.survivors !== 0) {
    throw new Error(`warden echo task ended ${result.state} (${result.reason}, status ${result.status}, survivors ${result.survivors}): ${out.slice(-500)}`);
  }
  const report = JSON.parse(out.trim().split('\n').pop()!) as ChildReport;
  if (report.wrong !== 0) throw new Error(`warden echo: ${report.wrong} request(s) were not answered with their echo`);
  const spinExpected = spin && spinAvailable;
  if ((report.spin !== null) !== spinExpected) throw new Error(`warden echo: the spin-then-sleep wait was ${report.spin === null ? 'off' : 'on'}, expected ${spinExpected ? 'on' : 'off'}`);
  // Every round trip the child timed went through the supervisor's channel and handler.
  const stats = task.channel?.stats;
  const expected = 1000 + sequential + burst;
  if (stats?.requests !== expected || stats.responses !== expected || Object.keys(stats.errors).length > 0) {
    throw new Error(`warden echo: the channel saw ${stats?.requests} requests and ${stats?.responses} responses (errors ${JSON.stringify(stats?.errors)}), expected ${expected} each and no errors`);
  }
  return {
    variant: spin ? 'warden' : 'warden-nospin',
    sequential: { count: report.sequential, ms: report.seqMs, roundTripsPerSec: (report.sequential / report.seqMs) * 1000, cpuUsPerRoundTrip: report.seqCpuUs / report.sequential },
    burst: { count: report.burst, ms: report.burstMs, roundTripsPerSec: report.burst === 0 ? NaN : (report.burst / report.burstMs) * 1000 },
  };
}

export async function runComms(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const rounds = quick ? 1 : 9;
  const sequential = quick ? 5_000 : 20_000;
  const burst = 200_000;
  const notes: string[] = [];
  // A synchronous handler, like the baselines' echo: the answer is ready when the request is read.
  const supervisor = new Supervisor({ comms: { maxInflightRequests: 64 } });
  supervisor.handle('Echo', (body: { v: string }) => body.v);
  const variants: Array<{ name: string; run: (mark: string) => Promise<CommsFigures> }> = [
    { name: 'node-ipc', run: (mark) => nodeIpcEcho({ mark, sequential, burst }) },
    { name: 'bare-socket', run: (mark) => bareSocketEcho({ mark, sequential, burst }) },
    { name: 'warden', run: (mark) => wardenEcho(supervisor, mark, sequential, burst) },
    { name: 'warden-nospin', run: (mark) => wardenEcho(supervisor, mark, sequential, 0, false) },
  ];
  const all: Array<{ round: number; variant: string; seq: number; burst: number; cpu: number }> = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const v of balancedOrder(variants, r)) {
        const f = await v.run(newMark(`comms-${v.name}`));
        all.push({ round: r, variant: v.name, seq: f.sequential.roundTripsPerSec, burst: f.burst.roundTripsPerSec, cpu: f.sequential.cpuUsPerRoundTrip ?? NaN });
      }
    }
  } finally {
    await supervisor.close();
  }

  const of = (variant: string): typeof all => all.filter((x) => x.variant === variant).sort((a, b) => a.round - b.round);
  const rows: Row[] = [];
  for (const mode of ['seq', 'burst'] as const) {
    const label = mode === 'seq' ? 'sequential' : `burst ${burst.toLocaleString('en-US')}`;
    const figure = (variant: string): number => median(of(variant).map((x) => x[mode]));
    const range = (variant: string): string => {
      const xs = of(variant).map((x) => x[mode]);
      return `rounds ${xs.length}, range ${Math.round(min(xs))}-${Math.round(max(xs))}/s`;
    };
    const paired = (over: string, variant = 'warden'): number[] => of(variant).map((x, i) => x[mode] / of(over)[i]![mode]);
    rows.push(row({ name: `${label}: node IPC (fork, json)`, value: figure('node-ipc'), unit: 'round trips/s', detail: range('node-ipc') }));
    rows.push(row({ name: `${label}: bare socket (floor)`, value: figure('bare-socket'), unit: 'round trips/s', detail: range('bare-socket') }));
    const vsIpc = paired('node-ipc');
    rows.push(
      row({
        name: `${label}: warden vs node IPC`,
        value: figure('warden'),
        unit: 'round trips/s',
        baseline: { name: 'node IPC', value: figure('node-ipc') },
        ratio: median(vsIpc),
        goal: { of: 'ratio', op: '>=', target: mode === 'seq' ? 1.0 : 1.5 },
        detail: `${range('warden')}; ratio = median of paired rounds (${min(vsIpc).toFixed(2)}-${max(vsIpc).toFixed(2)})`,
      }),
    );
    const vsFloor = paired('bare-socket');
    rows.push(
      row({
        name: `${label}: warden vs bare socket`,
        value: figure('warden'),
        unit: 'round trips/s',
        baseline: { name: 'bare socket', value: figure('bare-socket') },
        ratio: median(vsFloor),
        detail: `ratio = median of paired rounds (${min(vsFloor).toFixed(2)}-${max(vsFloor).toFixed(2)})`,
      }),
    );
    if (mode !== 'seq') continue;
    const noSpin = paired('node-ipc', 'warden-nospin');
    rows.push(
      row({
        name: `${label}: reference: warden, spin off, vs node IPC`,
        value: figure('warden-nospin'),
        unit: 'round trips/s',
        baseline: { name: 'node IPC', value: figure('node-ipc') },
        ratio: median(noSpin),
        detail: `WARDEN_COMMS_SPIN_US=0; ${range('warden-nospin')}; ratio = median of paired rounds (${min(noSpin).toFixed(2)}-${max(noSpin).toFixed(2)})`,
      }),
    );
    const cpu = (variant: string): number => median(of(variant).map((x) => x.cpu));
    for (const variant of ['warden', 'warden-nospin']) {
      rows.push(
        row({
          name: `${label}: requester CPU per round trip, ${variant === 'warden' ? 'warden' : 'warden spin off'} vs node IPC`,
          value: cpu(variant),
          unit: 'us',
          baseline: { name: 'node IPC parent', value: cpu('node-ipc') },
          detail: 'user + system CPU of the requesting process over the sequential phase (warden: the task; node IPC: the parent)',
        }),
      );
    }
  }
  if (!spinAvailable) notes.push('the spin-then-sleep wait is off here (no native addon, or one CPU): the warden rows are what a task gets without it');
  notes.push(`message ~${MESSAGE_BYTES} bytes each way; warden's child times itself (first request to last answer); the baselines are timed by the parent, which is their requester`);
  return { name: 'comms', rows, notes, durationMs: now() - t0, raw: all.map((x) => ({ ...x, seq: Math.round(x.seq), burst: Math.round(x.burst), cpu: Number(x.cpu.toFixed(2)) })) };
}
