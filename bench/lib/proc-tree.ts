/**
 * The teardown test tree of baselines.md: a bash root (spawned detached, or as a warden task),
 * 25 processes in all when static:
 *   root bash                                        1
 *   10 plain `sleep 1000`                            10
 *   5 TERM-ignoring subshells, each with a sleep     10
 *   2 `setsid sleep` children (own session)          2
 *   2 double-forked `setsid sleep` daemons           2  (parent gone, reparented to init)
 * The `churn` variant adds a subshell that starts a new `sleep 1000` every 5 ms.
 * The root prints `ready` once every sleep above has exec'd (so the setsid ones have left the
 * group): it finds each subshell's sleep in /proc/<sub>/task/<sub>/children, learns each daemon's
 * pid through a command substitution, and waits for /proc/<pid>/comm to read `sleep`, with bash
 * builtins only (no helper process that would carry the mark).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { findMarked, markedEnv } from './marker.js';
import { isGone, type ProcRef } from './proc.js';
import { now, pollUntil, yieldTurn } from './timing.js';

export type TreeVariant = 'static' | 'churn';

/** Processes in the static tree. */
export const TREE_SIZE = 25;

const TREE_SCRIPT = String.raw`
track=()
for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & track+=($!); done
subs=()
for i in 1 2 3 4 5; do ( trap '' TERM; sleep 1000; : ) & subs+=($!); done
for i in 1 2; do setsid sleep 1000 </dev/null >/dev/null 2>&1 & track+=($!); done
for i in 1 2; do track+=($( ( setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! ) )); done
if [ "$1" = churn ]; then ( while :; do sleep 1000 & sleep 0.005; done ) & fi
for s in "${'$'}{subs[@]}"; do
  n=0
  until c=; read -r c < /proc/$s/task/$s/children; [ -n "$c" ]; do n=$((n+1)); [ $n -gt 200000 ] && break; done
  track+=($c)
done
for p in "${'$'}{track[@]}"; do
  n=0
  until comm=; read -r comm < /proc/$p/comm; [ "$comm" = sleep ]; do n=$((n+1)); [ $n -gt 200000 ] && break; done
done
echo ready
wait
`;

/** `bash` arguments that run the tree. */
export function treeArgs(variant: TreeVariant): string[] {
  return ['-c', TREE_SCRIPT, 'bench-tree', variant];
}

/**
 * Watches output for `ready`: feed it every chunk; `ready` rejects after `deadlineMs`.
 * The caller detaches `feed` once `ready` settles.
 */
export function readyWatch(deadlineMs = 5000): { feed: (chunk: Buffer) => void; ready: Promise<void>; stop: () => void } {
  let seen = '';
  let done = false;
  let resolveReady!: () => void;
  let timer: NodeJS.Timeout | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    timer = setTimeout(() => {
      done = true;
      reject(new Error(`the bench tree did not print ready within ${deadlineMs} ms`));
    }, deadlineMs);
  });
  const feed = (chunk: Buffer): void => {
    if (done) return;
    seen += chunk.toString('latin1');
    if (!seen.includes('ready')) return;
    done = true;
    clearTimeout(timer);
    resolveReady();
  };
  const stop = (): void => {
    done = true;
    clearTimeout(timer);
  };
  return { feed, ready, stop };
}

export interface RawTree {
  child: ChildProcess;
  /** The root's pid, which is also its process group id (detached). */
  pid: number;
  /** Resolves on the root's `close` (exit + its stdout closed by every holder). */
  closed: Promise<void>;
}

/** Starts the tree with plain child_process.spawn, detached (its own session and group). */
export async function spawnRawTree(variant: TreeVariant, mark: string): Promise<RawTree> {
  const child = spawn('bash', treeArgs(variant), { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env: markedEnv(mark) });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const failed = new Promise<never>((_, reject) => child.once('error', reject));
  const watch = readyWatch();
  child.stdout!.on('data', watch.feed);
  try {
    await Promise.race([watch.ready, failed]);
  } finally {
    watch.stop();
    child.stdout!.off('data', watch.feed);
    child.stdout!.resume();
  }
  return { child, pid: child.pid!, closed };
}

/**
 * The tree's members as the bench records them right after `ready`: every live process with the
 * mark. A process in the middle of execve() briefly shows an empty /proc/<pid>/environ, so the
 * scan is repeated (a few event-loop turns at most) until at least the static tree's size is seen.
 */
export async function recordMembers(mark: string, deadlineMs = 1000): Promise<{ members: ProcRef[]; scans: number }> {
  let members: ProcRef[] = [];
  let scans = 0;
  await pollUntil(() => {
    scans++;
    members = findMarked(mark);
    return members.length >= TREE_SIZE;
  }, deadlineMs);
  return { members, scans };
}

export interface GoneResult {
  /** Every recorded member was seen dead. */
  allGone: boolean;
  /** ms from t0 to the moment the last member that died was seen dead. */
  lastDeathMs: number;
  /** Recorded members still alive when the wait ended. */
  alive: number;
}

/**
 * Polls the recorded members' /proc/<pid>/stat once per event-loop turn (so the method under test
 * keeps running on the same loop). Ends when every member is dead, or when `methodDone()` holds
 * and no member has died for `quietMs` (a method that leaves survivors), or at `deadlineMs`.
 */
export async function waitGone(members: readonly ProcRef[], t0: number, methodDone: () => boolean, quietMs = 150, deadlineMs = 3000): Promise<GoneResult> {
  let alive = [...members];
  let lastDeath = t0;
  for (;;) {
    const before = alive.length;
    alive = alive.filter((m) => !isGone(m));
    const t = now();
    if (alive.length < before) lastDeath = t;
    if (alive.length === 0) return { allGone: true, lastDeathMs: lastDeath - t0, alive: 0 };
    if ((methodDone() && t - lastDeath >= quietMs) || t - t0 > deadlineMs) return { allGone: false, lastDeathMs: lastDeath - t0, alive: alive.length };
    await yieldTurn();
  }
}
