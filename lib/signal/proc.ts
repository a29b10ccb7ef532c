/**
 * Everything warden reads from /proc, and the one place that tests `process.platform`.
 * All reads are synchronous on purpose: a full scan of a few hundred processes takes a few
 * milliseconds synchronously and five times longer through the promise API (platform.md).
 */
import { closeSync, existsSync, openSync, readSync, readdirSync } from 'node:fs';

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
  const text = readProcText(`/proc/${pid}/stat`);
  return text === undefined ? undefined : parseStat(text);
}

export function parseStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const pid = Number.parseInt(text, 10);
  // After ") " come fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
  // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime. Walked by
  // index, not split: this runs for every process a scan reads.
  const starts = fieldStarts;
  let at = close + 2;
  for (let field = 3; field <= 22; field++) {
    if (at <= 0 || at > text.length) return undefined;
    starts[field] = at;
    at = text.indexOf(' ', at) + 1;
  }
  return {
    pid,
    state: text.slice(starts[3], starts[3]! + 1) || '?',
    ppid: numberAt(text, starts[4]!),
    pgid: numberAt(text, starts[5]!),
    sid: numberAt(text, starts[6]!),
    startTime: numberAt(text, starts[22]!),
  };
}

/** Where fields 3..22 of the stat line being parsed start (reused: parsing is synchronous). */
const fieldStarts: number[] = new Array<number>(23).fill(0);

/** The decimal integer (optionally negative) at `at`, up to the next space or end; NaN if none. */
function numberAt(text: string, at: number): number {
  let i = at;
  let sign = 1;
  if (text.charCodeAt(i) === 45) {
    sign = -1;
    i++;
  }
  let n = 0;
  let digits = 0;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
    digits++;
  }
  if (digits === 0 || (i < text.length && text.charCodeAt(i) !== 32 && text.charCodeAt(i) !== 10)) return Number.NaN;
  return sign * n;
}

/** A process is alive when it exists and is not a zombie (kill(pid, 0) succeeds on zombies). */
export function isAliveStat(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X' && stat.state !== 'x';
}

/**
 * One buffer for the /proc reads (they are synchronous, so they never overlap). A file that does
 * not fit is read into a buffer of its own, so this one stays at its size. `readFileSync` would
 * allocate 64 KiB per read of a /proc file (whose size shows as 0) and stat it first.
 */
const procBuf = Buffer.allocUnsafe(16384);

/**
 * The text of a small kernel file (/proc, cgroupfs); undefined when it cannot be opened or read
 * (gone, not permitted).
 */
export function readProcText(path: string): string | undefined {
  return readProcBytes(path)?.toString('latin1');
}

/**
 * A whole /proc file; undefined when it cannot be opened or read. The bytes may sit in the shared
 * buffer: valid until the next read.
 */
function readProcBytes(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    let buf = procBuf;
    let length = 0;
    for (;;) {
      if (length === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, length);
        buf = bigger;
      }
      const n = readSync(fd, buf, length, buf.length - length, null);
      // Read until 0: a seq_file (cgroup.procs, say) may answer short before its end when the
      // next record does not fit the room left.
      if (n === 0) return buf.subarray(0, length);
      length += n;
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
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
  const env = readProcBytes(`/proc/${pid}/environ`);
  if (env === undefined) return false;
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
  const text = readProcText(path);
  if (text === undefined) return undefined;
  const n = Number(pattern ? pattern.exec(text)?.[1] : text.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

const pidMax = readNumber('/proc/sys/kernel/pid_max') ?? 32768;

const PROCESSES_LINE = Buffer.from('\nprocesses ', 'latin1');

/** Forks since boot (threads included): how far the pid allocator may have moved. */
export function readForkCount(): number | undefined {
  // Found in the bytes: /proc/stat is a kilobyte or more (per-CPU lines, the interrupt counts)
  // and only this line is wanted, on every leftover check.
  const stat = readProcBytes('/proc/stat');
  if (stat === undefined) return undefined;
  const at = stat.indexOf(PROCESSES_LINE);
  if (at < 0) return undefined;
  let n = 0;
  let digits = 0;
  for (let i = at + PROCESSES_LINE.length; i < stat.length; i++) {
    const c = stat[i]!;
    if (c === 10) break;
    if (c < 48 || c > 57) return undefined;
    n = n * 10 + (c - 48);
    digits++;
  }
  return digits > 0 && Number.isSafeInteger(n) ? n : undefined;
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
 *
 * `skip` names pids in the range that the caller knows are not wanted (see SpawnLedger); it is
 * consulted only when the range is known, since only then is a pid in it handed out once.
 */
export function statsSince(firstPid: number, forksAtFirst: number | undefined, skip?: (pid: number) => boolean): Map<number, ProcStat> {
  const span = spanSince(firstPid, forksAtFirst);
  if (span === undefined) return scanStats();
  if (span > DIRECT_SPAN) return scanStats((pid) => (pid - firstPid + pidMax) % pidMax <= span && !(skip && pid !== firstPid && skip(pid)));
  const table = new Map<number, ProcStat>();
  for (let i = 0; i <= span; i++) {
    const pid = ((firstPid + i - 1) % pidMax) + 1;
    if (skip && i > 0 && skip(pid)) continue;
    // A missing pid is the common case; existsSync answers it without an exception.
    if (!existsSync(`/proc/${pid}/stat`)) continue;
    const text = readProcText(`/proc/${pid}/stat`);
    const st = text === undefined ? undefined : parseStat(text);
    if (st && isProcess(pid, text!)) table.set(pid, st);
  }
  return table;
}

/**
 * True when `pid` names a process (thread group leader), not one of its other threads. The stat
 * line answers: its field 38 (exit_signal) is -1 exactly for a thread that is not its group's
 * leader (the kernel sets it so for every CLONE_THREAD child, and a leader's is a valid signal
 * number or 0). Without that field, /proc/<pid>/status's Tgid decides.
 */
function isProcess(pid: number, statText: string): boolean {
  const exitSignal = statField(statText, 38);
  if (exitSignal !== undefined) return exitSignal !== '-1';
  return readNumber(`/proc/${pid}/status`, /^Tgid:\s+(\d+)$/m) === pid;
}

/** Field `n` (1-based, n >= 3) of a stat line, counted after the command name; undefined when absent. */
function statField(text: string, n: number): string | undefined {
  let at = text.lastIndexOf(')') + 1;
  if (at === 0) return undefined;
  for (let field = 2; field < n; field++) {
    at = text.indexOf(' ', at) + 1;
    if (at === 0) return undefined;
  }
  const end = text.indexOf(' ', at);
  const value = text.slice(at, end < 0 ? text.length : end).trim();
  return value === '' ? undefined : value;
}
