/**
 * Everything warden reads from /proc, and the one place that tests `process.platform`.
 * All reads are synchronous on purpose: a full scan of a few hundred processes takes a few
 * milliseconds synchronously and five times longer through the promise API (platform.md).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';

export const platformName: string = process.platform;
export const isLinux = platformName === 'linux';

export interface ProcStat {
  pid: number;
  /** One letter: R, S, D, Z, T, t, X, I ... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** Clock ticks since boot (field 22); with the pid it names one process for its lifetime. */
  startTime: number;
}

/**
 * Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so the
 * fields are split after the last ')'. Returns undefined when the process is gone.
 */
export function readStat(pid: number | 'self'): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  return parseStat(text);
}

export function parseStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const pid = Number.parseInt(text, 10);
  // After ") " come fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
  // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
  const rest = text.slice(close + 2).split(' ');
  if (rest.length < 20) return undefined;
  return {
    pid,
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    pgid: Number(rest[2]),
    sid: Number(rest[3]),
    startTime: Number(rest[19]),
  };
}

/** A process is alive when it exists and is not a zombie (kill(pid, 0) succeeds on zombies). */
export function isAliveStat(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X' && stat.state !== 'x';
}

/** Every numeric entry of /proc. */
export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/**
 * True when `/proc/<pid>/environ` holds exactly `needle` (a `NAME=value` entry). Returns false
 * for processes we may not read (another uid) or that are gone.
 */
export function environHas(pid: number, needle: Buffer): boolean {
  let env: Buffer;
  try {
    env = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return false;
  }
  let from = 0;
  for (;;) {
    const at = env.indexOf(needle, from);
    if (at < 0) return false;
    const startsEntry = at === 0 || env[at - 1] === 0;
    const endsEntry = at + needle.length === env.length || env[at + needle.length] === 0;
    if (startsEntry && endsEntry) return true;
    from = at + 1;
  }
}

/** Snapshot of the process table: every readable stat, by pid (only those `keep` accepts). */
export function scanStats(keep?: (pid: number) => boolean): Map<number, ProcStat> {
  const table = new Map<number, ProcStat>();
  for (const pid of listPids()) {
    if (keep && !keep(pid)) continue;
    const st = readStat(pid);
    if (st) table.set(pid, st);
  }
  return table;
}

function readNumber(path: string, pattern?: RegExp): number | undefined {
  try {
    const text = readFileSync(path, 'latin1');
    const m = pattern ? pattern.exec(text) : null;
    const n = Number(pattern ? m?.[1] : text.trim());
    return Number.isSafeInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

const pidMax = readNumber('/proc/sys/kernel/pid_max') ?? 32768;

/** Forks since boot (threads included): how far the pid allocator may have moved. */
export function readForkCount(): number | undefined {
  return readNumber('/proc/stat', /^processes (\d+)$/m);
}

let forkCache: { count: number; at: number } | undefined;

/**
 * A lower bound of the fork count, read at most every 100 ms. Good enough before a fork: an older
 * (smaller) count only makes `pidsSince` more cautious, never wrong.
 */
export function readForkCountAtMost100msOld(): number | undefined {
  const now = performance.now();
  if (forkCache && now - forkCache.at < 100) return forkCache.count;
  const count = readForkCount();
  forkCache = count === undefined ? undefined : { count, at: now };
  return count;
}

/**
 * Pids allocated since a process was forked, as a filter. Linux hands out pids in cyclic order,
 * so every process forked after `firstPid` has a pid in the cyclic range (firstPid, last pid],
 * as long as fewer forks than the pid space happened since (`forksAtFirst`, read just before the
 * fork). Returns undefined when that cannot be shown: then every pid is a candidate.
 */
export function pidsSince(firstPid: number, forksAtFirst: number | undefined): ((pid: number) => boolean) | undefined {
  const span = spanSince(firstPid, forksAtFirst);
  if (span === undefined) return undefined;
  return (pid) => (pid - firstPid + pidMax) % pidMax <= span;
}

/** How far (cyclically) the pid allocator moved past `firstPid`; undefined when unknown. */
function spanSince(firstPid: number, forksAtFirst: number | undefined): number | undefined {
  if (forksAtFirst === undefined) return undefined;
  const forks = readForkCount();
  const last = readNumber('/proc/sys/kernel/ns_last_pid');
  if (forks === undefined || last === undefined || forks - forksAtFirst >= pidMax - 1024) return undefined;
  return (last - firstPid + pidMax) % pidMax;
}

/** Ranges this short are read pid by pid instead of listing /proc. */
const DIRECT_SPAN = 64;

/**
 * The stats of the processes (not threads) whose pids were allocated since `firstPid` (see
 * `pidsSince`). A short range is read pid by pid, skipping the listing of /proc (a thread's
 * /proc entry answers too, so each hit is checked to be a thread group leader); a long one lists
 * /proc and reads only the pids in range; an unknown one reads every process.
 */
export function statsSince(firstPid: number, forksAtFirst: number | undefined): Map<number, ProcStat> {
  const span = spanSince(firstPid, forksAtFirst);
  if (span === undefined) return scanStats();
  if (span > DIRECT_SPAN) return scanStats((pid) => (pid - firstPid + pidMax) % pidMax <= span);
  const table = new Map<number, ProcStat>();
  for (let i = 0; i <= span; i++) {
    const pid = ((firstPid + i - 1) % pidMax) + 1;
    if (!existsSync(`/proc/${pid}/stat`)) continue;
    const st = readStat(pid);
    if (st && isProcess(pid)) table.set(pid, st);
  }
  return table;
}

/** True when `pid` names a process (thread group leader), not one of its other threads. */
function isProcess(pid: number): boolean {
  return readNumber(`/proc/${pid}/status`, /^Tgid:\s+(\d+)$/m) === pid;
}
