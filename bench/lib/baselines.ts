/**
 * Baselines that warden's figures are divided by. Each is a standalone function so any bench can
 * measure its baseline in the same run as warden (figures move between runs and machines; only
 * same-run ratios mean anything). Methods follow /work/shared/reference/baselines.md.
 *
 * Every child started here carries the caller's bench mark in its environment and ends on its
 * own when the function returns.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { markedEnv } from './marker.js';
import { now } from './timing.js';

const childScript = (name: string): string => fileURLToPath(new URL(`../children/${name}.js`, import.meta.url));

const exited = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

const closed = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    child.once('close', () => resolve());
  });

// ---------------------------------------------------------------------------------------------
// Spawn

/**
 * One raw spawn of `/bin/true`: `spawn()` call until `close` (exit + stdio closed), stdio piped.
 * Pass the same env object every time; building it is not part of a spawn.
 */
export function rawSpawnTrue(env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true', [], { stdio: 'pipe', env });
    child.once('error', reject);
    child.once('close', () => resolve());
  });
}

// ---------------------------------------------------------------------------------------------
// Comms: a Node parent and a Node child, ~100-byte message, echo.

export interface CommsOptions {
  /** Environment mark of the child (marker.newMark). */
  mark: string;
  /** Sequential round trips timed (after a warm-up of 1,000). Default 20,000. */
  sequential?: number;
  /** Messages written in one go, all echoes awaited. Default 200,000. */
  burst?: number;
}

export interface CommsFigures {
  variant: string;
  /** `cpuUsPerRoundTrip`: CPU (user + system) of the requesting process per sequential round trip. */
  sequential: { count: number; ms: number; roundTripsPerSec: number; cpuUsPerRoundTrip?: number };
  burst: { count: number; ms: number; roundTripsPerSec: number };
}

const MESSAGE_BYTES = 100;

function figures(variant: string, seqCount: number, seqMs: number, burstCount: number, burstMs: number): CommsFigures {
  return {
    variant,
    sequential: { count: seqCount, ms: seqMs, roundTripsPerSec: (seqCount / seqMs) * 1000 },
    burst: { count: burstCount, ms: burstMs, roundTripsPerSec: (burstCount / burstMs) * 1000 },
  };
}

/** `fork` + `process.send`, serialization `json`: the child sends every message back. */
export async function nodeIpcEcho(opts: CommsOptions): Promise<CommsFigures> {
  const seqCount = opts.sequential ?? 20_000;
  const burstCount = opts.burst ?? 200_000;
  const child = fork(childScript('ipc-echo'), [], { serialization: 'json', stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: markedEnv(opts.mark) });
  const gone = exited(child);
  try {
    const base = { seq: 0, body: '' };
    base.body = 'x'.repeat(MESSAGE_BYTES - JSON.stringify(base).length);
    let onEcho: () => void = () => {};
    child.on('message', () => onEcho());
    const roundTrips = async (n: number): Promise<number> => {
      const t0 = now();
      for (let i = 0; i < n; i++) {
        await new Promise<void>((resolve) => {
          onEcho = resolve;
          child.send({ seq: i, body: base.body });
        });
      }
      return now() - t0;
    };
    await roundTrips(1000);
    const cpu0 = process.cpuUsage();
    const seqMs = await roundTrips(seqCount);
    const cpu = process.cpuUsage(cpu0);
    let got = 0;
    const all = new Promise<void>((resolve) => {
      onEcho = () => {
        if (++got === burstCount) resolve();
      };
    });
    const t0 = now();
    for (let i = 0; i < burstCount; i++) child.send({ seq: i, body: base.body });
    await all;
    const burstMs = now() - t0;
    const result = figures('node-ipc-json', seqCount, seqMs, burstCount, burstMs);
    result.sequential.cpuUsPerRoundTrip = (cpu.user + cpu.system) / seqCount;
    return result;
  } finally {
    if (child.connected) child.disconnect();
    await gone;
  }
}

/**
 * A socket on fd 3 (stdio 'pipe'), fixed-size raw bytes echoed by the child, no framing and no
 * codec: the floor any framed channel is measured against. One `write()` per message.
 */
