import { readFileSync } from 'node:fs';
import { COOKIE_NAME } from '../process/spawn-task.js';
import { findMembers } from '../signal/members.js';
import { environHas, isAliveStat, listPids, readStat } from '../signal/proc.js';
import type { Task } from '../supervisor/task.js';
import type { TaskResult } from '../supervisor/types.js';

const t0 = performance.now();

export const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

/** A timeline line: milliseconds since the demo began. */
export const at = (line: string): void => out(`  ${`+${Math.round(performance.now() - t0)} ms`.padStart(10)}  ${line}`);

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ').replace(/\s+/g, ' ').slice(0, 36);
  } catch {
    return '?';
  }
}

/** Lists the task's members as /proc shows them, with why each escaped its group. */
export function printTree(task: Task): void {
  const members = findMembers({ ...task.memberQuery(), cgroup: undefined, skipCookieScan: false });
  out(`              the task's tree (${members.length} processes, found in /proc):`);
  for (const m of members.sort((a, b) => a.pid - b.pid)) {
    const st = readStat(m.pid);
    const why = !st ? '' : st.pgid === task.pgid ? 'in the task group' : st.ppid === 1 ? 'ESCAPED: double-forked daemon (parent is init)' : 'ESCAPED: setsid, own session';
    out(`                ${String(m.pid).padStart(7)}  ${commandLine(m.pid).padEnd(36)}  ${why}`);
  }
}

/** What the teardown did, step by step, and the result. */
export function printTeardown(result: TaskResult): void {
  const td = result.teardown;
  out(`              teardown (reason ${result.reason}, containment ${result.containment}):`);
  for (const s of td?.signals ?? []) {
    const who = s.target === 'cgroup' ? "the task's cgroup (cgroup.kill)" : s.target.startsWith('-') ? `process group ${s.target.slice(1)}` : `pid ${s.target}${s.escapee ? ' (escapee)' : ''}`;
    out(`                +${s.atMs.toFixed(1).padStart(7)} ms  ${s.signal.padEnd(8)} -> ${who}: ${s.outcome}`);
  }
  for (const s of td?.steps ?? []) out(`                step ${s.step.padEnd(11)} ${s.durationMs.toFixed(1).padStart(8)} ms  ${s.detail ?? ''}`);
  out(`              result: state ${result.state}, reason ${result.reason}, ${result.signalled} signalled, ${result.escapees} escapees, ${result.survivors} survivors`);
}

/** An independent check: live processes anywhere that still carry the task's cookie. */
export function cookieSurvivors(task: Task): number {
  const cookie = Buffer.from(`${COOKIE_NAME}=${task.cookie}`);
  return listPids().filter((pid) => pid !== process.pid && isAliveStat(readStat(pid)) && environHas(pid, cookie)).length;
}
