import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { readStat } from '../../lib/signal/proc.js';
import { Signaller } from '../../lib/signal/signaller.js';
import { guardLeaks, until } from '../helpers/leaks.js';
import { repoRoot } from '../helpers/paths.js';

const { env } = guardLeaks();

function sleeper(detached = false) {
  const c = spawn('sleep', ['300'], { stdio: 'ignore', env: env(), detached });
  return c;
}

describe('Signaller: the self-group guard', () => {
  it('refuses its own process group, its own pid and pid <= 1 with a typed error that is also logged', () => {
    const refused: WardenError[] = [];
    const s = new Signaller((e) => refused.push(e));
    const own = readStat('self')!;
    for (const attempt of [
      () => s.killGroup(own.pgid, 'SIGTERM'),
      () => s.kill({ pid: process.pid }, 'SIGTERM'),
      () => s.kill({ pid: 1 }, 'SIGKILL'),
      () => s.kill({ pid: 0 }, 'SIGKILL'),
      () => s.kill({ pid: -5 }, 'SIGKILL'),
      () => s.killGroup(1, 'SIGKILL'),
      () => s.killGroup(0, 'SIGKILL'),
    ]) {
      expect(attempt).toThrowError(WardenError);
    }
    expect(refused).toHaveLength(7);
    expect(refused.every((e) => e.code === 'ERR_SELF_SIGNAL')).toBe(true);
    expect(refused[0]!.message).toMatch(/own process group/);
  });
});

describe('Signaller: outcomes', () => {
  it("returns 'gone' (not an error) for a pid that no longer exists", async () => {
    const s = new Signaller();
    const c = sleeper();
    const pid = c.pid!;
    c.kill('SIGKILL');
    await once(c, 'exit');
    expect(s.kill({ pid }, 'SIGTERM')).toBe('gone');
  });

  it('never signals a pid marked reaped', async () => {
    const s = new Signaller();
    const c = sleeper();
    s.markReaped(c.pid!);
    expect(s.kill({ pid: c.pid! }, 'SIGKILL')).toBe('gone');
    expect(readStat(c.pid!)?.state).not.toBe('Z');
    c.kill('SIGKILL');
    await once(c, 'exit');
  });

  it('does not signal a pid whose start time changed (pid reuse)', async () => {
    const s = new Signaller();
    const c = sleeper();
    const st = readStat(c.pid!)!;
    expect(s.kill({ pid: c.pid!, startTime: st.startTime + 1 }, 'SIGKILL')).toBe('gone');
    expect(readStat(c.pid!)?.state).not.toBe('Z');
    expect(s.kill({ pid: c.pid!, startTime: st.startTime }, 'SIGKILL')).toBe('sent');
    await once(c, 'exit');
  });

  it('signals a whole group that is not its own', async () => {
    const s = new Signaller();
    const c = spawn('bash', ['-c', 'sleep 300 & sleep 300 & echo ready; wait'], { stdio: ['ignore', 'pipe', 'ignore'], env: env(), detached: true });
    await once(c.stdout!, 'data');
    expect(s.killGroup(c.pid!, 'SIGKILL')).toBe('sent');
    await once(c, 'exit');
    expect(await until(() => s.killGroup(c.pid!, 'SIGKILL') === 'gone')).toBe(true);
  });

  it("reports EPERM as 'eperm' and keeps going (a supervisor without the right to signal a target)", async () => {
    // A root-owned sleeper, and a Signaller running as nobody that tries to signal it.
    const target = sleeper();
    // The unprivileged process may not be able to read the checkout (a clone under /root), so it
    // gets a world-readable copy of the three modules the signaller needs.
    const copy = mkdtempSync(join(tmpdir(), 'warden-eperm-'));
    chmodSync(copy, 0o755);
    mkdirSync(join(copy, 'signal'));
    for (const f of ['errors.js', 'signal/signaller.js', 'signal/proc.js']) copyFileSync(`${repoRoot}dist/lib/${f}`, join(copy, f));
    writeFileSync(join(copy, 'package.json'), '{"type":"module"}');
    const script = `
      import { Signaller } from ${JSON.stringify(join(copy, 'signal/signaller.js'))};
      const s = new Signaller();
      const r = s.kill({ pid: ${target.pid} }, 'SIGTERM');
      process.stdout.write(r);`;
    try {
      // A node binary the unprivileged user may run (ours may sit in a private folder).
      const node = [process.execPath, '/usr/local/bin/node', '/usr/bin/node'].find((n) => !spawnSync(n, ['-e', '0'], { uid: 65534, gid: 65534, cwd: '/' }).error);
      expect(node, 'a node binary executable by uid 65534').toBeDefined();
      const r = spawnSync(node!, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', env: env(), cwd: '/' });
      expect(r.error).toBeUndefined();
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('eperm');
      expect(readStat(target.pid!)?.state).not.toBe('Z');
    } finally {
      rmSync(copy, { recursive: true, force: true });
      target.kill('SIGKILL');
      await once(target, 'exit');
    }
  });
});
