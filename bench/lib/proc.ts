/**
 * The bench's own /proc reader. Deliberately independent of lib/signal so the peers (tree-kill,
 * a bare group kill, a bare scan) and warden are judged by the same, separate eyes.
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface Stat {
  pid: number;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  startTime: number;
}

/** A process as the bench records it: the pid and its start time name it for its lifetime. */
export interface ProcRef {
  pid: number;
  startTime: number;
}

export function readStat(pid: number | 'self'): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).split(' ');
  if (f.length < 20) return undefined;
  return { pid: Number.parseInt(text, 10), state: f[0]!, ppid: Number(f[1]), pgid: Number(f[2]), sid: Number(f[3]), startTime: Number(f[19]) };
}

const deadStates = new Set(['Z', 'X', 'x']);

/** Dead = zombie, reaped, or the pid now names another process. */
export function isGone(p: ProcRef): boolean {
  const st = readStat(p.pid);
  return st === undefined || st.startTime !== p.startTime || deadStates.has(st.state);
}

export function isLive(st: Stat | undefined): st is Stat {
  return st !== undefined && !deadStates.has(st.state);
}

export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/**
 * True when the NUL-separated environment block holds an entry equal to `entry` or, with
 * `prefix`, an entry starting with it.
 */
export function environMatches(env: Buffer, entry: Buffer, prefix: boolean): boolean {
  let from = 0;
  for (;;) {
    const at = env.indexOf(entry, from);
    if (at < 0) return false;
    const end = at + entry.length;
    if ((at === 0 || env[at - 1] === 0) && (prefix || end === env.length || env[end] === 0)) return true;
    from = at + 1;
  }
}

export function readEnviron(pid: number): Buffer | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`);
  } catch {
    return undefined;
  }
}

/**
 * One pass over the process table: live processes whose environment carries `entry` (exactly,
 * or as a prefix). Zombies have an empty environ and are never returned.
 */
export function findByEnviron(entry: Buffer, prefix: boolean): Stat[] {
  const out: Stat[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    const env = readEnviron(pid);
    if (!env || !environMatches(env, entry, prefix)) continue;
    const st = readStat(pid);
    if (isLive(st)) out.push(st);
  }
  return out;
}
