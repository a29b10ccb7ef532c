import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

/** The unprivileged user (nobody) the specs run code as. */
export const NOBODY = 65534;

/** A node binary that uid 65534 may run (ours may sit in a private folder), or undefined. */
export function nodeForNobody(): string | undefined {
  return [process.execPath, '/usr/local/bin/node', '/usr/bin/node'].find((n) => !spawnSync(n, ['-e', '0'], { uid: NOBODY, gid: NOBODY, cwd: '/' }).error);
}

/**
 * A world-readable copy of the built package (dist/lib, the native addon, the runtime
 * dependencies), since the checkout may sit in a folder uid 65534 cannot enter. Returns its root;
 * `dispose()` removes it.
 */
export function packageForNobody(): { root: string; dispose(): void } {
  const root = mkdtempSync(join(tmpdir(), 'warden-nobody-'));
  chmodSync(root, 0o755);
  cpSync(join(repoRoot, 'package.json'), join(root, 'package.json'));
  cpSync(join(repoRoot, 'dist/lib'), join(root, 'dist/lib'), { recursive: true });
  for (const built of ['warden_native.node', 'warden-reaper']) {
    if (existsSync(join(repoRoot, 'build/Release', built))) cpSync(join(repoRoot, 'build/Release', built), join(root, 'build/Release', built));
  }
  const deps = new Set<string>();
  const walk = (name: string): void => {
    if (deps.has(name) || !existsSync(join(repoRoot, 'node_modules', name, 'package.json'))) return;
    deps.add(name);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) walk(dep);
  };
  const own = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(own.dependencies ?? {})) walk(dep);
  for (const dep of deps) cpSync(join(repoRoot, 'node_modules', dep), join(root, 'node_modules', dep), { recursive: true });
  spawnSync('chmod', ['-R', 'a+rX', root]);
  return { root, dispose: () => rmSync(root, { recursive: true, force: true }) };
}

/** Runs `node <args>` as uid 65534 with `env`, in `/`. */
export function runAsNobody(node: string, args: string[], env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(node, args, { uid: NOBODY, gid: NOBODY, encoding: 'utf8', env, cwd: '/', timeout: 20_000 });
}
