import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Runs `fn` with a fresh folder holding `files` (name -> [content, mode]: executable scripts,
 * scripts without the execute bit, ...), and removes the folder afterwards, whatever `fn` did.
 */
export async function withScripts<T>(files: Record<string, [content: string, mode: number]>, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-spec-scripts-'));
  try {
    for (const [name, [content, mode]] of Object.entries(files)) {
      writeFileSync(join(dir, name), content);
      chmodSync(join(dir, name), mode);
    }
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
