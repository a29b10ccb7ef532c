/**
 * Finding the members of a task: everything it started that is still alive, including the
 * processes that left its group (setsid children, double-forked daemons).
 */
import { environHas, isAliveStat, readStat, scanStats, statsSince, type ProcStat } from './proc.js';
import type { TaskCgroup } from './cgroup.js';

export interface Member {
  pid: number;
  startTime: number;
  pgid: number;
  /** Not in the task's process group (or, for a task that is not isolated, not a descendant by ppid). */
  escapee: boolean;
  via: 'cgroup' | 'group' | 'session' | 'parent' | 'cookie';
}

export interface MemberQuery {
  /** The task's leader. */
  rootPid: number;
  /** The leader's /proc start time: nothing older than it can be a member (pid reuse). */
  rootStartTime: number;
  /** The leader's process group. An escapee is a member outside it. */
  pgid: number;
  /** Isolated tasks own their group and session, so every process in them is a member. */
  isolated: boolean;
  /** `WARDEN_TASK=<cookie>` as bytes. */
  cookie: Buffer;
  cgroup?: TaskCgroup;
  /**
   * The leader is warden-reaper (the subreaper tier): not a member itself (it ignores the
   * graceful signal and exits once it has no child left), but the walk by parent pid starts from
   * it, since every orphan of the task is re-parented to it.
   */
  rootIsReaper?: boolean;
  /** Skip the environment scan (the cgroup tier is authoritative and fast). */
  skipCookieScan?: boolean;
  /**
   * Forks since boot read just before the leader was forked. With it, only pids allocated since
   * the leader are read (a member is always younger than the leader): a scan costs a listing of
   * /proc plus a few reads instead of a read per process.
   */
  forksAtSpawn?: number;
  /**
   * Pids that cannot be members (the supervisor's leaders forked after this one, SpawnLedger),
   * skipped without a read where the range since the leader is known.
   */
  notMember?: (pid: number) => boolean;
}

const selfPid = process.pid;

/**
 * One pass over the process table. Zombies are not members (they are already dead). The
 * supervisor itself is never a member, whatever it shares with the task.
 */
export function findMembers(q: MemberQuery): Member[] {
  const found = new Map<number, Member>();
  const add = (st: ProcStat, via: Member['via']): void => {
    if (st.pid === selfPid || st.pid <= 1 || found.has(st.pid)) return;
    if (q.rootIsReaper && st.pid === q.rootPid) return;
    if (!isAliveStat(st) || st.startTime < q.rootStartTime) return;
    found.set(st.pid, { pid: st.pid, startTime: st.startTime, pgid: st.pgid, escapee: st.pgid !== q.pgid, via });
  };

  if (q.cgroup && q.skipCookieScan) {
    // The cgroup holds every process the task forked; no scan of the whole table is needed.
    for (const pid of q.cgroup.procs()) {
      const st = readStat(pid);
      if (st) add(st, 'cgroup');
    }
    return [...found.values()];
  }

  const table = q.forksAtSpawn === undefined ? scanStats() : statsSince(q.rootPid, q.forksAtSpawn, q.notMember);
  const children = new Map<number, number[]>();
  for (const st of table.values()) {
    let list = children.get(st.ppid);
    if (!list) children.set(st.ppid, (list = []));
    list.push(st.pid);
  }
  if (q.cgroup) for (const pid of q.cgroup.procs()) {
    const st = table.get(pid);
    if (st) add(st, 'cgroup');
  }
  for (const st of table.values()) {
    // `add` refuses these anyway; skipping them here spares a read of their environment.
    if (st.startTime < q.rootStartTime || !isAliveStat(st) || st.pid === selfPid) continue;
    if (q.isolated && st.pgid === q.pgid) add(st, 'group');
    else if (q.isolated && st.sid === q.pgid) add(st, 'session');
    else if (!q.skipCookieScan && environHas(st.pid, q.cookie)) add(st, 'cookie');
  }
  // Descendants by parent pid of the leader (if it is still the same process) and of every member.
  const root = table.get(q.rootPid);
  const starts: number[] = [...found.keys()];
  if (root && root.startTime === q.rootStartTime) {
    add(root, 'parent');
    starts.push(root.pid);
  }
  const seen = new Set<number>();
  while (starts.length > 0) {
    const pid = starts.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    for (const child of children.get(pid) ?? []) {
      const st = table.get(child);
      if (!st || st.startTime < q.rootStartTime) continue;
      add(st, 'parent');
      starts.push(child);
    }
  }
  return [...found.values()];
}

/** True if any of `members` is still alive (same pid and start time, not a zombie). */
export function anyAlive(members: readonly Member[]): boolean {
  for (const m of members) if (isStillAlive(m)) return true;
  return false;
}

export function isStillAlive(m: { pid: number; startTime: number }): boolean {
  const st = readStat(m.pid);
  return isAliveStat(st) && st.startTime === m.startTime;
}
