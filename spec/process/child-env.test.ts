import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { childEnv, COOKIE_NAME, makeCookie } from '../../lib/process/spawn-task.js';
import { guardLeaks } from '../helpers/leaks.js';

const { env } = guardLeaks();

/** The environment a real child gets from `env`, as NAME=value lines. */
async function seenBy(childEnvironment: NodeJS.ProcessEnv): Promise<Map<string, string>> {
  const child = spawn('/usr/bin/env', [], { env: childEnvironment, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  await once(child, 'close');
  return new Map(out.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

const request = (base: NodeJS.ProcessEnv, secretEnv: string[] = []) =>
  ({ taskId: 't1', command: '/usr/bin/env', args: [], cwd: undefined, env: base, secretEnv, isolate: true, stdin: false }) as const;

describe('childEnv: the base environment, not copied, minus secrets, plus the task variables', () => {
  it('a child sees every variable of the base but the secrets, and the four task variables', async () => {
    const base = { ...env(), KEEP_ME: 'yes', SECRET_ONE: 's1', WARDEN_TOKEN: 'tok', WARDEN_TOKEN_FILE: '/x', WARDEN_TASK: 'outer.cookie', EMPTY: '', GONE: undefined };
    const seen = await seenBy(childEnv(request(base, ['SECRET_ONE', 'NOT_THERE']), 't1.abc'));
    expect(seen.get('KEEP_ME')).toBe('yes');
    expect(seen.get('EMPTY')).toBe('');
    for (const name of ['SECRET_ONE', 'WARDEN_TOKEN', 'WARDEN_TOKEN_FILE', 'GONE', 'NOT_THERE']) expect(seen.has(name)).toBe(false);
    expect(seen.get(COOKIE_NAME)).toBe('t1.abc');
    expect([seen.get('WARDEN_TASK_ID'), seen.get('WARDEN_LOG_FD'), seen.get('WARDEN_COMMS_FD')]).toEqual(['t1', '3', '4']);
    const expected = Object.entries(base).filter(([k, v]) => v !== undefined && !['SECRET_ONE', 'WARDEN_TOKEN', 'WARDEN_TOKEN_FILE', 'WARDEN_TASK'].includes(k));
    for (const [k, v] of expected) expect(seen.get(k)).toBe(v);
    expect(seen.size).toBe(expected.length + 4);
  });

  it('reads the base when the child is spawned (a later change of the base object is seen), and keeps its NODE_V8_COVERAGE', async () => {
    const base: NodeJS.ProcessEnv = { ...env(), NODE_V8_COVERAGE: '/nonexistent/warden-coverage' };
    const made = childEnv(request(base), 't1.abc');
    base.ADDED_LATER = 'late';
    const seen = await seenBy(made);
    expect(seen.get('ADDED_LATER')).toBe('late');
    expect(seen.get('NODE_V8_COVERAGE')).toBe('/nonexistent/warden-coverage');
  });
});

describe('makeCookie', () => {
  it('gives `<task id>.<12 hex digits>`, never the same twice', () => {
    const cookies = Array.from({ length: 3000 }, () => makeCookie('task-1'));
    for (const c of cookies) expect(c).toMatch(/^task-1\.[0-9a-f]{12}$/);
    expect(new Set(cookies).size).toBe(cookies.length);
  });
});
