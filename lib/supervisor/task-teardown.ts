import { COOKIE_NAME } from '../process/spawn-task.js';
import type { TaskCgroup } from '../signal/cgroup.js';
import { runKillLadder } from '../signal/kill-ladder.js';
import { findMembers, type MemberQuery } from '../signal/members.js';
import { isAliveStat, readStat } from '../signal/proc.js';
import type { ResolvedSpec } from './options.js';
import type { LogLevel, TaskDeps } from './task-types.js';
import type { Containment, TeardownReport, TerminationReason } from './types.js';

/** What the teardown needs to know of its task, read when needed (the leader changes state). */
export interface TeardownHost {
  id: string;
  spec: ResolvedSpec;
  cookie: string;
  deps: TaskDeps;
  leader(): { pid: number | undefined; startTime: number; pgid: number; exited: boolean; groupHeld: boolean; forksAtSpawn: number | undefined; spawnSeq: number };
  cgroup(): TaskCgroup | undefined;
  containment(): Containment;
  graceCut(): boolean;
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

/**
 * A task's membership and its one teardown: who belongs to the task, the ladder that ends them,
 * and how many are left.
 *
 * Invariants:
 * 1. The ladder runs at most once (`state` goes none -> running -> done, never back).
 * 2. `countSurvivors` reads the cgroup or scans the process table only when the last look found
 *    something left (or never looked).
 */
export class TaskTeardown {
  state: 'none' | 'running' | 'done' = 'none';
  report: TeardownReport | null = null;
  /** Members found by the last look (leftover check or teardown); undefined: never looked. */
  private lastMemberCount: number | undefined;
  /** `WARDEN_TASK=<cookie>` as bytes, made on the first look. */
  private cookieEntry: Buffer | undefined;

  constructor(private readonly host: TeardownHost) {}

  query(): MemberQuery {
    const { pid, startTime, pgid, forksAtSpawn, spawnSeq } = this.host.leader();
    const cgroup = this.host.cgroup();
    const ledger = this.host.deps.ledger;
    return {
      rootPid: pid ?? -1,
      rootStartTime: startTime,
      pgid,
      ...(pid !== undefined && forksAtSpawn !== undefined ? { forksAtSpawn, notMember: (p: number) => ledger.forkedAfter(spawnSeq, p) } : {}),
      isolated: this.host.spec.isolate,
      ...(this.host.containment() === 'subreaper' ? { rootIsReaper: true } : {}),
      cookie: (this.cookieEntry ??= Buffer.from(`${COOKIE_NAME}=${this.host.cookie}`)),
      ...(cgroup ? { cgroup, skipCookieScan: true } : {}),
    };
  }

  /** Whether anything of the task is alive (the leftover check when the leader exits). */
  hasMembers(): boolean {
    const cgroup = this.host.cgroup();
    if (cgroup) {
      const populated = cgroup.populated();
      this.lastMemberCount = populated ? undefined : 0;
      return populated;
    }
    this.lastMemberCount = findMembers(this.query()).length;
    return this.lastMemberCount > 0;
  }

  /**
   * Members alive at settle. The last look is reused when it found nothing (nothing left could
   * have forked since, nor entered the task's cgroup); otherwise the cgroup answers, or the
   * table is scanned.
   */
  countSurvivors(): number {
    if (this.host.leader().pid === undefined) return 0;
    const known = this.report ? this.report.survivors : this.lastMemberCount;
    if (known === 0) return 0;
    const cgroup = this.host.cgroup();
    if (cgroup) return cgroup.procs().filter((p) => isAliveStat(readStat(p))).length;
    return findMembers(this.query()).length;
  }

  /** Runs the ladder once; `done` gets the report (null if the ladder itself failed). */
  run(reason: TerminationReason, done: (report: TeardownReport | null) => void): void {
    if (this.state !== 'none') return;
    this.state = 'running';
    const { deps, spec, id } = this.host;
    const cgroups = deps.cgroups;
    void runKillLadder({
      signaller: deps.signaller,
      // The teardown scans the whole table even with a cgroup: belt and braces.
      query: { ...this.query(), skipCookieScan: false },
      containment: this.host.containment(),
      reason,
      killSignal: spec.killSignal,
      graceMs: spec.graceMs,
      maxKillRounds: spec.maxKillRounds,
      leaderUnreaped: () => this.host.leader().groupHeld,
      graceCut: () => this.host.graceCut(),
      killableCgroup: () => {
        const cg = this.host.cgroup();
        return cg && cgroups && !cgroups.containsSelf(cg) ? cg : undefined;
      },
      sleep: (ms) => new Promise<void>((resolve) => deps.reactor.timer(id, ms, resolve)),
      log: (level, event, fields) => this.host.log(level, event, fields),
    }).then(
      (report) => {
        this.state = 'done';
        this.report = report;
        this.lastMemberCount = report.survivors;
        done(report);
      },
      (err: unknown) => {
        this.state = 'done';
        this.host.log('error', `teardown failed: ${(err as Error)?.message ?? String(err)}`);
        done(null);
      },
    );
  }
}
