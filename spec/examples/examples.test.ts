import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { guardLeaks } from '../helpers/leaks.js';
import { repoRoot } from '../helpers/paths.js';

const { env } = guardLeaks();

const examples = readdirSync(`${repoRoot}examples`).filter((f) => /^\d\d-.*\.ts$/.test(f));

describe('examples run and end on their own', () => {
  it('finds the examples', () => {
    expect(examples.length).toBeGreaterThanOrEqual(2);
  });

  it.each(examples)('%s', async (name) => {
    const js = `${repoRoot}dist/examples/${name.replace(/\.ts$/, '.js')}`;
    const child = spawn(process.execPath, [js], { cwd: repoRoot, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    const [code] = await once(child, 'exit');
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/survivors=0/);
  });
});
