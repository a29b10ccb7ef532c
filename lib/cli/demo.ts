import { readFileSync } from 'node:fs';
import { Supervisor } from '../supervisor/supervisor.js';
import type { Task } from '../supervisor/task.js';
import type { TaskResult } from '../supervisor/types.js';
import { findMembers, type Member } from '../signal/members.js';
import { COOKIE_NAME } from '../process/spawn-task.js';
import { isAliveStat, listPids, readStat } from '../signal/proc.js';
import { environHas } from '../signal/proc.js';

/**
 * The task of the demo: plain children, a subshell that ignores SIGTERM, a `setsid` child (its
 * own session: a group kill misses it) and a double-forked daemon (re-parented to init: a parent
 * walk misses it). It prints `ready` once all of them run, then waits forever.
 */
export const DEMO_TREE = `
sleep 300 & sleep 300 &
( trap '' TERM; sleep 300 & wait ) &
setsid sleep 300 &
( setsid sh -c 'sleep 300 & exit 0' & ) &
sleep 0.2
echo ready
wait
`;

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

function describe(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ').replace(/\s+/g, ' ').slice(0, 38);
  } catch {
    return '?';
  }
}

function whyEscaped(m: Member, leaderPgid: number): string {
  const st = readStat(m.pid);
  if (!st) return '';
  if (st.pgid === leaderPgid) return 'in the task group';
  if (st.ppid === 1) return 'ESCAPED: double-forked daemon (parent is init, own session)';
  return 'ESCAPED: own session (setsid)';
}

/** `npm start`: runs the tree under warden, lets the timeout end it, and shows what happened. */
export async function runDemo(_argv: readonly string[]): Promise<number> {
  const supervisor = new Supervisor();
  out('warden demo: a task builds a process tree, hides part of it, and ignores SIGTERM.');
  const timeoutMs = 1500;
  const graceMs = 1000;
  const task: Task = supervisor.start({ id: 'demo-tree', command: 'bash', args: ['-c', DEMO_TREE], timeoutMs, graceMs, drainMs: 500 });
  task.on('spawn', (s) => out(`  started pid ${s.pid}, its own process group ${s.pgid}; containment: ${s.containment}; cookie ${COOKIE_NAME}=${s.cookie}`));
  let listed = false;
  task.on('stdout', (chunk) => {
    if (listed || !chunk.toString().includes('ready')) return;
    listed = true;
    const members = findMembers({ ...task.memberQuery(), cgroup: undefined, skipCookieScan: false });
    out(`  the tree, as /proc shows it (${members.length} processes):`);
    for (const m of members.sort((a, b) => a.pid - b.pid)) out(`    ${String(m.pid).padStart(7)}  ${describe(m.pid).padEnd(40)} ${whyEscaped(m, task.pgid)}`);
    out(`  warden's timeout (${timeoutMs} ms) will end it: ${task.spec.killSignal} + SIGCONT, ${graceMs} ms grace, then SIGKILL until nothing is left.`);
  });
  const result: TaskResult = await task.result;
  await supervisor.close();
  const td = result.teardown;
  out('');
  out(`  teardown (reason: ${result.reason}, containment: ${result.containment}):`);
  for (const s of td?.signals ?? []) {
    const who = s.target === 'cgroup' ? "the task's cgroup (cgroup.kill)" : s.target.startsWith('-') ? `process group ${s.target.slice(1)}` : `pid ${s.target}${s.escapee ? ' (escapee)' : ''}`;
    out(`    +${s.atMs.toFixed(1).padStart(7)} ms  ${s.signal.padEnd(8)} -> ${who}: ${s.outcome}`);
  }
  out('  steps:');
  for (const s of td?.steps ?? []) out(`    ${s.step.padEnd(11)} ${s.durationMs.toFixed(1).padStart(8)} ms  ${s.detail ?? ''}`);
  out(`  result: state ${result.state}, status ${result.status} (${result.signal ?? `exit ${result.exitCode}`}), ${result.signalled} processes signalled, ${result.escapees} escapees, ${result.survivors} survivors, pipes force-closed: ${result.pipesForceClosed}`);
  // An independent check: nothing alive in the whole process table carries the task's cookie.
  const cookie = Buffer.from(`${COOKIE_NAME}=${task.cookie}`);
  const alive = listPids().filter((pid) => pid !== process.pid && isAliveStat(readStat(pid)) && environHas(pid, cookie));
  out(`  independent /proc scan for the cookie: ${alive.length} live process(es) left.`);
  return alive.length === 0 && result.survivors === 0 ? 0 : 1;
}
