import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';

/** Sorted names of the handles and requests keeping the event loop alive. */
export function activeResources(): string[] {
  return [...process.getActiveResourcesInfo()].sort();
}

/**
 * Asserts the event loop holds nothing that it did not hold at `baseline`: per kind of resource,
 * no more than then. (Fewer is allowed: vitest's own timers may fire during a long test.) Two
 * turns of the loop first: a handle closed in this turn (a child's process handle after `close`)
 * leaves libuv's list only in the close phase after the check phase where the first turn resumes.
 */
export async function expectResourcesBack(baseline: string[]): Promise<void> {
  for (let turn = 0; turn < 2; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
  const left = [...baseline];
  const extra: string[] = [];
  for (const name of activeResources()) {
    const i = left.indexOf(name);
    if (i === -1) extra.push(name);
    else left.splice(i, 1);
  }
  expect(extra, `resources left behind (baseline ${baseline.join(', ')})`).toEqual([]);
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-logs-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `node -e script` with the given stdio; resolves on `close` (exit and every pipe closed). */
export function runNode(script: string, stdio: StdioOptions = ['ignore', 'pipe', 'inherit']): { child: ChildProcess; closed: Promise<number | null> } {
  const child = spawn(process.execPath, ['-e', script], { stdio });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  return { child, closed };
}

/** Resolves when `predicate` holds, checked after each call of the returned `check`. */
export function whenTrue(predicate: () => boolean): { promise: Promise<void>; check: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  const check = (): void => {
    if (predicate()) resolve();
  };
  return { promise, check };
}

/**
 * Wraps a test body so that it must leave the event loop as it found it. The check runs inside
 * the body (not in hooks) so that vitest's own timers are the same at both ends.
 */
export function leakChecked(body: () => unknown): () => Promise<void> {
  return async () => {
    const baseline = activeResources();
    await body();
    await expectResourcesBack(baseline);
  };
}
