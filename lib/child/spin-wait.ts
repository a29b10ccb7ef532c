/**
 * The task side's spin-then-sleep wait for a response.
 *
 * A request sent alone is usually answered within tens of microseconds when its handler answers
 * from memory. Going back to the event loop to sleep costs more than that on most machines (on a
 * VM, waking an idle CPU is an interrupt to the host): measured here, a round trip was about 55 us
 * when the task slept and about 20 us when it polled its socket for a moment first. So after a
 * lone request leaves, the task polls the socket (never reading it; the event loop does) for up
 * to `micros`, yielding the CPU between polls, and only then goes back to the loop.
 *
 * Spinning pays only when answers come fast; with a slow handler (a control-plane call) every spin
 * would burn its whole budget for nothing. So the wait backs off: after MISSES_BEFORE_BACKOFF
 * spins in a row ran out of budget, the next 1, 2, 4 ... up to MAX_SKIP lone requests do not spin,
 * and one spin that sees its answer in time resets that. With handlers slower than the budget,
 * it settles at about two spins per MAX_SKIP requests.
 */

/** Polls `fd` up to `micros` for readability; 1 = readable, 0 = budget ran out (the addon's spinReadable). */
export type SpinFn = (fd: number, micros: number) => number;

export interface SpinStats {
  /** Spins made. */
  spins: number;
  /** Spins that saw the answer arrive within the budget. */
  hits: number;
  /** Lone requests that did not spin because the wait was backing off. */
  skipped: number;
}

/** Consecutive spins that ran out of budget before the wait backs off. */
export const MISSES_BEFORE_BACKOFF = 2;
/** Longest run of lone requests without a spin while backing off. */
export const MAX_SKIP = 1024;
/** Default budget per spin (us): about twice what a sleep and wake-up cost on the machines measured. */
export const DEFAULT_SPIN_MICROS = 50;
/** Largest budget accepted (us). */
export const MAX_SPIN_MICROS = 10_000;

/**
 * Invariants:
 * - `wait()` blocks at most `micros` (plus one poll) and never reads the fd.
 * - Between two spins that ran out of budget there are never more than MAX_SKIP skipped requests,
 *   so a handler that turns fast again is noticed within MAX_SKIP lone requests.
 */
export class SpinWait {
  readonly #fd: number;
  readonly #micros: number;
  readonly #spin: SpinFn;
  readonly stats: SpinStats = { spins: 0, hits: 0, skipped: 0 };
  #misses = 0;
  #skip = 0;
  #backoff = 1;

  /** Precondition: `micros` in 1..MAX_SPIN_MICROS. */
  constructor(fd: number, micros: number, spin: SpinFn) {
    this.#fd = fd;
    this.#micros = micros;
    this.#spin = spin;
  }

  /** A lone request has left and its answer is awaited: spin for it, unless backing off. */
  wait(): void {
    if (this.#skip > 0) {
      this.#skip--;
      this.stats.skipped++;
      return;
    }
    this.stats.spins++;
    if (this.#spin(this.#fd, this.#micros) === 1) {
      this.stats.hits++;
      this.#misses = 0;
      this.#backoff = 1;
      return;
    }
    if (++this.#misses >= MISSES_BEFORE_BACKOFF) {
      this.#misses = 0;
      this.#skip = this.#backoff;
      this.#backoff = Math.min(this.#backoff * 2, MAX_SKIP);
    }
  }
}
