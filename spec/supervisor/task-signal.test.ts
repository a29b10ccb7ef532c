import { describe, expect, it } from 'vitest';
import { guardLeaks } from '../helpers/leaks.js';
import { withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();

describe("a task's AbortSignal, made on demand", () => {
  it('one taken while the task runs aborts when it settles; one taken after is already aborted, with the same reason', async () => {
    await withSupervisor({ containment: 'group' }, async (sup) => {
      const task = sup.start({ command: 'sleep', args: ['0.2'], env: env() });
      const early = task.signal;
      expect(early.aborted).toBe(false);
      let abortedBeforeResult = false;
      early.addEventListener('abort', () => (abortedBeforeResult = true));
      const r = await task.result;
      expect(r.state).toBe('success');
      expect(abortedBeforeResult).toBe(true);
      expect(early.reason).toMatchObject({ code: 'ERR_CHANNEL_CLOSED' });
      expect(task.signal).toBe(early);

      const other = sup.start({ command: '/bin/true', env: env() });
      await other.result;
      expect(other.signal.aborted).toBe(true);
      expect(other.signal.reason).toMatchObject({ code: 'ERR_CHANNEL_CLOSED', message: expect.stringContaining('(exited)') });
    });
  });
});

describe('records nobody receives are not built, records someone receives all arrive', () => {
  it('a supervisor record listener added after the supervisor was made gets every warden record of later tasks', async () => {
    await withSupervisor({ containment: 'group' }, async (sup) => {
      await sup.run({ command: '/bin/true', env: env() }); // no listener anywhere: nothing to see
      const events: string[] = [];
      sup.on('record', (r) => events.push(`${String(r.task)}:${r.event}`));
      const task = sup.start({ command: '/bin/true', env: env() });
      const r = await task.result;
      expect(r.state).toBe('success');
      expect(events).toContain(`${task.id}:exited with code 0`);
    });
  });

  it("a task's own log listener gets warden's records with no supervisor listener", async () => {
    await withSupervisor({ containment: 'group' }, async (sup) => {
      const task = sup.start({ command: '/bin/true', env: env() });
      const loggers: string[] = [];
      task.on('log', (r) => loggers.push(`${r.logger}:${r.event}`));
      await task.result;
      expect(loggers).toContain('warden:exited with code 0');
    });
  });
});
