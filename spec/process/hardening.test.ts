import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeBinding } from '../../lib/process/native-binding.js';
import { guardLeaks } from '../helpers/leaks.js';
import { nodeForNobody, packageForNobody, runAsNobody } from '../helpers/unprivileged.js';

const { env } = guardLeaks();

/**
 * A task that tries to read the token from its supervisor's environment. Under the subreaper
 * tier (what 'auto' picks for an ordinary user) its parent is warden-reaper, whose parent is the
 * supervisor.
 */
const PEEK = 'p=$PPID; [ "$(cat /proc/$p/comm)" = warden-reaper ] && p=$(cut -d" " -f4 /proc/$p/stat); ' +
  'cat /proc/$p/environ 2>&1 | tr "\\0" "\\n" | grep -E "TOKEN|denied" || echo nothing';

describe.runIf(nativeBinding !== undefined)('a supervisor holding a token, as an ordinary user', () => {
  it('nonDumpable: a task of the same user cannot read the token from /proc/<supervisor>/environ (and can without it)', () => {
    const node = nodeForNobody();
    expect(node, 'a node binary executable by uid 65534').toBeDefined();
    const pkg = packageForNobody();
    try {
      const script = (nonDumpable: boolean): string => `
        const { Supervisor } = await import(${JSON.stringify(join(pkg.root, 'dist/lib/index.js'))});
        const s = new Supervisor({ containment: 'group', nonDumpable: ${nonDumpable} });
        const t = s.start({ command: 'bash', args: ['-c', ${JSON.stringify(PEEK)}] });
        let out = '';
        t.on('stdout', (b) => (out += b));
        await t.result;
        await s.close();
        process.stdout.write(out);`;
      const taskEnv = { ...env(), WARDEN_TOKEN: 'spec-token-4711' };
      const open = runAsNobody(node!, ['--input-type=module', '-e', script(false)], taskEnv);
      expect(open.stderr).toBe('');
      expect(open.stdout).toMatch(/WARDEN_TOKEN=spec-token-4711/);
      const closed = runAsNobody(node!, ['--input-type=module', '-e', script(true)], taskEnv);
      expect(closed.stderr).toBe('');
      expect(closed.stdout).not.toMatch(/spec-token-4711/);
      expect(closed.stdout).toMatch(/Permission denied/);
    } finally {
      pkg.dispose();
    }
  });

  it('warden run with a token in its environment makes itself non-dumpable: the task cannot read it', () => {
    const node = nodeForNobody();
    expect(node, 'a node binary executable by uid 65534').toBeDefined();
    const pkg = packageForNobody();
    try {
      const r = runAsNobody(node!, [join(pkg.root, 'dist/lib/cli/main.js'), 'run', '--', 'bash', '-c', PEEK], { ...env(), WARDEN_TOKEN: 'spec-token-4712' });
      expect(r.status).toBe(0);
      expect(r.stdout).not.toMatch(/spec-token-4712/);
      expect(r.stdout).toMatch(/Permission denied/);
      expect(r.stderr).toBe('');
    } finally {
      pkg.dispose();
    }
  });
});
