import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runLogsCommand } from '../../lib/cli/logs-command.js';
import { leakChecked, withTempDir } from './helpers.js';

/** A stdout stand-in that keeps what was written and says when it changed. */
class Capture extends Writable {
  text = '';
  isTTY?: boolean;
  constructor(isTTY?: boolean) {
    super();
    this.isTTY = isTTY;
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    this.emit('text');
    callback();
  }
  /** Resolves once the captured text contains `needle`. */
  contains(needle: string): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this.text.includes(needle)) return;
        this.off('text', check);
        resolve();
      };
      this.on('text', check);
      check();
    });
  }
}

const LOG = [
  '{"timestamp":"2026-11-25T10:00:00.000Z","level":"info","logger":"warden","event":"start accepted","ti":"t1"}',
  '{"timestamp":"2026-11-25T10:00:00.123Z","level":"info","logger":"task.stdout","event":"hello"}',
  'this line is not json \x1b[2J',
  '{"timestamp":"2026-11-25T10:00:01.500Z","level":"warning","logger":"task","event":"slow","rows":3,"who":"a b"}',
  '{"timestamp":"2026-11-25T10:00:02.000Z","level":"error","logger":"task.stderr","event":"boom"}',
].join('\n') + '\n';

async function run(argv: string[], options: { isTTY?: boolean; env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<{ status: number; out: string; err: string }> {
  const stdout = new Capture(options.isTTY);
  const stderr = new Capture();
  const status = await runLogsCommand(argv, { stdout, stderr, env: options.env ?? {}, signal: options.signal });
  return { status, out: stdout.text, err: stderr.text };
}

describe('warden logs', () => {
  it('prints relative times, levels, loggers, events and fields; malformed lines marked', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, LOG);
    const { status, out, err } = await run([path]);
    expect(status).toBe(0);
    expect(err).toBe('');
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^\s*\+0\.000s INFO\s+warden start accepted ti=t1$/);
    expect(lines[1]).toMatch(/^\s*\+0\.123s INFO\s+task\.stdout hello$/);
    expect(lines[2]).toMatch(/^\s+\[malformed\] this line is not json \\x1b\[2J$/);
    expect(lines[3]).toMatch(/^\s*\+1\.500s WARNING\s+task slow rows=3 who="a b"$/);
    expect(lines[4]).toMatch(/^\s*\+2\.000s ERROR\s+task\.stderr boom$/);
    expect(out).not.toContain('\x1b');
  })));

  it('colours levels on a TTY unless NO_COLOR or --no-color says otherwise', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, LOG);
    expect((await run([path], { isTTY: true })).out).toContain('\x1b[31mERROR');
    expect((await run([path], { isTTY: true, env: { NO_COLOR: '1' } })).out).not.toContain('\x1b[');
    expect((await run([path, '--no-color'], { isTTY: true })).out).not.toContain('\x1b[');
    expect((await run([path])).out).not.toContain('\x1b[');
  })));

  it('says what is wrong and exits 2 for a missing file, a directory, or bad arguments', leakChecked(() => withTempDir(async (dir) => {
    const missing = await run([join(dir, 'nope.log')]);
    expect(missing.status).toBe(2);
    expect(missing.err).toContain(join(dir, 'nope.log'));
    expect(missing.err).toContain('no such file');
    mkdirSync(join(dir, 'sub'));
    expect((await run([join(dir, 'sub')])).status).toBe(2);
    const unknown = await run(['--frobnicate', 'x']);
    expect(unknown.status).toBe(2);
    expect(unknown.err).toContain('--frobnicate');
    expect((await run([])).status).toBe(2);
  })));

  it('--follow prints appended lines, waits for a partial line\'s end, and stops on abort', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, LOG);
    const sigintListeners = process.listenerCount('SIGINT');
    const controller = new AbortController();
    const stdout = new Capture();
    const done = runLogsCommand([path, '--follow'], { stdout, stderr: new Capture(), env: {}, signal: controller.signal });
    await stdout.contains('boom');
    expect(process.listenerCount('SIGINT')).toBe(sigintListeners + 1);
    appendFileSync(path, '{"timestamp":"2026-11-25T10:00:03.000Z","level":"info","logger":"task.stdout","event":"appended"}\n');
    await stdout.contains('appended');
    expect(stdout.text).toMatch(/\+3\.000s INFO\s+task\.stdout appended/);
    appendFileSync(path, '{"timestamp":"2026-11-25T10:00:04.000Z","level":"info","logger":"task","event":"in two wri');
    appendFileSync(path, 'tes"}\n');
    await stdout.contains('in two writes');
    expect(stdout.text).not.toContain('[malformed] {');
    controller.abort();
    expect(await done).toBe(0);
    expect(process.listenerCount('SIGINT')).toBe(sigintListeners);
  })));

  it('--follow ends cleanly on a real SIGINT', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, LOG);
    const stdout = new Capture();
    const done = runLogsCommand([path, '-f'], { stdout, stderr: new Capture(), env: {} });
    await stdout.contains('boom'); // the first pass runs after the signal listeners are in place
    process.kill(process.pid, 'SIGINT');
    expect(await done).toBe(0);
    expect(process.listenerCount('SIGTERM')).toBe(0);
  })));

  it('--follow with an already aborted signal prints what is there and ends', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, LOG + '{"timestamp":"2026-11-25T10:00:05.000Z","event":"no newline yet"}');
    const { status, out } = await run([path, '--follow'], { signal: AbortSignal.abort() });
    expect(status).toBe(0);
    expect(out).toContain('no newline yet');
  })));
});
