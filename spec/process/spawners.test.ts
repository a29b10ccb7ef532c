import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeChildrenAlive, nativeSpawnAvailable } from '../../lib/process/native-spawn.js';
import { Supervisor } from '../../lib/supervisor/supervisor.js';
import { guardLeaks } from '../helpers/leaks.js';
import { withScripts } from '../helpers/scripts.js';
import { withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();

/** What a task's leader sees of itself, printed by bash: fds, signal masks, ids, cwd. */
const SELF_REPORT = [
  'for fd in 0 1 2 3 4; do printf "fd%s=%s\\n" $fd "$(readlink /proc/$$/fd/$fd | cut -d: -f1)"; done',
  // grep's own status: a signal the shell was started with ignored stays ignored in its children.
  'grep -E "^(SigBlk|SigIgn):" /proc/self/status | tr -d "\\t" | tr ":" "="',
  'echo "ids=$$ $(ps -o pgid= -p $$ | tr -d " ") $(ps -o sid= -p $$ | tr -d " ")"',
  'echo "cwd=$PWD"',
].join('; ');

function report(out: string): Map<string, string> {
  return new Map(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('the native spawner', () => {
  it('is built and used by default where the install could build it (CI sets WARDEN_EXPECT_NATIVE=1)', async () => {
    if (process.env.WARDEN_EXPECT_NATIVE === '1') expect(nativeSpawnAvailable).toBe(true);
    await withSupervisor({}, async (sup) => expect(sup.spawner).toBe(nativeSpawnAvailable ? 'native' : 'node'));
    await withSupervisor({ spawner: 'node' }, async (sup) => expect(sup.spawner).toBe('node'));
    expect(() => new Supervisor({ spawner: 'fork' as never })).toThrow(/spawner must be 'auto' or 'node'/);
  });

  it.runIf(nativeSpawnAvailable)('reaps only its own children: child_process children started alongside keep their statuses, and nothing is left listening', async () => {
    const sigchldBefore = process.listenerCount('SIGCHLD');
    await withSupervisor({}, async (sup) => {
      const others = [3, 5, 7].map((code) => spawn('bash', ['-c', `sleep 0.05; exit ${code}`], { env: env(), stdio: 'ignore' }));
      const tasks = [11, 13, 17].map((code) => sup.run({ command: 'bash', args: ['-c', `sleep 0.05; exit ${code}`], env: env() }));
      const codes = await Promise.all(others.map(async (c) => (await once(c, 'exit'))[0]));
      expect(codes).toEqual([3, 5, 7]);
      expect((await Promise.all(tasks)).map((r) => r.exitCode)).toEqual([11, 13, 17]);
    });
    expect(nativeChildrenAlive()).toBe(0);
    expect(process.listenerCount('SIGCHLD')).toBe(sigchldBefore);
  });
});

describe('a native child whose SIGCHLD went missing', () => {
  it.runIf(nativeSpawnAvailable)('is reaped by the exit backstop: the task settles with its real status, and no zombie is left', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'exit 9'], env: env(), exitCheckMs: 50 });
      // Someone else in the process takes every SIGCHLD listener away: ours is the only one.
      expect(process.listenerCount('SIGCHLD')).toBe(1);
      process.removeAllListeners('SIGCHLD');
      const r = await task.result;
      expect([r.exitCode, r.status, r.error]).toEqual([9, 9, null]);
      expect(nativeChildrenAlive()).toBe(0);
    });
    expect(process.listenerCount('SIGCHLD')).toBe(0);
  });
});

