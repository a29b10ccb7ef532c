import { WardenError } from '../errors.js';

/**
 * What an injected fault does to a matching Execution API call:
 * - `500`: answer `500 {detail: ...}` without touching the store;
 * - `hang`: never answer; the request is ended only by the client or by the server's `close()`;
 * - `close`: destroy the connection without an answer;
 * - `hold`: keep the call waiting, then serve it normally once `release()` is called (a slow
 *   control plane whose answer comes when the test says so; `close()` drops held calls unserved).
 */
export type FaultMode = '500' | 'hang' | 'close' | 'hold';

/**
 * Which calls a fault hits: `start` (PATCH .../run), `heartbeat` (PUT .../heartbeat), `state`
 * (PATCH .../state), `any` (every `/execution/` call), or a path prefix starting with `/`
 * (e.g. `/execution/variables`). Admin and health calls are never hit.
 */
export type FaultMatch = 'start' | 'heartbeat' | 'state' | 'any' | `/${string}`;

export interface FaultRule {
  match: FaultMatch;
  mode: FaultMode;
  /** How many matching calls fail, >= 1. Default 1. */
  count?: number;
}

export interface FaultView {
  id: number;
  match: FaultMatch;
  mode: FaultMode;
  count: number;
  remaining: number;
}

export const FAULT_MODES: readonly FaultMode[] = ['500', 'hang', 'close', 'hold'];
export const FAULT_MATCH_NAMES: readonly string[] = ['start', 'heartbeat', 'state', 'any'];

/** Bound on the number of pending rules, so a looping test cannot grow the list forever. */
export const MAX_FAULT_RULES = 1000;

/**
 * Pending fault rules, consumed in insertion order, and the calls a `hold` rule keeps waiting.
 *
 * Invariants:
 * - A rule is consumed by at most `count` calls, then removed.
 * - A call consumes at most one rule: the oldest one that matches it.
 * - Only `/execution/` paths other than `/execution/health` ever match.
 * - `release()` lets every call held so far go on, once; later held calls wait for the next one.
 */
export class FaultTable {
  readonly #rules: FaultView[] = [];
  readonly #held = new Set<() => void>();
  #nextId = 1;

  /** Calls held by a `hold` rule and not released yet. */
  get held(): number {
    return this.#held.size;
  }

  /** Resolves when `release()` is next called. Used by the server for a call that took a `hold` rule. */
  hold(): Promise<void> {
    return new Promise((resolve) => this.#held.add(resolve));
  }

  /** Lets every held call be served; returns how many there were. */
  release(): number {
    const waiting = [...this.#held];
    this.#held.clear();
    for (const go of waiting) go();
    return waiting.length;
  }

  add(rule: FaultRule): FaultView {
    if (!FAULT_MODES.includes(rule.mode)) throw new WardenError('ERR_INVALID_OPTION', `fault mode must be one of ${FAULT_MODES.join(', ')}, got ${JSON.stringify(rule.mode)}.`);
    if (typeof rule.match !== 'string' || (!FAULT_MATCH_NAMES.includes(rule.match) && !rule.match.startsWith('/'))) {
      throw new WardenError('ERR_INVALID_OPTION', `fault match must be start, heartbeat, state, any or a path prefix starting with '/', got ${JSON.stringify(rule.match)}.`);
    }
    const count = rule.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) throw new WardenError('ERR_INVALID_OPTION', `fault count must be an integer >= 1, got ${String(count)}.`);
    if (this.#rules.length >= MAX_FAULT_RULES) throw new WardenError('ERR_INVALID_OPTION', `at most ${MAX_FAULT_RULES} fault rules may be pending; clear them first.`);
    const view: FaultView = { id: this.#nextId++, match: rule.match, mode: rule.mode, count, remaining: count };
    this.#rules.push(view);
    return { ...view };
  }

  list(): FaultView[] {
    return this.#rules.map((r) => ({ ...r }));
  }

  clear(): void {
    this.#rules.length = 0;
  }

  /** The mode of the rule this call consumes, if any. `path` has no query string. */
  take(method: string, path: string): FaultMode | undefined {
    if (!path.startsWith('/execution/') || path === '/execution/health') return undefined;
    const index = this.#rules.findIndex((rule) => matches(rule.match, method, path));
    if (index < 0) return undefined;
    const rule = this.#rules[index]!;
    rule.remaining -= 1;
    if (rule.remaining <= 0) this.#rules.splice(index, 1);
    return rule.mode;
  }
}

function matches(match: FaultMatch, method: string, path: string): boolean {
  switch (match) {
    case 'any':
      return true;
    case 'start':
      return method === 'PATCH' && /^\/execution\/task-instances\/[^/]+\/run$/.test(path);
    case 'heartbeat':
      return method === 'PUT' && /^\/execution\/task-instances\/[^/]+\/heartbeat$/.test(path);
    case 'state':
      return method === 'PATCH' && /^\/execution\/task-instances\/[^/]+\/state$/.test(path);
    default:
      return path.startsWith(match);
  }
}
