import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { reaperPath } from '../../lib/process/native-binding.js';
import { nativeSpawnAvailable } from '../../lib/process/native-spawn.js';
import { isAliveStat, readStat } from '../../lib/signal/proc.js';
import { Supervisor } from '../../lib/supervisor/supervisor.js';
import type { Task } from '../../lib/supervisor/task.js';
import { guardLeaks, until } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { withScripts } from '../helpers/scripts.js';
import { withSupervisor } from '../helpers/tasks.js';
import { nodeForNobody, packageForNobody, runAsNobody } from '../helpers/unprivileged.js';

const { env } = guardLeaks();
const available = reaperPath !== undefined && nativeSpawnAvailable;

/** Reads "daemon <pid>" and "ready" from the task's stdout; returns the daemon's pid and start time. */
function daemonOf(task: Task): Promise<{ pid: number; startTime: number }> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const m = /daemon (\d+)\n[\s\S]*ready/.exec(out);
      if (!m) return;
      task.off('stdout', onData);
      const pid = Number(m[1]);
      const st = readStat(pid);
      if (!st) reject(new Error(`daemon ${pid} is already gone`));
      else resolve({ pid, startTime: st.startTime });
    };
    task.on('stdout', onData);
    void task.result.then(() => reject(new Error(`task settled first: ${out}`)));
  });
}

const alive = (p: { pid: number; startTime: number }): boolean => {
  const st = readStat(p.pid);
  return isAliveStat(st) && st.startTime === p.startTime;
};

describe.skipIf(!available)('the subreaper tier (warden-reaper leads the task)', () => {
  it('finds a daemon that left the session, double-forked and dropped its environment, which group + cookie misses', async () => {
    // Under the subreaper tier: the daemon is re-parented to the reaper, found and killed.
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      const task = sup.start({ command: fixture('daemon-noenv.sh'), env: env(), graceMs: 200 });
      const daemon = await daemonOf(task);
      expect(await until(() => readStat(daemon.pid)?.ppid === task.pid)).toBe(true);
      expect(task.containment).toBe('subreaper');
      task.cancel();
      const r = await task.result;
      expect(r).toMatchObject({ reason: 'cancelled', containment: 'subreaper', survivors: 0 });
      expect(r.escapees).toBeGreaterThanOrEqual(1);
      expect(await until(() => !alive(daemon))).toBe(true);
    });
    // Under group + cookie the same daemon is out of reach: nothing links it to the task.
    await withSupervisor({ containment: 'group' }, async (sup) => {
      const task = sup.start({ command: fixture('daemon-noenv.sh'), env: env(), graceMs: 200 });
      const daemon = await daemonOf(task);
      task.cancel();
      const r = await task.result;
      expect(r).toMatchObject({ reason: 'cancelled', containment: 'group+cookie', survivors: 0 });
      try {
        expect(alive(daemon)).toBe(true); // escaped: this is the gap the subreaper tier closes
      } finally {
        if (alive(daemon)) process.kill(daemon.pid, 'SIGKILL'); // recorded by this spec
        expect(await until(() => !alive(daemon))).toBe(true);
      }
    });
  });

  it("passes the command's exit through (code, death by signal), and its pipes end when the command's do", async () => {
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      const seven = await sup.run({ command: 'sh', args: ['-c', 'echo out; echo err >&2; exit 7'], env: env(), drainMs: 10_000 });
      expect(seven).toMatchObject({ state: 'failed', reason: 'exited', exitCode: 7, signal: null, status: 7, containment: 'subreaper', survivors: 0, pipesForceClosed: false });
      expect(seven.teardown).toBeNull();
      expect(seven.durationMs).toBeLessThan(5000); // not the drain bound: the reaper holds no pipe
      expect(isAliveStat(readStat(seven.pid!))).toBe(false); // and it was gone when the task settled
      const killed = await sup.run({ command: 'sh', args: ['-c', 'kill -TERM $$'], env: env() });
      expect(killed).toMatchObject({ exitCode: null, signal: 'SIGTERM', status: 143 });
      const ok = await sup.run({ command: 'true', env: env() });
      expect(ok).toMatchObject({ state: 'success', status: 0 });
    });
  });

  it('fails a spawn the same way as without it: missing 127, not executable 126, a script without #! runs through sh', async () => {
    await withScripts({ 'no-x.sh': ['#!/bin/sh\necho hi\n', 0o644], 'no-shebang': ['echo "ran by $0"\n', 0o755] }, async (dir) => {
      await withSupervisor({ containment: 'subreaper' }, async (sup) => {
        const missing = await sup.run({ command: 'warden-no-such-command-xyz', env: env() });
        expect(missing).toMatchObject({ reason: 'spawn-failed', status: 127 });
        expect(missing.error!.code).toBe('ERR_SPAWN_ENOENT');
        const noX = await sup.run({ command: join(dir, 'no-x.sh'), env: env() });
        expect(noX).toMatchObject({ reason: 'spawn-failed', status: 126 });
        expect(noX.error!.code).toBe('ERR_SPAWN_EACCES');
        const isDir = await sup.run({ command: dir, env: env() });
        expect(isDir).toMatchObject({ reason: 'spawn-failed', status: 126 });
        const task = sup.start({ command: './no-shebang', cwd: dir, env: env() });
        let out = '';
        task.on('stdout', (c) => (out += c));
        expect(await task.result).toMatchObject({ state: 'success', status: 0 });
        expect(out).toMatch(/^ran by .*no-shebang/);
      });
    });
  });

  it('the reaper ignores the graceful signal: a command that exits 0 on SIGTERM ends with no SIGKILL and no survivor', async () => {
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', "trap 'exit 0' TERM; echo ready; sleep 300 & wait"], env: env(), graceMs: 5000 });
      await new Promise<void>((resolve) => task.on('stdout', (c: Buffer) => c.toString().includes('ready') && resolve()));
      task.cancel();
      const r = await task.result;
      expect(r).toMatchObject({ reason: 'cancelled', exitCode: 0, survivors: 0 });
      expect(r.teardown!.signals.some((s) => s.signal === 'SIGKILL')).toBe(false);
      // Settled after the reaper exited: nothing of the task is left at that moment.
      expect(isAliveStat(readStat(task.pid!))).toBe(false);
    });
  });

  it('reaps the orphans handed to it: none is left a zombie while the task runs', async () => {
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      const task = sup.start({ command: fixture('orphan-maker.sh'), env: env() });
      await new Promise<void>((resolve) => task.on('stdout', (c: Buffer) => c.toString().includes('ready') && resolve()));
      const reaper = task.pid!;
      const zombieChildren = (): number[] => readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).filter((pid) => {
        const st = readStat(pid);
        return st !== undefined && st.ppid === reaper && st.state === 'Z';
      });
      // The orphans were re-parented to the reaper and have exited: it has reaped them.
      expect(await until(() => zombieChildren().length === 0, 2000)).toBe(true);
      task.cancel();
      expect(await task.result).toMatchObject({ survivors: 0 });
    });
  });

  it('a task that kills its own reaper ends at once: the command and what it started are torn down as leftovers', async () => {
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      const r = await sup.run({ command: 'bash', args: ['-c', 'sleep 300 & kill -KILL $PPID; wait'], env: env(), graceMs: 300 });
      // The reaper died without a status line: its own death is the leader's exit.
      expect(r).toMatchObject({ reason: 'exited', exitCode: null, signal: 'SIGKILL', status: 137, survivors: 0 });
      expect(r.signalled).toBeGreaterThanOrEqual(2); // bash and its sleep
    });
  });

  it('a task that is not isolated gets no reaper; containment subreaper needs the native spawner', async () => {
    await withSupervisor({ containment: 'subreaper' }, async (sup) => {
      expect(sup.containment).toBe('subreaper');
      const r = await sup.run({ command: 'true', env: env(), isolate: false });
      expect(r.containment).toBe('pid+cookie');
    });
    expect(() => new Supervisor({ containment: 'subreaper', spawner: 'node' })).toThrow(WardenError);
    expect(() => new Supervisor({ containment: 'subreaper', spawner: 'node' })).toThrow(/needs warden-reaper and the native spawner/);
    expect(() => new Supervisor({ containment: 'bogus' as never })).toThrow(/'auto', 'subreaper' or 'group'/);
  });
});

