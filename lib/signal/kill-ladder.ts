/**
 * The teardown ladder: the one path by which every task ends when warden ends it, whatever the
 * cause (timeout, a 404/409/410 heartbeat, a spent heartbeat budget, overtime, supervisor stop,
 * cancel, or a leader that exited and left members behind).
 *
 *   1. graceful: killSignal, then SIGCONT, to the group and to every escapee found so far
 *   2. wait up to graceMs for every member to be gone
 *   3. force: scan, SIGKILL the group, the cgroup and every member found, wait for them to die;
 *      repeat until a scan finds no live member (at most maxKillRounds rounds)
 */
import { WardenError } from '../errors.js';
import type { Containment, SignalRecord, TeardownReport, TeardownStep, TerminationReason } from '../supervisor/types.js';
import type { TaskCgroup } from './cgroup.js';
import { findMembers, isStillAlive, type Member, type MemberQuery } from './members.js';
import type { SignalOutcome, Signaller } from './signaller.js';

export interface LadderContext {
  signaller: Signaller;
  query: MemberQuery;
  containment: Containment;
  reason: TerminationReason;
  killSignal: NodeJS.Signals;
  graceMs: number;
  maxKillRounds: number;
  /** True while the leader has not been reaped (its pid, and so its group id, are still ours). */
  leaderUnreaped(): boolean;
  /** The cgroup, when the task has one and the supervisor is certainly not inside it. */
  killableCgroup(): TaskCgroup | undefined;
  /** True once the caller wants the rest of the grace period skipped (a second stop request). */
  graceCut(): boolean;
  /** Resolves after ms on the supervisor's timer wheel. */
  sleep(ms: number): Promise<void>;
  /** A supervisor-authored log record. */
  log(level: 'info' | 'warning' | 'error', event: string, fields?: Record<string, unknown>): void;
}

/** Signal records kept per teardown; the rest are counted, not listed. */
const MAX_SIGNAL_RECORDS = 512;

