/**
 * Leak checks every spec uses: no process it started is alive afterwards (found by an
 * environment token scan of /proc, not only by recorded pids) and the event loop holds no more
 * handles than before the test.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { afterEach, beforeEach, expect } from 'vitest';

export const TOKEN_NAME = 'WARDEN_SPEC_TOKEN';

function liveWithToken(needle: Buffer): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') continue;
      const env = readFileSync(`/proc/${pid}/environ`);
      const at = env.indexOf(needle);
      if (at >= 0 && (at === 0 || env[at - 1] === 0) && (at + needle.length === env.length || env[at + needle.length] === 0)) out.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Polls outside state (the process table) until `check` holds or the deadline passes. */
export async function until(check: () => boolean, deadlineMs = 5000, stepMs = 10): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return check();
}

/** Waits (event loop turns, bounded) for the handle list to come back to `baseline`. */
async function handlesBackTo(baseline: string[]): Promise<string[]> {
  const count = (list: string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const x of list) m.set(x, (m.get(x) ?? 0) + 1);
    return m;
  };
  const base = count(baseline);
  const extra = (): string[] => {
    const now = count(process.getActiveResourcesInfo());
    const out: string[] = [];
    for (const [k, n] of now) for (let i = base.get(k) ?? 0; i < n; i++) out.push(k);
    return out;
  };
  for (let i = 0; i < 200 && extra().length > 0; i++) await new Promise((r) => setImmediate(r));
  const end = Date.now() + 2000;
  while (extra().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 5).unref?.());
  return extra();
}

/**
 * Installs the leak checks for the current spec file. Returns the env to give every process the
 * spec starts (`{...process.env, WARDEN_SPEC_TOKEN: <unique>}`), renewed for each test.
 */
export function guardLeaks(): { env: () => NodeJS.ProcessEnv; token: () => string } {
  let token = '';
  let baseline: string[] = [];
  beforeEach(() => {
    token = `${process.pid}-${randomBytes(6).toString('hex')}`;
    baseline = process.getActiveResourcesInfo();
  });
  afterEach(async () => {
    const needle = Buffer.from(`${TOKEN_NAME}=${token}`);
    // Orphans die asynchronously; allow a bounded wait for state outside the process.
    await until(() => liveWithToken(needle).length === 0, 3000);
    const left = liveWithToken(needle);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL'); // found by our own token: ours to clean up
      } catch {
        /* gone */
      }
    }
    expect(left, `processes left alive by this test: ${left.join(', ')}`).toEqual([]);
    const extra = await handlesBackTo(baseline);
    expect(extra, 'handles left open by this test').toEqual([]);
  });
  return { env: () => ({ ...process.env, [TOKEN_NAME]: token }), token: () => token };
}

export { liveWithToken };
