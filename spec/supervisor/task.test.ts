import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { findMembers } from '../../lib/signal/members.js';
import { guardLeaks, liveWithToken, TOKEN_NAME, until } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { waitFor, withSupervisor } from '../helpers/tasks.js';

const { env, token } = guardLeaks();

/** A sink slower than the child: small buffer, drains on a later turn. */
function slowSink(): { sink: Writable; bytes: () => number; maxBuffered: () => number } {
  let bytes = 0;
  let maxBuffered = 0;
  const sink = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      maxBuffered = Math.max(maxBuffered, sink.writableLength);
      setImmediate(cb);
    },
  });
  return { sink, bytes: () => bytes, maxBuffered: () => maxBuffered };
}

describe('output', () => {
  it('a child flooding 64 MiB of stdout: nothing lost, memory bounded by backpressure', async () => {
    await withSupervisor({}, async (sup) => {
      const { sink, bytes, maxBuffered } = slowSink();
      const task = sup.start({ command: process.execPath, args: [fixture('flood.mjs'), String(64 * 1024 * 1024)], env: env(), stdout: sink });
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', status: 0, pipesForceClosed: false });
      // 'finish' once every write was handled ('drain' comes only after a write that returned false).
      await new Promise<void>((resolve) => sink.end(() => resolve()));
      expect(bytes()).toBe(64 * 1024 * 1024);
      // The sink never held much more than its buffer plus one pipe read: without backpressure
      // it would have queued most of the 64 MiB (the child writes far faster than it drains).
      // Process-wide RSS is measured by the task-log spec in a process of its own.
      expect(maxBuffered()).toBeLessThan(1024 * 1024);
    });
  });

  it('a child that writes 60 KB and exits at once: every byte arrives before the result settles', async () => {
    await withSupervisor({}, async (sup) => {
      for (let i = 0; i < 5; i++) {
        const task = sup.start({ command: process.execPath, args: [fixture('burst-exit.mjs'), String(60 * 1024)], env: env() });
        let got = 0;
        let settled = false;
        task.on('stdout', (b) => {
          expect(settled).toBe(false);
          got += b.length;
        });
        const r = await task.result;
        settled = true;
        expect(r.status).toBe(0);
        expect(got).toBe(60 * 1024);
      }
    });
  });

  it('a grandchild that keeps stdout open after the leader exits: settles within drainMs, pipesForceClosed', async () => {
    await withSupervisor({}, async (sup) => {
      // killLeftovers off: the holder survives the leader, so only the drain bound can end the wait.
      const task = sup.start({ command: fixture('hold-stdout.sh'), env: env(), drainMs: 300, killLeftovers: false });
      let exitAt = 0;
      task.on('exit', () => (exitAt = performance.now()));
      const r = await task.result;
      const waited = performance.now() - exitAt;
      expect(r.pipesForceClosed).toBe(true);
      expect(r.status).toBe(0);
      expect(waited).toBeGreaterThanOrEqual(290);
      expect(waited).toBeLessThan(2000);
      // The holder is a survivor the result reports honestly; the spec cleans it up via its token.
      expect(r.survivors).toBe(1);
      const left = liveWithToken(Buffer.from(`${TOKEN_NAME}=${token()}`));
      // Under the subreaper tier (no cgroup: not root) warden-reaper stays with the holder.
      expect(left).toHaveLength(r.containment === 'subreaper' ? 2 : 1);
      for (const pid of left) process.kill(pid, 'SIGKILL');
      expect(await until(() => liveWithToken(Buffer.from(`${TOKEN_NAME}=${token()}`)).length === 0)).toBe(true);
    });
  });

  it('with killLeftovers (default for isolated tasks) the holder is torn down and the pipes close', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: fixture('hold-stdout.sh'), env: env(), drainMs: 5000, graceMs: 1000 });
      const r = await task.result;
      expect(r).toMatchObject({ reason: 'exited', status: 0, survivors: 0, pipesForceClosed: false });
      expect(r.teardown!.escapees).toBe(1);
    });
  });
});

