/**
 * `warden run --control-plane URL --ti ID` and `warden control-plane` as scripts use them: real
 * `warden` processes against a real reference control plane on 127.0.0.1:0 in this process.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startReferenceControlPlane, type ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { runWarden, type CliRun } from '../helpers/cli.js';
import { guardLeaks } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';

const { env } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-cli-cp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = 'cli-cp-secret-token';

/** Runs `warden` with env() (minus any WARDEN_TOKEN) plus `extra`. */
function warden(args: string[], extra: NodeJS.ProcessEnv = {}, onOut?: (text: string, child: ChildProcess) => void): Promise<CliRun> {
  const base = env();
  delete base.WARDEN_TOKEN;
  return runWarden(args, { env: { ...base, ...extra }, ...(onOut ? { onOut } : {}) });
}

async function withServer(body: (cp: ReferenceControlPlane) => Promise<void>): Promise<void> {
  const cp = await startReferenceControlPlane({ token: TOKEN });
  try {
    await body(cp);
  } finally {
    await cp.close();
  }
}

const cpFlags = (cp: ReferenceControlPlane, ti: string): string[] => ['--control-plane', cp.url, '--ti', ti, '--heartbeat-interval-ms', '100', '--max-failed-heartbeats', '2'];

describe('warden run --control-plane', () => {
  it('a task instance forced to failed: the next heartbeat gets 409, the whole tree dies, exit 125', async () => {
    await withServer(async (cp) => {
      cp.store.createTaskInstance({ id: 'ti-cli-409' });
      const file = join(dir, '409.json');
      const accepted = new Promise<void>((resolve) => {
        const on = (c: { path: string; status: number | null }): void => {
          if (!c.path.endsWith('/run') || c.status !== 200) return;
          cp.store.off('call', on);
          resolve();
        };
        cp.store.on('call', on);
      });
      let sawReady!: () => void;
      const ready = new Promise<void>((resolve) => (sawReady = resolve));
      const run = warden(['run', ...cpFlags(cp, 'ti-cli-409'), '--grace-ms', '200', '--result-file', file, '--', fixture('tree.sh')], { WARDEN_TOKEN: TOKEN }, (out) => {
        if (out.includes('ready')) sawReady();
      });
      await Promise.all([accepted, ready]);
      cp.store.forceState('ti-cli-409', 'failed');
      const r = await run;
      expect(r.code).toBe(125);
      const result = JSON.parse(readFileSync(file, 'utf8'));
      expect(result).toMatchObject({ state: 'server-terminated', reason: 'server-terminated', survivors: 0, escapees: 2 });
      const calls = cp.store.getTaskInstance('ti-cli-409')!.calls;
      expect(calls.filter((c) => c.path.endsWith('/heartbeat')).at(-1)).toMatchObject({ status: 409 });
      expect(calls.filter((c) => c.path.endsWith('/state'))).toEqual([]);
      expect(r.out).not.toContain(TOKEN);
      expect(r.err).not.toContain(TOKEN);
      // The tree is gone: the leak guard's /proc scan after this test proves it independently.
    });
  });

  it('the token reaches the control plane but not the task, read from --token-file too', async () => {
    await withServer(async (cp) => {
      cp.store.createTaskInstance({ id: 'ti-cli-env' });
      const tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, `${TOKEN}\n`);
      const r = await warden(['run', ...cpFlags(cp, 'ti-cli-env'), '--token-file', tokenFile, '--', 'bash', '-c', 'tr "\\0" "\\n" < /proc/$$/environ'], { WARDEN_TOKEN_FILE: tokenFile });
      expect(r.code).toBe(0);
      expect(r.out).toContain('WARDEN_COMMS_FD=4');
      expect(r.out).not.toContain(TOKEN);
      expect(r.out).not.toMatch(/^WARDEN_TOKEN/m);
      expect(cp.store.getTaskInstance('ti-cli-env')).toMatchObject({ starts: 1, state: 'success', state_reports: 1 });
    });
  });

  it('a start the control plane refuses: the task is ended before it runs, exit 1', async () => {
    await withServer(async (cp) => {
      const file = join(dir, 'refused.json');
      const r = await warden(['run', ...cpFlags(cp, 'no-such-ti'), '--grace-ms', '200', '--result-file', file, '--', 'sleep', '30'], { WARDEN_TOKEN: TOKEN });
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/did not accept the start of task instance no-such-ti.*HTTP 404/);
      const result = JSON.parse(readFileSync(file, 'utf8'));
      expect(result).toMatchObject({ state: 'failed', reason: 'spawn-failed', survivors: 0, error: { code: 'ERR_START_REFUSED' } });
    });
  });

  it.each([
    [['run', '--control-plane', 'http://127.0.0.1:9', '--ti', 'x', '--', 'true'], {}, /token is missing: set WARDEN_TOKEN or pass --token-file/],
    [['run', '--ti', 'x', '--', 'true'], { WARDEN_TOKEN: TOKEN }, /--control-plane URL and --ti ID go together/],
    [['run', '--control-plane', 'http://127.0.0.1:9', '--', 'true'], { WARDEN_TOKEN: TOKEN }, /--control-plane URL and --ti ID go together/],
    [['run', '--heartbeat-interval-ms', '100', '--', 'true'], {}, /--heartbeat-interval-ms needs --control-plane URL and --ti ID/],
    [['run', '--control-plane', 'http://127.0.0.1:9', '--ti', 'x', '--max-failed-heartbeats', '0', '--', 'true'], { WARDEN_TOKEN: TOKEN }, /--max-failed-heartbeats must be an integer >= 1/],
    [['run', '--control-plane', 'not a url', '--ti', 'x', '--', 'true'], { WARDEN_TOKEN: TOKEN }, /--control-plane must be an absolute http\(s\) URL/],
  ] as const)('usage error %j exits 2 and says what to fix', async (args, extra, message) => {
    const r = await warden([...args], extra);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe('warden control-plane', () => {
  it('--port 0 prints its URL, serves, and stops on SIGTERM on its own', async () => {
    let info: { url: string; token: string; pid: number } | undefined;
    let server: ChildProcess | undefined;
    let gotLine!: () => void;
    const line = new Promise<void>((resolve) => (gotLine = resolve));
    const run = warden(['control-plane', '--port', '0'], {}, (out, child) => {
      if (!info && out.includes('\n')) {
        info = JSON.parse(out.slice(0, out.indexOf('\n')));
        server = child;
        gotLine();
      }
    });
    await line;
    expect(info!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(info!.token.length).toBeGreaterThanOrEqual(20);
    const health = await fetch(`${info!.url}/execution/health`);
    expect(await health.json()).toEqual({ status: 'healthy' });
    const unauthorized = await fetch(`${info!.url}/admin/task-instances`);
    expect(unauthorized.status).toBe(401);
    await unauthorized.arrayBuffer();
    const created = await fetch(`${info!.url}/admin/task-instances`, { method: 'POST', headers: { authorization: `Bearer ${info!.token}`, 'content-type': 'application/json' }, body: '{}' });
    expect(created.status).toBe(201);
    await created.arrayBuffer();
    expect(info!.pid).toBe(server!.pid);
    server!.kill('SIGTERM');
    const r = await run;
    expect(r).toMatchObject({ code: 0, signal: null });
    expect(r.err).toContain('stopped');
  });
});
