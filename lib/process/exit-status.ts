import { signalNumber } from '../signal/signals.js';

/** The shell's status for an exit: the code, or 128 + n for a death by signal n. */
export function shellStatus(code: number | null, signal: NodeJS.Signals | null): number | null {
  if (code !== null) return code;
  if (signal !== null) return 128 + (signalNumber(signal) ?? 0);
  return null;
}
