/** Argument checks and path building of ControlPlaneClient: bad arguments throw ERR_INVALID_OPTION. */
import { WardenError } from '../errors.js';

export function invalid(message: string): WardenError {
  return new WardenError('ERR_INVALID_OPTION', `ControlPlaneClient: ${message}.`);
}

export function number(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw invalid(`${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

export function checkProcess(body: unknown, names: string[]): void {
  const b = body as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object') throw invalid('body must be an object');
  for (const name of names) if (typeof b[name] !== 'string') throw invalid(`${name} must be a string`);
  if (!Number.isSafeInteger(b.pid)) throw invalid(`pid must be an integer, got ${String(b.pid)}`);
}

export function integer(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) throw invalid(`${name} must be an integer, got ${String(value)}`);
  return value;
}

/** Encodes one path segment; rejects what cannot name a resource. */
export function segment(name: string, value: string): string {
  if (typeof value !== 'string' || value === '') throw invalid(`${name} must be a non-empty string, got ${JSON.stringify(value)}`);
  return encodeURIComponent(value);
}

export function xcomPath(dagId: string, runId: string, taskId: string, key: string): string {
  return `xcoms/${segment('dagId', dagId)}/${segment('runId', runId)}/${segment('taskId', taskId)}/${segment('key', key)}`;
}

export function isoDate(value: string | Date): string {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalid('date is an invalid Date');
    return value.toISOString();
  }
  if (typeof value !== 'string' || value === '') throw invalid(`date must be a Date or an ISO 8601 string, got ${JSON.stringify(value)}`);
  return value;
}
