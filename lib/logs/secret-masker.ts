import { WardenError } from '../errors.js';
import { setField, type LogRecord } from './records.js';

export interface SecretMaskerOptions {
  /**
   * Secrets (and pieces of multi-line secrets) shorter than this many UTF-16 units are not
   * masked: masking "abc" or "1234" would blank out ordinary words and numbers all over the log
   * and tell a reader where the secret is used. Default 5, as Airflow's `[logging] min_length_masked_secret`.
   */
  minSecretChars?: number;
  /**
   * Longest secret accepted, in UTF-16 units. Longer values are refused (`add` returns 0) rather
   * than compiled into the pattern. Default 65536: a longer value could never be seen whole
   * anyway, since lines are cut at maxLineBytes (64 KiB) before masking.
   */
  maxSecretChars?: number;
  /**
   * Most patterns held (each secret adds up to three: raw, URL-encoded, JSON-escaped, plus its
   * lines). Further secrets are refused and counted in `refused`. Default 1000.
   */
  maxSecrets?: number;
}

/** What replaces each secret. */
export const MASK = '***';

/** Nested values deeper than this are replaced by MASK as a whole rather than inspected. */
const MAX_MASK_DEPTH = 64;

/**
 * Replaces every occurrence of the registered secrets with `***` in log text and records.
 *
 * What is masked, per secret: the raw value, its URL-encoded form (`encodeURIComponent`, as in a
 * connection URI) and its JSON-escaped form (as a task prints it inside JSON), each when it
 * differs from the raw value and is long enough. A secret with newlines (a PEM key) is also added
 * line by line, each line of at least `minSecretChars`: stdout is split into lines before
 * masking, so only its lines can ever be seen in one record. Masking works on whole records, so a
 * secret that a task wrote in two chunks of one line is masked whole; a secret that straddles the
 * cut of an over-long line (see maxLineBytes) is not. Field names are not masked; the `level`
 * field is not either (it is always one of five fixed words).
 *
 * Invariants:
 * 1. After `add(s)` returns > 0, no output of `mask` contains `s` (longest secrets match first,
 *    so a secret that contains another is replaced whole).
 * 2. Held patterns never exceed `maxSecrets`; `add` never throws on a value, it refuses.
 * 3. `mask` and `maskRecord` return their argument itself when nothing was replaced, and never
 *    modify their argument.
 */
export class SecretMasker {
  private readonly minSecretChars: number;
  private readonly maxSecretChars: number;
  private readonly maxSecrets: number;
  private readonly patterns = new Set<string>();
  /** Rebuilt lazily on the first `mask` after an `add`, so adding many secrets costs one compile. */
  private pattern: RegExp | null = null;
  private dirty = false;
  /** Secrets refused because `maxSecrets` patterns were already held. */
  refused = 0;

  constructor(options: SecretMaskerOptions = {}) {
    this.minSecretChars = positiveInteger('minSecretChars', options.minSecretChars ?? 5);
    this.maxSecretChars = positiveInteger('maxSecretChars', options.maxSecretChars ?? 65536);
    this.maxSecrets = positiveInteger('maxSecrets', options.maxSecrets ?? 1000);
  }

  /** Number of patterns held. 0 means `mask` returns its input untouched at no cost. */
  get size(): number {
    return this.patterns.size;
  }

  /**
   * Registers a secret. Returns how many new patterns it added: 0 when it was too short, too
   * long, already known, or refused for lack of room (then `refused` grows). Non-strings are
   * ignored (0): a caller passing a connection's missing password should not need a guard.
   */
  add(secret: string): number {
    if (typeof secret !== 'string' || secret.length > this.maxSecretChars) return 0;
    const candidates = new Set<string>();
    const consider = (value: string): void => {
      if (value.length < this.minSecretChars) return;
      candidates.add(value);
      candidates.add(JSON.stringify(value).slice(1, -1));
      try {
        candidates.add(encodeURIComponent(value));
      } catch {
        // A lone surrogate has no URL encoding; the raw value is still masked.
      }
    };
    consider(secret);
    if (secret.includes('\n') || secret.includes('\r')) for (const line of secret.split(/\r?\n|\r/)) consider(line);
    let added = 0;
    for (const candidate of candidates) {
      if (candidate.length < this.minSecretChars || this.patterns.has(candidate)) continue;
      if (this.patterns.size >= this.maxSecrets) {
        this.refused++;
        break;
      }
      this.patterns.add(candidate);
      added++;
    }
    if (added > 0) this.dirty = true;
    return added;
  }

  mask(text: string): string {
    if (this.patterns.size === 0) return text;
    return text.replace(this.compiled(), MASK);
  }

  /** Masks every string in a value (arrays and plain objects deeply); returns it as is if clean. */
  maskValue(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return this.patterns.size === 0 ? value : this.mask(value);
    if (typeof value !== 'object' || value === null || this.patterns.size === 0) return value;
    if (depth >= MAX_MASK_DEPTH) return MASK;
    if (Array.isArray(value)) {
      let copy: unknown[] | null = null;
      for (let i = 0; i < value.length; i++) {
        const masked = this.maskValue(value[i], depth + 1);
        if (masked !== value[i]) (copy ??= value.slice())[i] = masked;
      }
      return copy ?? value;
    }
    const source = value as Record<string, unknown>;
    let copy: Record<string, unknown> | null = null;
    for (const key of Object.keys(source)) {
      const masked = this.maskValue(source[key], depth + 1);
      if (masked !== source[key]) setField((copy ??= copyOf(source)), key, masked);
    }
    return copy ?? value;
  }

  /** Masks every string field of a record except `level`; the record itself when nothing changed. */
  maskRecord<R extends LogRecord>(record: R): R {
    if (this.patterns.size === 0) return record;
    let copy: Record<string, unknown> | null = null;
    for (const key in record) {
      if (key === 'level' || !Object.hasOwn(record, key)) continue;
      const value: unknown = record[key];
      const masked = typeof value === 'string' ? this.mask(value) : this.maskValue(value, 1);
      if (masked !== value) setField((copy ??= copyOf(record)), key, masked);
    }
    return (copy ?? record) as R;
  }

  private compiled(): RegExp {
    if (this.pattern === null || this.dirty) {
      const sorted = [...this.patterns].sort((a, b) => b.length - a.length);
      this.pattern = new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
      this.dirty = false;
    }
    return this.pattern;
  }
}

function copyOf(source: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(source)) setField(copy, key, source[key]);
  return copy;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new WardenError('ERR_INVALID_OPTION', `${name} must be a positive integer (got ${String(value)}); omit it for the default`);
  }
  return value;
}
