import { Supervisor, type SupervisorOptions } from '../../lib/supervisor/supervisor.js';
import type { Task } from '../../lib/supervisor/task.js';
import { reaperPath } from '../../lib/process/native-binding.js';
import { nativeSpawnAvailable } from '../../lib/process/native-spawn.js';

/** Resolves when the task's stdout contains `word` (fixtures announce `ready`). */
export function waitFor(task: Task, word = 'ready'): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      if (seen.includes(word)) {
        task.off('stdout', onData);
        resolve();
      }
    };
    task.on('stdout', onData);
    void task.result.then(() => reject(new Error(`task settled before printing ${word}: ${seen.slice(-200)}`)));
  });
}

/** A supervisor per test, closed at the end of it. */
export async function withSupervisor<T>(options: SupervisorOptions, fn: (s: Supervisor) => Promise<T>): Promise<T> {
  const s = new Supervisor(options);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Every containment option this machine can run ('subreaper' where warden-reaper was built). */
export const containments: Array<SupervisorOptions['containment']> = reaperPath !== undefined && nativeSpawnAvailable ? ['auto', 'subreaper', 'group'] : ['auto', 'group'];