describe.each(['auto', 'node'] as const)('both spawners give the child the same start (spawner %s)', (spawner) => {
  it('fd 0 /dev/null, fds 1-4 sockets, no signal blocked or ignored, its own session, the cwd', async () => {
    // Group + cookie, so the command is the leader (under the subreaper tier warden-reaper is).
    await withSupervisor({ spawner, containment: 'group' }, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', SELF_REPORT], cwd: '/tmp', env: env() });
      let out = '';
      task.on('stdout', (b) => (out += b));
      const r = await task.result;
      expect(r.exitCode).toBe(0);
      const seen = report(out);
      expect(seen.get('fd0')).toBe('/dev/null');
      for (const fd of ['fd1', 'fd2', 'fd3', 'fd4']) expect(seen.get(fd)).toBe('socket');
      // The supervisor ignores SIGPIPE (Node does); the child must not inherit that.
      expect(seen.get('SigIgn')).toBe('0000000000000000');
      expect(seen.get('SigBlk')).toBe('0000000000000000');
      const [pid, pgid, sid] = seen.get('ids')!.split(' ');
      expect([pgid, sid]).toEqual([pid, pid]);
      expect(seen.get('cwd')).toBe('/tmp');
    });
  });

  it('a task that is not isolated stays in the supervisor\'s group and session', async () => {
    await withSupervisor({ spawner }, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'echo "$(ps -o pgid= -p $$ | tr -d " ") $(ps -o sid= -p $$ | tr -d " ")"'], env: env(), isolate: false });
      let out = '';
      task.on('stdout', (b) => (out += b));
      await task.result;
      const [pgid, sid] = out.trim().split(' ').map(Number);
      expect(pgid).toBe(sup.signaller.ownPgid);
      const ownSid = Number(
        (await import('node:fs')).readFileSync(`/proc/${process.pid}/stat`, 'latin1').split(') ')[1]!.split(' ')[3],
      );
      expect(sid).toBe(ownSid);
    });
  });

  it('a bare command name is looked up in the child\'s PATH, not the supervisor\'s; missing -> 127, not executable -> 126, a script without #! runs through sh', async () => {
    const scripts = {
      'warden-path-probe': ['#!/bin/sh\necho found-in-task-path\n', 0o755],
      'warden-path-noexec': ['#!/bin/sh\necho no\n', 0o644],
      'warden-no-shebang': ['echo "ran by sh with $1"\n', 0o755],
    } as const;
    await withScripts(scripts as unknown as Record<string, [string, number]>, async (dir) => {
      mkdirSync(join(dir, 'warden-path-dir'));
      await withSupervisor({ spawner }, async (sup) => {
        const childPath = `${dir}:${env().PATH ?? '/usr/bin:/bin'}`;
        const task = sup.start({ command: 'warden-path-probe', env: { ...env(), PATH: childPath } });
        let out = '';
        task.on('stdout', (b) => (out += b));
        expect((await task.result).exitCode).toBe(0);
        expect(out).toBe('found-in-task-path\n');
        const missing = await sup.run({ command: 'warden-path-probe', env: env() });
        expect([missing.status, missing.error?.code]).toEqual([127, 'ERR_SPAWN_ENOENT']);
        const noexec = await sup.run({ command: 'warden-path-noexec', env: { ...env(), PATH: dir } });
        expect([noexec.status, noexec.error?.code]).toEqual([126, 'ERR_SPAWN_EACCES']);
        const directory = await sup.run({ command: join(dir, 'warden-path-dir'), env: env() });
        expect(directory.status).toBe(126);
        // An executable script without `#!` runs through /bin/sh, as execvp does.
        const script = sup.start({ command: join(dir, 'warden-no-shebang'), args: ['an-arg'], env: env() });
        let scriptOut = '';
        script.on('stdout', (b) => (scriptOut += b));
        expect((await script.result).exitCode).toBe(0);
        expect(scriptOut).toBe('ran by sh with an-arg\n');
      });
    });
  });

  it('an argument or variable with a NUL byte is a spawn failure (126, ERR_SPAWN_FAILED), not a cut-short string', async () => {
    await withSupervisor({ spawner }, async (sup) => {
      const arg = await sup.run({ command: 'echo', args: ['a\0b'], env: env() });
      expect([arg.status, arg.error?.code]).toEqual([126, 'ERR_SPAWN_FAILED']);
      expect(arg.error?.message).toMatch(/null bytes/);
      const variable = await sup.run({ command: 'echo', env: { ...env(), BAD: 'a\0b' } });
      expect([variable.status, variable.error?.code]).toEqual([126, 'ERR_SPAWN_FAILED']);
    });
  });

  it('exit codes and deaths by signal come back as the shell reports them, stdin a pipe when asked', async () => {
    await withSupervisor({ spawner }, async (sup) => {
      expect(await sup.run({ command: 'bash', args: ['-c', 'exit 42'], env: env() })).toMatchObject({ exitCode: 42, status: 42, signal: null });
      expect(await sup.run({ command: 'bash', args: ['-c', 'kill -TERM $$'], env: env() })).toMatchObject({ exitCode: null, signal: 'SIGTERM', status: 143 });
      const task = sup.start({ command: 'bash', args: ['-c', 'read -r line; echo "got $line"; [ -S /proc/self/fd/0 ] || readlink /proc/self/fd/0'], env: env(), stdin: true });
      let out = '';
      task.on('stdout', (b) => (out += b));
      task.write('hello\n');
      task.end();
      expect((await task.result).exitCode).toBe(0);
      expect(out).toBe('got hello\n');
    });
  });
});

describe('in a worker thread', () => {
  it('tasks start through child_process (signals reach the main thread only) and settle as usual', async () => {
    const { Worker } = await import('node:worker_threads');
    const lib = new URL('../../dist/lib/index.js', import.meta.url).href;
    const source = `
      const { parentPort, workerData } = await import('node:worker_threads');
      const { Supervisor } = await import(${JSON.stringify(lib)});
      const s = new Supervisor({ containment: 'group' });
      const r = await s.run({ command: 'bash', args: ['-c', 'exit 7'], env: workerData });
      await s.close();
      parentPort.postMessage({ spawner: s.spawner, exitCode: r.exitCode, survivors: r.survivors });
    `;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), { workerData: env() });
    // Listen for the exit before awaiting the message: the worker exits right after posting it,
    // and an 'exit' emitted before a later once() was attached would be missed (a CI timeout).
    const exited = once(worker, 'exit');
    const [message] = (await once(worker, 'message')) as [unknown];
    await exited;
    expect(message).toEqual({ spawner: 'node', exitCode: 7, survivors: 0 });
  });
});
