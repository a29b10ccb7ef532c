import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { guardLeaks } from '../helpers/leaks.js';
import { runWarden, type CliRun } from '../helpers/cli.js';
import { cliPath, fixture } from '../helpers/paths.js';
import { reaperPath } from '../../lib/process/native-binding.js';
import { nativeSpawnAvailable } from '../../lib/process/native-spawn.js';

const { env } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function warden(
  args: string[],
  onOut?: (text: string, child: ChildProcess) => void,
  onErr?: (text: string, child: ChildProcess) => void,
): Promise<CliRun> {
  return runWarden(args, { env: env(), ...(onOut ? { onOut } : {}), ...(onErr ? { onErr } : {}) });
}

describe('warden run', () => {
  it('passes stdout/stderr through and exits with the task status', async () => {
    const r = await warden(['run', '--', 'bash', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r).toMatchObject({ code: 7, out: 'out\n', err: 'err\n' });
  });

  it('writes the result file', async () => {
    const file = join(dir, 'result.json');
    const r = await warden(['run', '--result-file', file, '--', 'true']);
    expect(r.code).toBe(0);
    const result = JSON.parse(readFileSync(file, 'utf8'));
    expect(result).toMatchObject({ state: 'success', exitCode: 0, signal: null, reason: 'exited', survivors: 0, pipesForceClosed: false, signalled: 0, escapees: 0 });
    expect(typeof result.durationMs).toBe('number');
  });

  it('--timeout-ms ends the whole tree and exits 124', async () => {
    const file = join(dir, 'timeout.json');
    const r = await warden(['run', '--timeout-ms', '300', '--grace-ms', '100', '--result-file', file, '--', fixture('tree.sh')]);
    expect(r.code).toBe(124);
    const result = JSON.parse(readFileSync(file, 'utf8'));
    expect(result).toMatchObject({ reason: 'timeout', survivors: 0, escapees: 2 });
  });

  it('--pty without a terminal around it: 80x24, and the end of warden\'s stdin is the task\'s end of file', async () => {
    if (!nativeSpawnAvailable) return;
    const r = await warden(['run', '--pty', '--', 'bash', '-c', 'tty; stty size; read -r x || echo eof; exit 4']);
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/^\/dev\/pts\/\d+\r\n24 80\r\n(\^D\x08\x08)?eof\r\n$/);
  });

  it.each(['subreaper', 'group'])('--containment %s is used and reported; a bad value is a usage error', async (tier) => {
    if (tier === 'subreaper' && !(reaperPath !== undefined && nativeSpawnAvailable)) return;
    const file = join(dir, `containment-${tier}.json`);
    const r = await warden(['run', '--containment', tier, '--timeout-ms', '300', '--grace-ms', '100', '--result-file', file, '--', fixture('tree.sh')]);
    expect(r.code).toBe(124);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ reason: 'timeout', survivors: 0, escapees: 2, containment: tier === 'group' ? 'group+cookie' : tier });
    const bad = await warden(['run', '--containment', 'jail', '--', 'true']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--containment: 'jail' is not one of auto, subreaper, group/);
  });

  it.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)('on %s it tears the tree down and exits %d, on its own', async (sig, status) => {
    const file = join(dir, `${sig}.json`);
    let sent = false;
    const r = await warden(['run', '--grace-ms', '200', '--result-file', file, '--', fixture('tree.sh')], (out, child) => {
      if (!sent && out.includes('ready')) {
        sent = true;
        child.kill(sig);
      }
    });
    expect(r.code).toBe(status);
    const result = JSON.parse(readFileSync(file, 'utf8'));
    expect(result).toMatchObject({ reason: 'supervisor-stop', survivors: 0, escapees: 2 });
  });

  it('a second SIGINT skips the rest of the grace period (SIGKILL at once)', async () => {
    const file = join(dir, 'twice.json');
    let sent = false;
    let again = false;
    const r = await warden(
      ['run', '--grace-ms', '60000', '--result-file', file, '--', fixture('tree.sh')],
      (out, child) => {
        if (!sent && out.includes('ready')) {
          sent = true;
          child.kill('SIGINT');
        }
      },
      // The second one once warden said it began the teardown.
      (err, child) => {
        if (!again && err.includes('ending the task')) {
          again = true;
          child.kill('SIGINT');
        }
      },
    );
    expect(r.code).toBe(130);
    const result = JSON.parse(readFileSync(file, 'utf8'));
    expect(result.survivors).toBe(0);
    const wait = result.teardown.steps.find((s: { step: string }) => s.step === 'grace-wait');
    expect(wait.durationMs).toBeLessThan(10_000);
    expect(wait.detail).toMatch(/cut short/);
  });

  it('--stdin gives the task warden\'s stdin, with backpressure, byte for byte', async () => {
    const input = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7) & 0xff;
    const child = spawn(process.execPath, [cliPath, 'run', '--stdin', '--', 'cat'], { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => chunks.push(b));
    child.stdin!.end(input);
    const [code] = await once(child, 'close');
    expect(code).toBe(0);
    expect(Buffer.concat(chunks).equals(input)).toBe(true);
  });

  it('a missing command exits 127 with a clear message', async () => {
    const r = await warden(['run', '--', 'warden-no-such-command']);
    expect(r.code).toBe(127);
    expect(r.err).toMatch(/command not found/);
  });

  it.each([
    [['run'], /needs a command/],
    [['run', '--grace-ms', '-5', '--', 'true'], /--grace-ms must be an integer/],
    [['run', '--kill-signal', 'SIGWHAT', '--', 'true'], /unknown signal/],
    [['run', '--bogus', '--', 'true'], /unknown option --bogus/],
    [['frobnicate'], /unknown command/],
  ])('usage error %j exits 2', async (args, message) => {
    const r = await warden(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });

  it.each([[['help']], [['--help']], [['run', '--help']], [['logs', '-h']]])('%j prints the usage and exits 0; after -- it is the task\'s', async (args) => {
    const r = await warden(args);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^warden: supervise task process trees/);
    expect(r.out).toMatch(/warden run \[options\] -- <command>/);
    const passed = await warden(['run', '--', 'bash', '-c', 'echo "$1"', 'x', '--help']);
    expect(passed.out).toBe('--help\n');
  });

  it('--no-isolate keeps the task in warden\'s group', async () => {
    const r = await warden(['run', '--no-isolate', '--', 'bash', '-c', 'echo $(( $(cut -d" " -f5 /proc/$$/stat) == $(cut -d" " -f5 /proc/$PPID/stat) ))']);
    expect(r.out.trim()).toBe('1');
  });
});