describe('after the result', () => {
  it('no event of a task is emitted once its result has settled, and the task holds nothing', async () => {
    await withSupervisor({}, async (sup) => {
      // A tree that keeps writing on every channel until it is killed.
      const task = sup.start({
        command: 'bash',
        args: ['-c', 'echo ready; while :; do echo out; echo err >&2; echo "{\\"event\\":\\"x\\"}" >&3; printf x >&4; done'],
        env: env(),
        graceMs: 50,
      });
      await waitFor(task);
      let settled = false;
      const late: string[] = [];
      for (const name of ['stdout', 'stderr', 'log', 'record', 'exit', 'teardown', 'spawn', 'secret'] as const) {
        task.on(name, () => {
          if (settled) late.push(name);
        });
      }
      task.cancel();
      const r = await task.result;
      settled = true;
      // Give any queued I/O callbacks a chance to (wrongly) run.
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(late).toEqual([]);
      expect(r.survivors).toBe(0);
      expect(sup.reactor.openHandles(task.id)).toBe(0);
      expect(task.signal.aborted).toBe(true);
    });
  });
});

describe('exit detection', () => {
  it('settles even if the exit event never comes (the leader reaped elsewhere): the backstop notices', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'echo ready; exec sleep 300'], env: env(), exitCheckMs: 50 });
      await waitFor(task);
      // Simulate the lost event: drop warden's exit listener, then end the process from outside.
      // The leader's process object (TaskLeader.child), reached to simulate a lost exit event.
      const child = (task as unknown as { leader: { child: NodeJS.EventEmitter & { kill(s: string): void } } }).leader.child;
      child.removeAllListeners('exit');
      child.kill('SIGKILL');
      const r = await task.result;
      expect(r.error!.code).toBe('ERR_EXIT_UNOBSERVED');
      expect(r.status).toBeNull();
      expect(r.state).toBe('failed');
    });
  });
});

describe('supervisor', () => {
  it('close() ends every task with supervisor-stop and leaves no handle', async () => {
    await withSupervisor({}, async (sup) => {
      const tasks = Array.from({ length: 6 }, (_, i) => sup.start({ id: `t${i}`, command: fixture('tree.sh'), env: env(), graceMs: 200 }));
      await Promise.all(tasks.map((t) => waitFor(t)));
      await sup.close();
      for (const t of tasks) {
        const r = await t.result;
        expect(r.reason).toBe('supervisor-stop');
        expect(r.survivors).toBe(0);
      }
      expect(sup.tasks.size).toBe(0);
      expect(sup.reactor.taskCount).toBe(0);
      expect(sup.reactor.wheel.size).toBe(0);
    });
  });

  it('two supervisors in one process give their tasks the same tier: their cgroups never take the same name', async () => {
    await withSupervisor({}, async (first) => {
      await withSupervisor({}, async (second) => {
        const a = first.start({ command: 'bash', args: ['-c', 'echo ready; sleep 300'], env: env() });
        const b = second.start({ command: 'bash', args: ['-c', 'echo ready; sleep 300'], env: env() });
        await Promise.all([waitFor(a), waitFor(b)]);
        // Each supervisor's best tier ('cgroup' as root); before, the second one's first cgroup
        // name collided with the first one's and its task fell back to a weaker tier.
        expect(a.containment).toBe(first.containment);
        expect(b.containment).toBe(second.containment);
        a.cancel();
        b.cancel();
        expect((await a.result).survivors).toBe(0);
        expect((await b.result).survivors).toBe(0);
      });
    });
  });

  it('the first termination reason wins', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: fixture('ignore-term.sh'), env: env(), graceMs: 100 });
      await waitFor(task);
      task.terminate('server-terminated');
      task.terminate('cancelled');
      task.terminate('timeout');
      const r = await task.result;
      expect(r.reason).toBe('server-terminated');
      expect(findMembers(task.memberQuery())).toEqual([]);
    });
  });

  it('keeps serving other tasks while one is torn down', async () => {
    await withSupervisor({}, async (sup) => {
      const doomed = sup.start({ command: fixture('fork-bomb-slow.sh'), env: env(), graceMs: 100 });
      await waitFor(doomed);
      doomed.cancel();
      const others = await Promise.all(Array.from({ length: 10 }, () => sup.run({ command: 'bash', args: ['-c', 'echo ok'], env: env() })));
      expect(others.every((r) => r.state === 'success')).toBe(true);
      expect((await doomed.result).survivors).toBe(0);
    });
  });
});
