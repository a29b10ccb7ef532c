/**
 * Every process a bench starts carries `WARDEN_BENCH_MARK=<run id>.<label>` in its environment.
 * The marker is how a bench counts survivors and how it cleans up; it is the only way, besides
 * pids it recorded itself, that a bench picks a process to signal.
 *
 * Signals: never pid <= 1, never this process, never this process's group; a pid found earlier
 * is signalled only if it still has the start time it was found with.
 */
import { findByEnviron, isGone, readStat, type ProcRef } from './proc.js';
import { pollUntil } from './timing.js';

export const MARK_VAR = 'WARDEN_BENCH_MARK';

/** Unique per `node dist/bench/run.js`: every mark of this run starts with it. */
export const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;

const ownPgid = readStat('self')?.pgid ?? -1;
let seq = 0;

/** A fresh mark for one trial or one bench phase. */
export function newMark(label: string): string {
  return `${RUN_ID}.${label.replace(/[^A-Za-z0-9_-]/g, '_')}.${++seq}`;
}

/** The environment entry `WARDEN_BENCH_MARK=<mark>` as bytes, as /proc/<pid>/environ holds it. */
export function markEntry(mark: string): Buffer {
  return Buffer.from(`${MARK_VAR}=${mark}`);
}

/** A copy of this process's environment with the mark added. */
export function markedEnv(mark: string): NodeJS.ProcessEnv {
  return { ...process.env, [MARK_VAR]: mark };
}

const entry = markEntry;

/** Live processes carrying exactly this mark. */
export function findMarked(mark: string): ProcRef[] {
  return findByEnviron(entry(mark), false).map((s) => ({ pid: s.pid, startTime: s.startTime }));
}

/** Live processes carrying any mark of this run. */
export function findRunMarked(): ProcRef[] {
  return findByEnviron(entry(`${RUN_ID}.`), true).map((s) => ({ pid: s.pid, startTime: s.startTime }));
}

function refused(pid: number): boolean {
  return !Number.isInteger(pid) || pid <= 1 || pid === process.pid;
}

/** Signals one recorded process; false when refused or already gone. */
export function killRecorded(p: ProcRef, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  if (refused(p.pid) || isGone(p)) return false;
  try {
    process.kill(p.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Signals a pid just found by a scan (no start-time re-check); false when refused or gone. */
export function killPid(pid: number, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  if (refused(pid)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Signals a process group the bench created (a detached root's pid); never our own group. */
export function killGroup(pgid: number, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  if (refused(pgid) || pgid === ownPgid) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGKILLs every live process carrying `mark` (or, with `mark` undefined, any mark of this run)
 * until none is left or the deadline passes. Returns how many were left at the end (0 = clean).
 */
export async function killMarked(mark: string | undefined, deadlineMs = 3000): Promise<number> {
  const find = (): ProcRef[] => (mark === undefined ? findRunMarked() : findMarked(mark));
  let left: ProcRef[] = [];
  await pollUntil(() => {
    left = find();
    for (const p of left) killRecorded(p);
    return left.length === 0;
  }, deadlineMs);
  return left.length;
}