/** The daemon of fixtures/daemon-noenv.sh, inline (the checkout may be closed to uid 65534). */
const DAEMON_TASK = `( setsid sh -c 'env -i /bin/sleep 300 </dev/null >/dev/null 2>&1 & echo "daemon $!"' & ); sleep 0.2; echo ready; exec sleep 300`;

describe.skipIf(!available)('the subreaper tier for an ordinary user (uid 65534, no cgroup)', () => {
  it("is what 'auto' picks, and it ends the daemon that would escape group + cookie", () => {
    const node = nodeForNobody();
    expect(node, 'a node binary executable by uid 65534').toBeDefined();
    const pkg = packageForNobody();
    let daemon: { pid: number; startTime: number } | undefined;
    try {
      const script = `
        const { Supervisor } = await import(${JSON.stringify(join(pkg.root, 'dist/lib/index.js'))});
        const { readFileSync } = await import('node:fs');
        const s = new Supervisor();
        const t = s.start({ command: 'sh', args: ['-c', ${JSON.stringify(DAEMON_TASK)}], graceMs: 200 });
        let out = '';
        await new Promise((ready) => t.on('stdout', (b) => { out += b; if (out.includes('ready')) ready(); }));
        const pid = Number(/daemon ([0-9]+)/.exec(out)[1]);
        const ppidOf = (p) => { try { const st = readFileSync('/proc/' + p + '/stat', 'latin1'); return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]); } catch { return -1; } };
        for (let i = 0; i < 200 && ppidOf(pid) !== t.pid; i++) await new Promise((r) => setTimeout(r, 10));
        const reparented = ppidOf(pid) === t.pid;
        t.cancel();
        const r = await t.result;
        await s.close();
        process.stdout.write(JSON.stringify({ tier: s.containment, pid, reparented, containment: r.containment, survivors: r.survivors, escapees: r.escapees }));`;
      const run = runAsNobody(node!, ['--input-type=module', '-e', script], env());
      expect(run.stderr).toBe('');
      const out = JSON.parse(run.stdout) as { tier: string; pid: number; reparented: boolean; containment: string; survivors: number; escapees: number };
      const st = readStat(out.pid);
      if (isAliveStat(st)) daemon = { pid: out.pid, startTime: st.startTime };
      expect(out).toMatchObject({ tier: 'subreaper', containment: 'subreaper', reparented: true, survivors: 0 });
      expect(out.escapees).toBeGreaterThanOrEqual(1);
      expect(daemon, 'the daemon is gone').toBeUndefined();
    } finally {
      if (daemon !== undefined && alive(daemon)) process.kill(daemon.pid, 'SIGKILL'); // its pid was reported to this spec
      pkg.dispose();
    }
  });
});
