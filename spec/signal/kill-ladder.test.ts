import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { findMembers } from '../../lib/signal/members.js';
import { isAliveStat, readStat } from '../../lib/signal/proc.js';
import { guardLeaks, liveWithToken, TOKEN_NAME, until } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { containments, waitFor, withSupervisor } from '../helpers/tasks.js';

const { env, token } = guardLeaks();

describe.each(containments)('teardown ladder (containment %s)', (containment) => {
  it('ends a tree with a TERM-ignoring subshell, a setsid child and a double-forked daemon: 0 survivors, escapees reported', async () => {
    await withSupervisor({ containment }, async (sup) => {
      const task = sup.start({ command: fixture('tree.sh'), env: env(), graceMs: 300 });
      await waitFor(task);
      const before = findMembers({ ...task.memberQuery(), cgroup: undefined, skipCookieScan: false });
      expect(before.filter((m) => m.escapee).length).toBe(2);
      task.terminate('cancelled');
      const r = await task.result;
      expect(r.reason).toBe('cancelled');
      expect(r.survivors).toBe(0);
      expect(r.escapees).toBe(2);
      expect(r.signalled).toBeGreaterThanOrEqual(before.length);
      expect(r.teardown!.steps.map((s) => s.step)).toEqual(['graceful', 'grace-wait', 'force']);
      // The SIGTERM-ignoring subshell needed SIGKILL after graceMs.
      const kills = r.teardown!.signals.filter((s) => s.signal === 'SIGKILL');
      expect(kills.length).toBeGreaterThan(0);
      expect(kills[0]!.atMs).toBeGreaterThanOrEqual(300);
      for (const m of before) expect(isAliveStat(readStat(m.pid)) && readStat(m.pid)!.startTime === m.startTime).toBe(false);
      expect(liveWithToken(Buffer.from(`${TOKEN_NAME}=${token()}`))).toEqual([]);
    });
  });

  it('SIGKILLs a child that ignores SIGTERM after graceMs, and not before', async () => {
    await withSupervisor({ containment }, async (sup) => {
      const task = sup.start({ command: fixture('ignore-term.sh'), env: env(), graceMs: 200, timeoutMs: 100 });
      const r = await task.result;
      expect(r.reason).toBe('timeout');
      expect(r.signal).toBe('SIGKILL');
      expect(r.status).toBe(137);
      const term = r.teardown!.signals.find((s) => s.signal === 'SIGTERM')!;
      const kill = r.teardown!.signals.find((s) => s.signal === 'SIGKILL')!;
      expect(kill.atMs - term.atMs).toBeGreaterThanOrEqual(190);
      expect(r.survivors).toBe(0);
    });
  });

  it('leaves 0 survivors of a tree that keeps forking during teardown', async () => {
    await withSupervisor({ containment }, async (sup) => {
      const task = sup.start({ command: fixture('fork-bomb-slow.sh'), env: env(), graceMs: 100 });
      await waitFor(task);
      await until(() => findMembers(task.memberQuery()).length > 10, 3000);
      task.terminate('cancelled');
      const r = await task.result;
      expect(r.survivors).toBe(0);
      expect(r.teardown!.killRounds).toBeGreaterThanOrEqual(1);
    });
  });

  it('a graceful child exits on SIGTERM within the grace: no SIGKILL is sent', async () => {
    await withSupervisor({ containment }, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'echo ready; sleep 300 & wait'], env: env(), graceMs: 5000 });
      await waitFor(task);
      task.cancel();
      const r = await task.result;
      expect(r.teardown!.signals.some((s) => s.signal === 'SIGKILL')).toBe(false);
      expect(r.teardown!.killRounds).toBe(0);
      expect(r.survivors).toBe(0);
    });
  });
});

describe('teardown of a task that is not isolated', () => {
  it("never signals the supervisor's own group: the spec process and a sibling in its group survive", async () => {
    // A sibling in our own process group (not detached), started outside warden.
    const sibling = spawn('sleep', ['300'], { stdio: 'ignore', env: env() });
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: fixture('tree.sh'), env: env(), isolate: false, graceMs: 100 });
      await waitFor(task);
      expect(task.pgid).toBe(readStat('self')!.pgid);
      task.cancel();
      const r = await task.result;
      expect(r.teardown!.signals.some((s) => s.target.startsWith('-'))).toBe(false);
      expect(r.survivors).toBe(0);
      expect(isAliveStat(readStat(sibling.pid!))).toBe(true);
    });
    sibling.kill('SIGKILL');
    await once(sibling, 'exit');
  });

  it("kind 'helper' defaults to not isolated, and killLeftovers defaults to false for it", async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: 'true', kind: 'helper', env: env() });
      expect(task.spec.isolate).toBe(false);
      expect(task.spec.killLeftovers).toBe(false);
      const r = await task.result;
      expect(r.state).toBe('success');
    });
  });
});