export async function bareSocketEcho(opts: CommsOptions): Promise<CommsFigures> {
  const seqCount = opts.sequential ?? 20_000;
  const burstCount = opts.burst ?? 200_000;
  const child = spawn(process.execPath, [childScript('socket-echo')], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], env: markedEnv(opts.mark) });
  const done = closed(child);
  const sock = child.stdio[3] as Socket;
  try {
    const msg = Buffer.alloc(MESSAGE_BYTES, 0x61);
    let received = 0;
    let want = 0;
    let onReached: () => void = () => {};
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= want) onReached();
    });
    const until = (bytes: number): Promise<void> =>
      new Promise((resolve) => {
        want = bytes;
        if (received >= want) resolve();
        else onReached = resolve;
      });
    const roundTrips = async (n: number): Promise<number> => {
      const t0 = now();
      for (let i = 0; i < n; i++) {
        const target = received + MESSAGE_BYTES;
        sock.write(msg);
        await until(target);
      }
      return now() - t0;
    };
    await roundTrips(1000);
    const seqMs = await roundTrips(seqCount);
    const target = received + burstCount * MESSAGE_BYTES;
    const t0 = now();
    for (let i = 0; i < burstCount; i++) sock.write(msg);
    await until(target);
    const burstMs = now() - t0;
    return figures('bare-socket-echo', seqCount, seqMs, burstCount, burstMs);
  } finally {
    sock.end();
    await done;
  }
}

// ---------------------------------------------------------------------------------------------
// Logs: a child writes `lines` lines of 80 bytes to stdout.

export interface LogOptions {
  mark: string;
  /** Default 1,000,000. */
  lines?: number;
}

export interface LogFigures {
  variant: string;
  lines: number;
  bytes: number;
  /** From the first byte read to the last byte handled (written and flushed, for file sinks). */
  ms: number;
  linesPerSec: number;
}

const LINE_BYTES = 80;

function startWriter(opts: LogOptions): { child: ChildProcess; lines: number; done: Promise<void> } {
  const lines = opts.lines ?? 1_000_000;
  const child = spawn(process.execPath, [childScript('line-writer'), String(lines)], { stdio: ['ignore', 'pipe', 'inherit'], env: markedEnv(opts.mark) });
  return { child, lines, done: closed(child) };
}

/** The pipe-read floor: the parent counts bytes and does nothing else. */
export async function logPipeFloor(opts: LogOptions): Promise<LogFigures> {
  const { child, lines, done } = startWriter(opts);
  let bytes = 0;
  let t0 = 0;
  child.stdout!.on('data', (chunk: Buffer) => {
    if (bytes === 0) t0 = now();
    bytes += chunk.length;
  });
  await new Promise<void>((resolve) => child.stdout!.once('end', () => resolve()));
  const ms = now() - t0;
  await done;
  if (bytes !== lines * LINE_BYTES) throw new Error(`log floor: read ${bytes} bytes, expected ${lines * LINE_BYTES}`);
  return { variant: 'pipe-read-floor', lines, bytes, ms, linesPerSec: (lines / ms) * 1000 };
}

/**
 * The parent splits lines and writes one JSON record per line
 * (`{"ts":<epoch ms>,"stream":"stdout","line":"..."}`), the records of one chunk joined into one
 * `write()` on an `fs.createWriteStream`, reading paused while the file stream is full.
 */
export async function logJsonBatched(opts: LogOptions): Promise<LogFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-bench-logs-'));
  try {
    const file = createWriteStream(join(dir, 'task.jsonl'));
    const finished = new Promise<void>((resolve, reject) => {
      file.once('finish', () => resolve());
      file.once('error', reject);
    });
    const { child, lines, done } = startWriter(opts);
    const out = child.stdout!;
    const decoder = new StringDecoder('utf8');
    let pending = '';
    let count = 0;
    let bytes = 0;
    let t0 = 0;
    const record = (ts: number, line: string): string => `{"ts":${ts},"stream":"stdout","line":${JSON.stringify(line)}}\n`;
    out.on('data', (chunk: Buffer) => {
      if (bytes === 0) t0 = now();
      bytes += chunk.length;
      const text = pending + decoder.write(chunk);
      const ts = Date.now();
      let batch = '';
      let from = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
        batch += record(ts, text.slice(from, nl));
        count++;
        from = nl + 1;
      }
      pending = text.slice(from);
      if (batch && !file.write(batch)) {
        out.pause();
        file.once('drain', () => out.resume());
      }
    });
    await new Promise<void>((resolve) => out.once('end', () => resolve()));
    const rest = pending + decoder.end();
    if (rest) {
      file.write(record(Date.now(), rest));
      count++;
    }
    file.end();
    await finished;
    const ms = now() - t0;
    await done;
    if (count !== lines) throw new Error(`log JSON baseline: wrote ${count} records, expected ${lines}`);
    return { variant: 'json-lines-batched-createWriteStream', lines, bytes, ms, linesPerSec: (lines / ms) * 1000 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
