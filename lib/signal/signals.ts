import { constants } from 'node:os';

const signalNumbers = constants.signals as Record<string, number>;

/** Signal name -> number on this platform, or undefined for an unknown name. */
export function signalNumber(name: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(signalNumbers, name) ? signalNumbers[name] : undefined;
}

/** Number -> name ('SIGTERM'), or `SIG<n>` when the platform has no name for it. */
export function signalName(num: number): string {
  for (const [name, value] of Object.entries(signalNumbers)) if (value === num) return name;
  return `SIG${num}`;
}

/** Accepts 'SIGTERM', 'TERM' or 15; returns the canonical name, or undefined when unknown. */
export function normalizeSignal(input: string | number): NodeJS.Signals | undefined {
  if (typeof input === 'number') {
    if (!Number.isInteger(input) || input <= 0) return undefined;
    const name = signalName(input);
    return signalNumber(name) === undefined ? undefined : (name as NodeJS.Signals);
  }
  const upper = input.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  return signalNumber(name) === undefined ? undefined : (name as NodeJS.Signals);
}
