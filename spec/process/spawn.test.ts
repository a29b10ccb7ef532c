import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Supervisor } from '../../lib/supervisor/supervisor.js';
import { WardenError } from '../../lib/errors.js';
import { guardLeaks } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();

describe('spawn failures are results, never throws', () => {
  it('command not found -> status 127, ERR_SPAWN_ENOENT, state failed', async () => {
    await withSupervisor({}, async (sup) => {
      const r = await sup.run({ command: 'warden-no-such-command-xyz', env: env() });
      expect(r).toMatchObject({ state: 'failed', reason: 'spawn-failed', status: 127, survivors: 0 });
      expect(r.error!.code).toBe('ERR_SPAWN_ENOENT');
      expect(r.error!.message).toMatch(/command not found/);
    });
  });

  it('a file without the execute bit -> 126, ERR_SPAWN_EACCES', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-spec-'));
    const file = join(dir, 'not-exec.sh');
    writeFileSync(file, '#!/bin/sh\necho hi\n');
    chmodSync(file, 0o644);
    try {
      await withSupervisor({}, async (sup) => {
        const r = await sup.run({ command: file, env: env() });
        expect(r).toMatchObject({ reason: 'spawn-failed', status: 126 });
        expect(r.error!.code).toBe('ERR_SPAWN_EACCES');
      });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('a directory as command -> 126', async () => {
    await withSupervisor({}, async (sup) => {
      const r = await sup.run({ command: tmpdir(), env: env() });
      expect(r).toMatchObject({ reason: 'spawn-failed', status: 126 });
      expect(r.error!.message).toMatch(/not an executable file/);
    });
  });

  it('a missing cwd -> 127 with the path in the message', async () => {
    await withSupervisor({}, async (sup) => {
      const r = await sup.run({ command: 'true', cwd: '/nonexistent/warden', env: env() });
      expect(r.status).toBe(127);
      expect(r.error!.message).toMatch(/\/nonexistent\/warden/);
    });
  });
});

describe('invalid options throw at the boundary', () => {
  const sup = new Supervisor();
  it.each([
    [{ command: 'true', graceMs: -1 }, /graceMs must be an integer >= 0/],
    [{ command: 'true', graceMs: 1.5 }, /graceMs must be an integer/],
    [{ command: 'true', drainMs: '10' }, /drainMs must be an integer/],
    [{ command: 'true', killSignal: 'SIGNOPE' }, /not a signal name/],
    [{ command: 'true', maxKillRounds: 0 }, /maxKillRounds must be an integer >= 1/],
    [{ command: 'true', id: 'has space' }, /spec.id/],
  ])('%j', (spec, message) => {
    expect(() => sup.start(spec as never)).toThrowError(WardenError);
    expect(() => sup.start(spec as never)).toThrowError(message);
  });
  it.each([[{}], [{ command: '' }], [{ command: 'true', args: [1] }], [null]])('%j -> TypeError', (spec) => {
    expect(() => sup.start(spec as never)).toThrowError(TypeError);
  });
  it('a closed supervisor refuses new tasks', async () => {
    await sup.close();
    expect(() => sup.start({ command: 'true' })).toThrowError(/closing or closed/);
  });
});

describe('channels and environment', () => {
  it('wires fds 0-4, the fd env vars and the cookie, drops secrets, keeps fd 3 lines and reads fd 4', async () => {
    await withSupervisor({}, async (sup) => {
      const task = sup.start({
        command: fixture('channels.sh'),
        env: { ...env(), SECRET_ONE: 's1', WARDEN_TOKEN: 'tok', KEEP_ME: 'yes' },
        secretEnv: ['SECRET_ONE'],
      });
      let out = '';
      let err = '';
      const records: Array<Record<string, unknown>> = [];
      task.on('stdout', (b) => (out += b));
      task.on('stderr', (b) => (err += b));
      task.on('log', (r) => records.push(r));
      const r = await task.result;
      expect(r).toMatchObject({ state: 'failed', reason: 'exited', exitCode: 3, status: 3, pipesForceClosed: false });
      expect(out).toBe('out:3:4\n');
      expect(err).toMatch(/^err\n/);
      expect(err).toMatch(/KEEP_ME=yes/);
      expect(err).toMatch(new RegExp(`WARDEN_TASK=${task.cookie.replace('.', '\\.')}`));
      expect(err).not.toMatch(/SECRET_ONE|WARDEN_TOKEN/);
      const channel = records.filter((r) => r.logger === 'task');
      expect(channel.map((r) => [r.event, r.malformed ?? false])).toEqual([
        ['hello from fd 3', false],
        ['partial', true],
      ]);
      expect(records.filter((r) => r.logger === 'task.stdout').map((r) => r.event)).toEqual(['out:3:4']);
    });
  });

  it('an isolated task is its own session and group leader; cwd is honoured', async () => {
    // Group + cookie: under the subreaper tier the leader is warden-reaper (spec/process/subreaper.test.ts).
    await withSupervisor({ containment: 'group' }, async (sup) => {
      const task = sup.start({ command: 'bash', args: ['-c', 'echo "$$ $(ps -o pgid= -p $$) $(ps -o sid= -p $$) $PWD"'], cwd: '/tmp', env: env() });
      let out = '';
      task.on('stdout', (b) => (out += b));
      await task.result;
      const [pid, pgid, sid, cwd] = out.trim().split(/\s+/);
      expect(pgid).toBe(pid);
      expect(sid).toBe(pid);
      expect(cwd).toBe('/tmp');
    });
  });
});
