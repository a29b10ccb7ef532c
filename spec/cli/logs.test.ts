/**
 * The task log from the command line, as real `warden` processes: `warden run --log-file` writes
 * it, `warden logs` reads it for a person, `--follow` tails it.
 */
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runWarden, type CliRun } from '../helpers/cli.js';
import { guardLeaks } from '../helpers/leaks.js';

const { env } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-cli-logs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const newLog = (): string => join(dir, `task-${++seq}.jsonl`);

/** Runs `warden ...args`; `onOut` sees the stdout so far after each chunk. Resolves on `close`. */
function warden(args: string[], onOut?: (out: string, child: ChildProcess) => void): Promise<CliRun> {
  return runWarden(args, { env: env(), ...(onOut ? { onOut } : {}) });
}

/** A task that writes to stdout, stderr and fd 3. */
const TASK = ['bash', '-c', `echo out line; echo err line >&2; echo '{"level":"warn","event":"from fd 3","rows":2}' >&3; exit 0`];

describe('warden run --log-file', () => {
  it('writes the JSON-lines log and still passes stdout and stderr through', async () => {
    const path = newLog();
    const r = await warden(['run', '--log-file', path, '--', ...TASK]);
    expect(r).toMatchObject({ code: 0, out: 'out line\n', err: 'err line\n' });
    const records = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const r of records) expect(Object.keys(r).slice(0, 4)).toEqual(['timestamp', 'level', 'logger', 'event']);
    const byLogger = (logger: string): Array<Record<string, unknown>> => records.filter((x) => x.logger === logger).map(({ timestamp: _t, ...rest }) => rest);
    expect(byLogger('task.stdout')).toEqual([{ level: 'info', logger: 'task.stdout', event: 'out line' }]);
    expect(byLogger('task.stderr')).toEqual([{ level: 'error', logger: 'task.stderr', event: 'err line' }]);
    expect(byLogger('task')).toEqual([{ level: 'warning', logger: 'task', event: 'from fd 3', rows: 2 }]);
    expect(records.at(-1)).toMatchObject({ level: 'info', logger: 'warden', event: 'exited with code 0', exitCode: 0 });
  });

  it.each([
    ['in a directory that does not exist', (): string => join(dir, 'no-such-dir', 'task.jsonl')],
    ['that is a directory', (): string => dir],
  ])('a log file %s: exit 2, the path in the message, the task not started', async (_what, pathOf) => {
    const path = pathOf();
    const marker = join(dir, `started-${++seq}`);
    const r = await warden(['run', '--log-file', path, '--', 'touch', marker]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`cannot open the task log file ${path}`);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('warden logs', () => {
  it('prints levels and relative times without colours when not a TTY; malformed lines marked; exit 0', async () => {
    const path = newLog();
    expect((await warden(['run', '--log-file', path, '--', ...TASK])).code).toBe(0);
    appendFileSync(path, 'not a JSON record\n');
    const r = await warden(['logs', path]);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).not.toContain('\x1b');
    const lines = r.out.trimEnd().split('\n');
    const written = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(written.length);
    expect(lines[0]).toMatch(/^\s*\+0\.000s /);
    const time = String.raw`^\s*\+\d+\.\d{3}s `;
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`${time}INFO\\s+task\\.stdout out line$`)),
        expect.stringMatching(new RegExp(`${time}ERROR\\s+task\\.stderr err line$`)),
        expect.stringMatching(new RegExp(`${time}WARNING\\s+task from fd 3 rows=2$`)),
        expect.stringMatching(new RegExp(`${time}INFO\\s+warden exited with code 0 exitCode=0 signal=null`)),
      ]),
    );
    expect(lines.at(-1)).toMatch(/^\s+\[malformed\] not a JSON record$/);
  });

  it('--follow prints a line appended later and stops on SIGINT, exiting on its own with 0', async () => {
    const path = newLog();
    appendFileSync(path, '{"timestamp":"2026-01-01T00:00:00.000Z","level":"info","logger":"task.stdout","event":"already there"}\n');
    let appended = false;
    let interrupted = false;
    const r = await warden(['logs', path, '--follow'], (out, child) => {
      if (!appended && out.includes('already there')) {
        appended = true;
        appendFileSync(path, '{"timestamp":"2026-01-01T00:00:02.500Z","level":"error","logger":"task.stderr","event":"appended later"}\n');
      } else if (appended && !interrupted && out.includes('appended later')) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    expect(interrupted).toBe(true);
    expect(r).toMatchObject({ code: 0, signal: null, err: '' });
    expect(r.out.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^\s*\+0\.000s INFO\s+task\.stdout already there$/),
      expect.stringMatching(/^\s*\+2\.500s ERROR\s+task\.stderr appended later$/),
    ]);
  });
});
