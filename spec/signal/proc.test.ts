import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseStat, pidsSince, readForkCount, readStat, statsSince } from '../../lib/signal/proc.js';
import { guardLeaks } from '../helpers/leaks.js';

const { env } = guardLeaks();

describe('/proc parsing', () => {
  it('splits stat after the last parenthesis: command names may hold spaces and parentheses', () => {
    const st = parseStat('4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0');
    expect(st).toEqual({ pid: 4242, state: 'S', ppid: 1, pgid: 4242, sid: 4242, startTime: 987654 });
  });

  it('reads our own stat, and undefined for a pid that does not exist', () => {
    expect(readStat('self')?.pid).toBe(process.pid);
    expect(readStat(0x7fffffff)).toBeUndefined();
  });
});

describe('pidsSince: members are younger than the leader', () => {
  it('accepts a pid forked after the first one and rejects older ones', async () => {
    const forks = readForkCount();
    expect(forks).toBeGreaterThan(0);
    const first = spawn('sleep', ['300'], { stdio: 'ignore', env: env() });
    const second = spawn('sleep', ['300'], { stdio: 'ignore', env: env() });
    const inRange = pidsSince(first.pid!, forks)!;
    expect(inRange).toBeTypeOf('function');
    expect(inRange(first.pid!)).toBe(true);
    expect(inRange(second.pid!)).toBe(true);
    expect(inRange(process.pid)).toBe(false);
    expect(inRange(1)).toBe(false);
    first.kill('SIGKILL');
    second.kill('SIGKILL');
    await Promise.all([once(first, 'exit'), once(second, 'exit')]);
  });

  it('gives up (undefined: scan everything) without a fork count', () => {
    expect(pidsSince(process.pid, undefined)).toBeUndefined();
  });
});

describe('statsSince', () => {
  it('finds a process forked after the first one, not its threads, and nothing older', async () => {
    const forks = readForkCount();
    const first = spawn('sleep', ['300'], { stdio: 'ignore', env: env() });
    // A multi-threaded process (node) forked after it: its threads must not show up as processes.
    const threaded = spawn(process.execPath, ['-e', 'process.stdout.write("ready"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'ignore'], env: env() });
    try {
      await once(threaded.stdout!, 'data');
      const table = statsSince(first.pid!, forks);
      expect(table.has(first.pid!)).toBe(true);
      expect(table.has(threaded.pid!)).toBe(true);
      expect(table.has(process.pid)).toBe(false);
      for (const pid of table.keys()) {
        // Other spec files fork meanwhile: a process of theirs in the range may be gone by now.
        let status: string;
        try {
          status = readFileSync(`/proc/${pid}/status`, 'latin1');
        } catch {
          continue;
        }
        expect(status).toMatch(new RegExp(`^Tgid:\\s+${pid}$`, 'm'));
      }
    } finally {
      first.kill('SIGKILL');
      threaded.kill('SIGKILL');
      await Promise.all([once(first, 'exit'), once(threaded, 'exit')]);
    }
  });
});
