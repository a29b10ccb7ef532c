/**
 * logs: lines per second from a child writing 1,000,000 80-byte lines to stdout (the bench's
 * line-writer child, bench/children/line-writer.ts), in the same run:
 *   warden      a real Supervisor task with `logFile`: each line split, turned into a record
 *               `{timestamp, level, logger, event}`, masked, appended as a JSON line; the clock
 *               runs from the first stdout chunk to `await task.result`, which settles only
 *               after the file was flushed and closed
 *   baseline    the parent splits lines and writes one JSON record per line, a chunk's records
 *               batched into one write on fs.createWriteStream (logJsonBatched, bench/lib/baselines.ts)
 *   floor       the parent only counts the bytes it reads (logPipeFloor): no process does less
 * Rounds interleave the variants ABC CBA...; a figure is the median over rounds, the ratio the
 * median of per-round paired ratios warden / baseline (same round, same machine load).
 * Goal (issue 5): warden >= 1.0x the baseline.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Supervisor } from '../lib/index.js';
import { logJsonBatched, logPipeFloor, type LogFigures } from './lib/baselines.js';
import { markedEnv, newMark } from './lib/marker.js';
import { row, type BenchReport, type Row } from './lib/report.js';
import { balancedOrder, max, median, min, now } from './lib/timing.js';

const LINE_BYTES = 80;
const lineWriter = fileURLToPath(new URL('./children/line-writer.js', import.meta.url));

/** Counts `\n` bytes without decoding the file. */
function countLines(path: string): number {
  const buf = readFileSync(path);
  let n = 0;
  for (let at = buf.indexOf(10); at !== -1; at = buf.indexOf(10, at + 1)) n++;
  return n;
}

/** One warden trial into a fresh file in `dir`. Throws when a line is missing or the task failed. */
async function wardenToFile(supervisor: Supervisor, mark: string, lines: number, dir: string, round: number): Promise<LogFigures & { records: number }> {
  const logFile = join(dir, `warden-${round}.jsonl`);
  const task = supervisor.start({ command: process.execPath, args: [lineWriter, String(lines)], env: markedEnv(mark), logFile, timeoutMs: 120_000 });
  let bytes = 0;
  let t0 = 0;
  task.on('stdout', (chunk) => {
    if (bytes === 0) t0 = now();
    bytes += chunk.length;
  });
  const result = await task.result;
  const ms = now() - t0;
  if (result.state !== 'success' || result.survivors !== 0 || result.logErrors) {
    throw new Error(`warden log task ended ${result.state} (${result.reason}, status ${result.status}, survivors ${result.survivors}, logErrors ${JSON.stringify(result.logErrors)})`);
  }
  if (bytes !== lines * LINE_BYTES) throw new Error(`warden log task: read ${bytes} bytes, expected ${lines * LINE_BYTES}`);
  // Every line is a record, plus warden's own few (comms statistics, the exit diagnostic).
  const records = countLines(logFile);
  if (records < lines || records > lines + 10) throw new Error(`warden log file has ${records} records for ${lines} lines`);
  await rm(logFile, { force: true });
  return { variant: 'warden', lines, bytes, ms, linesPerSec: (lines / ms) * 1000, records };
}

export async function runLogs(quick: boolean): Promise<BenchReport> {
  const t0 = now();
  const rounds = quick ? 2 : 5;
  const lines = quick ? 300_000 : 1_000_000;
  const mark = newMark('logs');
  const dir = await mkdtemp(join(tmpdir(), 'warden-bench-logs-'));
  const supervisor = new Supervisor();
  const variants: Array<{ name: string; once: (round: number) => Promise<LogFigures> }> = [
    { name: 'floor', once: () => logPipeFloor({ mark, lines }) },
    { name: 'baseline', once: () => logJsonBatched({ mark, lines }) },
    {
      name: 'warden',
      once: async (round) => {
        const figures = await wardenToFile(supervisor, mark, lines, dir, round);
        wardenRecords = figures.records;
        return figures;
      },
    },
  ];
  const all: Array<LogFigures & { round: number; name: string }> = [];
  let wardenRecords = 0;
  try {
    for (const v of variants) await v.once(-1); // warm-up, discarded
    for (let r = 0; r < rounds; r++) {
      for (const v of balancedOrder(variants, r)) all.push({ ...(await v.once(r)), round: r, name: v.name });
    }
  } finally {
    await supervisor.close();
    await rm(dir, { recursive: true, force: true });
  }

  const of = (name: string): Array<LogFigures & { round: number }> => all.filter((x) => x.name === name).sort((a, b) => a.round - b.round);
  const rates = (name: string): number[] => of(name).map((x) => x.linesPerSec);
  const spread = (name: string): string => `rounds ${rounds}x${lines.toLocaleString('en-US')} lines, range ${Math.round(min(rates(name))).toLocaleString('en-US')}-${Math.round(max(rates(name))).toLocaleString('en-US')}, median ${median(of(name).map((x) => x.ms)).toFixed(0)} ms, ${((lines * LINE_BYTES) / 1048576).toFixed(1)} MiB`;
  const paired = (name: string, base: string): number[] => of(name).map((x, i) => x.linesPerSec / of(base)[i]!.linesPerSec);
  const floor = median(rates('floor'));
  const baseline = median(rates('baseline'));
  const warden = median(rates('warden'));
  const vsBaseline = paired('warden', 'baseline');
  const vsFloor = paired('warden', 'floor');
  const rows: Row[] = [
    row({ name: 'pipe-read floor (count bytes only)', value: floor, unit: 'lines/s', detail: spread('floor') }),
    row({ name: 'baseline: JSON lines, batched createWriteStream', value: baseline, unit: 'lines/s', baseline: { name: 'floor', value: floor }, ratio: median(paired('baseline', 'floor')), detail: spread('baseline') }),
    row({
      name: 'warden: task logFile (JSON lines)',
      value: warden,
      unit: 'lines/s',
      baseline: { name: 'baseline', value: baseline },
      ratio: median(vsBaseline),
      goal: { of: 'ratio', op: '>=', target: 1.0 },
      detail: `${spread('warden')}; ratio = median of paired rounds (${min(vsBaseline).toFixed(2)}-${max(vsBaseline).toFixed(2)}); ${median(vsFloor).toFixed(2)}x the floor; clock ends when the result settles (file closed)`,
    }),
  ];
  const notes = [`warden's file holds ${wardenRecords.toLocaleString('en-US')} records per run: the ${lines.toLocaleString('en-US')} lines and warden's own (comms statistics, exit diagnostic)`];
  return { name: 'logs', rows, notes, durationMs: now() - t0, raw: all.map(({ name, round, ms, linesPerSec }) => ({ name, round, ms: Math.round(ms * 10) / 10, linesPerSec: Math.round(linesPerSec) })) };
}
