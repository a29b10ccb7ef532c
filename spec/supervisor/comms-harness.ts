/**
 * What the comms specs of the Supervisor share: a task watched for its stdout lines and log
 * records, the fixture tasks of spec/fixtures/comms, and a check that a supervisor still serves.
 */
import { expect } from 'vitest';
import type { LogRecord } from '../../lib/logs/records.js';
import type { Supervisor } from '../../lib/supervisor/supervisor.js';
import type { Task } from '../../lib/supervisor/task.js';
import type { TaskSpec } from '../../lib/supervisor/types.js';
import { fixture } from '../helpers/paths.js';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Watched {
  task: Task;
  /** JSON lines the task printed on stdout so far. */
  lines(): Json[];
  /** Records of the task's log so far (stdout lines excluded). */
  records(): LogRecord[];
  /** Resolves with the first log record whose event is `event`. */
  record(event: string): Promise<LogRecord>;
}

/** Starts a task (with the spec file's leak-guarded `env`) and collects what it prints and what its log says. */
export function watchWith(env: () => NodeJS.ProcessEnv, sup: Supervisor, spec: Omit<TaskSpec, 'env'>): Watched {
  const task = sup.start({ timeoutMs: 15_000, ...spec, env: env() });
  let out = '';
  const records: LogRecord[] = [];
  const waiters: Array<{ event: string; found: (r: LogRecord) => void }> = [];
  task.on('stdout', (chunk) => (out += chunk.toString()));
  task.on('log', (r) => {
    if (r.logger === 'task.stdout') return;
    records.push(r);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.event === r.event) waiters.splice(i, 1)[0]!.found(r);
    }
  });
  return {
    task,
    lines: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json),
    records: () => records,
    record: (event) => {
      const seen = records.find((r) => r.event === event);
      if (seen) return Promise.resolve(seen);
      return new Promise((found, fail) => {
        waiters.push({ event, found });
        void task.result.then(() => setImmediate(() => fail(new Error(`the task settled without a ${event} record`))));
      });
    },
  };
}

export const node = (script: string, ...args: string[]): Omit<TaskSpec, 'env'> => ({ command: process.execPath, args: [fixture(`comms/${script}`), ...args] });
export const events = (w: Watched): string[] => w.records().map((r) => String(r.event));

/** A well-behaved task on the same supervisor, to show it still serves after a fault. */
export async function stillServes(env: () => NodeJS.ProcessEnv, sup: Supervisor): Promise<void> {
  const ok = watchWith(env, sup, node('warden-task.mjs', 'ask', '5'));
  expect(await ok.task.result).toMatchObject({ state: 'success', reason: 'exited', survivors: 0 });
  expect(ok.lines()).toEqual([{ answers: [0, 1, 2, 3, 4] }]);
}

/** Echo answers a few turns later, so that responses leave out of order. */
export function echoLater(sup: Supervisor): void {
  sup.handle('Echo', async (body: { value: unknown }) => {
    for (let i = Math.floor(Math.random() * 4); i > 0; i--) await new Promise<void>((done) => setImmediate(done));
    return body.value;
  });
}
