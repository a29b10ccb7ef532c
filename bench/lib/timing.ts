/** Clocks, summaries and waits shared by the benches. */
import { setImmediate as turn, setTimeout as delay } from 'node:timers/promises';

export const now = (): number => performance.now();

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let sum = 0;
  for (const x of xs) sum += x;
  return sum / xs.length;
}

export function max(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : Math.max(...xs);
}

export function min(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : Math.min(...xs);
}

/** `[a, b, c]` for even rounds and `[c, b, a]` for odd ones (ABC CBA...), so slow drift cancels. */
export function balancedOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}

export const sleep = (ms: number): Promise<void> => delay(ms);

/** Yields one event-loop turn (after I/O callbacks), so other work on the loop can run. */
export const yieldTurn = (): Promise<void> => turn();

/**
 * Polls `check` once per event-loop turn until it returns true or `deadlineMs` passes.
 * For state outside this process only (is pid N gone?); waits on our own objects use events.
 */
export async function pollUntil(check: () => boolean, deadlineMs: number): Promise<boolean> {
  const end = now() + deadlineMs;
  for (;;) {
    if (check()) return true;
    if (now() > end) return false;
    await turn();
  }
}

/** Rounds to 3 decimals (ms figures in the JSON). */
export const r3 = (n: number): number => Math.round(n * 1000) / 1000;