export async function runKillLadder(ctx: LadderContext): Promise<TeardownReport> {
  const t0 = performance.now();
  const since = (): number => Math.round((performance.now() - t0) * 100) / 100;
  const signals: SignalRecord[] = [];
  const signalled = new Set<number>();
  const escapees = new Set<number>();
  const eperm = new Set<number>();
  const steps: TeardownStep[] = [];
  const q = ctx.query;

  const note = (signal: string, target: string, escapee: boolean, outcome: SignalOutcome | 'refused'): void => {
    if (signals.length < MAX_SIGNAL_RECORDS) signals.push({ atMs: since(), signal, target, escapee, outcome });
  };
  const sendOne = (m: Member, sig: NodeJS.Signals): SignalOutcome | 'refused' => {
    let outcome: SignalOutcome | 'refused';
    try {
      outcome = ctx.signaller.kill({ pid: m.pid, startTime: m.startTime }, sig);
    } catch (err) {
      if (!(err instanceof WardenError)) throw err;
      outcome = 'refused';
    }
    if (outcome === 'sent') signalled.add(m.pid);
    if (outcome === 'eperm') eperm.add(m.pid);
    note(sig, String(m.pid), m.escapee, outcome);
    return outcome;
  };
  const sendGroup = (members: readonly Member[], sig: NodeJS.Signals): boolean => {
    if (!q.isolated) return false;
    const inGroup = members.filter((m) => m.pgid === q.pgid);
    if (inGroup.length === 0 && !ctx.leaderUnreaped()) return false;
    let outcome: SignalOutcome | 'refused';
    try {
      outcome = ctx.signaller.killGroup(q.pgid, sig);
    } catch (err) {
      if (!(err instanceof WardenError)) throw err;
      outcome = 'refused';
    }
    note(sig, `-${q.pgid}`, false, outcome);
    if (outcome === 'sent') for (const m of inGroup) signalled.add(m.pid);
    return outcome === 'sent' || outcome === 'gone';
  };
  /** Signals the group once and every member outside it (or every member when not isolated). */
  const sendAll = (members: readonly Member[], sig: NodeJS.Signals): void => {
    const groupDone = sendGroup(members, sig);
    for (const m of members) {
      if (m.escapee) escapees.add(m.pid);
      if (groupDone && m.pgid === q.pgid) continue;
      sendOne(m, sig);
    }
  };
  const step = (name: TeardownStep['step'], started: number, detail?: string): void => {
    steps.push({ step: name, startedAtMs: Math.round((started - t0) * 100) / 100, durationMs: Math.round((performance.now() - started) * 100) / 100, ...(detail ? { detail } : {}) });
  };
  // With a cgroup, members that are not in it (a task that moved a process out, which only
  // root can do) are still found by the full scan; between scans only they need checking.
  let outside: Member[] = [];
  const scan = (): Member[] => {
    const found = findMembers(q);
    outside = found.filter((m) => m.via !== 'cgroup');
    return found;
  };
  const allGone = (): boolean => {
    const cg = q.cgroup;
    if (cg) return !cg.populated() && !outside.some(isStillAlive);
    return scan().length === 0;
  };

  // 1. Graceful (skipped when graceMs is 0: the caller asked for SIGKILL at once).
  let started = performance.now();
  let goneGracefully = false;
  if (ctx.graceMs > 0) {
    const first = scan();
    sendAll(first, ctx.killSignal);
    if (ctx.killSignal !== 'SIGCONT') sendAll(first, 'SIGCONT');
    step('graceful', started, `${ctx.killSignal} + SIGCONT to ${first.length} member(s)`);
    ctx.log('info', `sent ${ctx.killSignal} to the task's ${q.isolated ? `process group ${q.pgid}` : `process ${q.rootPid}`}${escapees.size ? ` and ${escapees.size} escapee(s)` : ''}`, {
      reason: ctx.reason,
      members: first.length,
      escapees: [...escapees],
    });

    // 2. Wait for the members to go, at most graceMs.
    started = performance.now();
    let interval = 5;
    for (;;) {
      if (allGone()) {
        goneGracefully = true;
        break;
      }
      const left = ctx.graceMs - (performance.now() - started);
      if (left <= 0 || ctx.graceCut()) break;
      await ctx.sleep(Math.min(interval, left));
      interval = Math.min(interval * 2, 100);
    }
    step('grace-wait', started, goneGracefully ? 'every member exited' : ctx.graceCut() ? 'grace cut short by a second stop request' : `grace of ${ctx.graceMs} ms ran out`);
  }

  // 3. Force: scan + SIGKILL until a scan is empty.
  started = performance.now();
  let rounds = 0;
  let survivors: Member[] = [];
  if (!goneGracefully) {
    for (;;) {
      const members = scan();
      const cg = ctx.killableCgroup();
      const cgPopulated = cg?.populated() ?? false;
      if (members.length === 0 && !cgPopulated) break;
      if (rounds >= ctx.maxKillRounds) {
        survivors = members;
        break;
      }
      rounds += 1;
      if (cg && cgPopulated && cg.writeKill()) note('SIGKILL', 'cgroup', false, 'sent');
      sendAll(members, 'SIGKILL');
      for (const m of members) if (m.escapee) escapees.add(m.pid);
      // Wait for this round's targets to die (SIGKILL is delivered asynchronously), then rescan
      // for anything forked meanwhile.
      let wait = 1;
      let waited = 0;
      while (waited < 250 && (members.some(isStillAlive) || (cg?.populated() ?? false))) {
        await ctx.sleep(wait);
        waited += wait;
        wait = Math.min(wait * 2, 25);
      }
      if (eperm.size > 0 && members.every((m) => eperm.has(m.pid) || !isStillAlive(m))) {
        survivors = members.filter((m) => eperm.has(m.pid));
        break;
      }
    }
    step('force', started, `${rounds} round(s) of scan + SIGKILL`);
    if (rounds > 0) ctx.log('warning', ctx.graceMs > 0 ? `escalated to SIGKILL after ${ctx.graceMs} ms: ${rounds} round(s)` : `sent SIGKILL at once (graceMs 0): ${rounds} round(s)`, { reason: ctx.reason, escapees: [...escapees] });
  }
  if (eperm.size > 0) ctx.log('error', `not permitted to signal ${eperm.size} member(s)`, { pids: [...eperm] });
  if (survivors.length > 0) ctx.log('error', `${survivors.length} member(s) survived the teardown`, { pids: survivors.map((m) => m.pid) });

  return {
    reason: ctx.reason,
    containment: ctx.containment,
    steps,
    signals,
    signalled: signalled.size,
    escapees: escapees.size,
    escapeePids: [...escapees],
    epermPids: [...eperm],
    killRounds: rounds,
    survivors: survivors.length,
    durationMs: since(),
  };
}
