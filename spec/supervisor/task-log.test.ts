/**
 * Issue 5 through a real Supervisor and real children: what a task writes on stdout, stderr and
 * fd 3 ends up in its JSON-lines log file (and in `log` events), line by line, nothing lost.
 * Warden's own records, file failures, secrets and the file's lifetime: task-log-lifecycle.test.ts.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LogRecord } from '../../lib/logs/records.js';
import type { Task } from '../../lib/supervisor/task.js';
import type { TaskResult } from '../../lib/supervisor/types.js';
import { guardLeaks } from '../helpers/leaks.js';
import { fixture } from '../helpers/paths.js';
import { withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();
const dir = mkdtempSync(join(tmpdir(), 'warden-task-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const newLog = (): string => join(dir, `task-${++seq}.jsonl`);

/** The file's records, in file order. Every line must be one JSON object. */
function readLog(path: string): LogRecord[] {
  const text = readFileSync(path, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as LogRecord);
}

/** Collects the task's `log` events. */
function events(task: Task): LogRecord[] {
  const out: LogRecord[] = [];
  task.on('log', (r) => out.push(r));
  return out;
}

/** Strips what varies from run to run, to compare records as a whole. */
const shape = (r: LogRecord): Record<string, unknown> => {
  const { timestamp: _t, ...rest } = r;
  return rest;
};
const fromTask = (r: LogRecord): boolean => r.logger !== 'warden';

/** A `write-fds.mjs` task: one write(2) per step, `waitMs` between them. */
function steps(...list: object[]): { command: string; args: string[] } {
  return { command: process.execPath, args: [fixture('write-fds.mjs'), JSON.stringify(list)] };
}

describe('stdout and stderr at volume', () => {
  it('64 MiB of stdout with no newline: parts of maxLineBytes, every byte in the file, memory bounded', async () => {
    const path = newLog();
    const total = 64 * 1024 * 1024;
    // The supervisor runs in a process of its own, so that its peak RSS (VmHWM, exact, not
    // sampled) is the supervisor's and nothing else's. With a concurrent collector the peak also
    // measured how far V8 let garbage pile up (26-58 MiB over runs, more on Node 24); a heap
    // capped at 48 MiB makes V8 collect instead of grow, and a supervisor that held the stream
    // would die of it. What is live: the writer's high-water mark, a line of text, pipe chunks.
    const child = spawn(process.execPath, ['--single-threaded-gc', '--max-semi-space-size=2', '--max-old-space-size=48', fixture('log-flood-supervisor.mjs'), String(total), path], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    const [code] = await once(child, 'close');
    expect(err).toBe('');
    expect(code).toBe(0);
    const run = JSON.parse(out) as { result: TaskResult; parts: number; eventBytes: number; rssBefore: number; rssPeak: number };
    expect(run.result).toMatchObject({ state: 'success', status: 0, pipesForceClosed: false });
    expect(run.result.logErrors).toBeUndefined();
    expect(run.rssPeak - run.rssBefore, `RSS grew from ${run.rssBefore} to ${run.rssPeak}`).toBeLessThan(56 * 1024 * 1024);

    const max = 64 * 1024;
    const parts = readLog(path).filter((r) => r.logger === 'task.stdout');
    expect(parts).toHaveLength(total / max);
    let bytes = 0;
    let wrong = 0;
    parts.forEach((r, i) => {
      const last = i === parts.length - 1;
      if (r.level !== 'info' || r.part !== i + 1 || r.more !== (last ? undefined : true) || r.event.length !== max || !/^a+$/.test(r.event)) wrong++;
      bytes += r.event.length;
    });
    expect(wrong).toBe(0);
    expect(parts.at(-1)).not.toHaveProperty('more');
    expect(bytes).toBe(total);
    // The same records were emitted as events.
    expect(run.parts).toBe(parts.length);
    expect(run.eventBytes).toBe(total);
  });

  it('1,000,000 short lines: every one in the file, in order, and emitted', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const total = 1_000_000;
      let emitted = 0;
      let outOfOrder = 0;
      const task = sup.start({ command: process.execPath, args: [fixture('lines.mjs'), String(total)], env: env(), logFile: path });
      task.on('log', (r) => {
        if (r.logger !== 'task.stdout') return;
        if (r.event !== String(emitted)) outOfOrder++;
        emitted++;
      });
      const result = await task.result;
      expect(result).toMatchObject({ state: 'success', status: 0 });
      expect(result.logErrors).toBeUndefined();
      expect(emitted).toBe(total);
      expect(outOfOrder).toBe(0);

      // Checked as text: a million JSON.parse calls would make this the slowest spec for nothing.
      const text = readFileSync(path, 'latin1');
      let lines = 0;
      let wrong = 0;
      let firstWrong = '';
      for (let pos = 0; pos < text.length; ) {
        const nl = text.indexOf('\n', pos);
        const line = text.slice(pos, nl);
        pos = nl + 1;
        if (!line.includes('"logger":"task.stdout"')) continue;
        if (!line.startsWith('{"timestamp":"') || !line.endsWith(`","level":"info","logger":"task.stdout","event":"${lines}"}`)) {
          wrong++;
          firstWrong ||= line;
        }
        lines++;
      }
      expect(firstWrong).toBe('');
      expect(wrong).toBe(0);
      expect(lines).toBe(total);
    });
  });
});

describe('stdout and stderr as text', () => {
  it('invalid UTF-8 becomes U+FFFD; a character split across writes stays whole; a cut one at EOF is U+FFFD', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({
        ...steps(
          { fd: 1, hex: Buffer.concat([Buffer.from('ok '), Buffer.from([0xff, 0xfe, 0x20, 0xc3, 0x28, 0x0a])]).toString('hex') },
          { fd: 1, hex: Buffer.concat([Buffer.from('euro '), Buffer.from([0xe2, 0x82])]).toString('hex') },
          { waitMs: 30 },
          { fd: 1, hex: 'ac0a' },
          { fd: 2, hex: Buffer.concat([Buffer.from('cut '), Buffer.from([0xe2, 0x82])]).toString('hex') },
        ),
        env: env(),
        logFile: path,
      });
      const emitted = events(task);
      expect((await task.result).state).toBe('success');
      const expected = [
        { level: 'error', logger: 'task.stderr', event: 'cut \uFFFD' },
        { level: 'info', logger: 'task.stdout', event: 'ok \uFFFD\uFFFD \uFFFD(' },
        { level: 'info', logger: 'task.stdout', event: 'euro \u20AC' },
      ];
      // No order is promised between stdout and stderr; within each stream it is kept.
      const byStream = (rs: LogRecord[]): Record<string, unknown>[] => rs.filter(fromTask).map(shape).sort((a, b) => String(a.logger).localeCompare(String(b.logger)));
      expect(byStream(readLog(path))).toEqual(expected);
      expect(byStream(emitted)).toEqual(expected);
    });
  });

  it('CRLF: one trailing \\r dropped (also when the \\n comes in the next write), inner \\r kept, empty lines kept', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({
        ...steps(
          { fd: 1, text: 'a\r\n\r\nx\ry\r\n\n' },
          { fd: 1, text: 'split\r' },
          { waitMs: 30 },
          { fd: 1, text: '\nlast\r' },
        ),
        env: env(),
        logFile: path,
      });
      expect((await task.result).state).toBe('success');
      const lines = readLog(path).filter(fromTask).map((r) => r.event);
      expect(lines).toEqual(['a', '', 'x\ry', '', 'split', 'last']);
    });
  });
});

describe('the fd 3 channel', () => {
  it('records keep their level (warn -> warning), timestamp and fields; logger and event default', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const lines = [
        { timestamp: '2020-01-02T03:04:05.678Z', level: 'warn', logger: 'db', event: 'slow query', rows: 3, tags: ['a', 'b'], nested: { ms: 1.5 } },
        { level: 'ERROR', event: 'upper-case level' },
        { level: 'critical', event: 'disk on fire', code: 7 },
        { level: 'debug', event: 'details' },
        { event: 'no level given' },
        { level: 'info', msg: 'no event given' },
      ];
      const task = sup.start({ ...steps({ fd: 3, text: lines.map((l) => JSON.stringify(l)).join('\n') + '\n' }), env: env(), logFile: path });
      const emitted = events(task);
      expect((await task.result).state).toBe('success');
      const written = readLog(path).filter(fromTask);
      expect(written).toEqual(emitted.filter(fromTask));
      expect(written[0]).toEqual({ timestamp: '2020-01-02T03:04:05.678Z', level: 'warning', logger: 'db', event: 'slow query', rows: 3, tags: ['a', 'b'], nested: { ms: 1.5 } });
      expect(Object.keys(written[0]!)).toEqual(['timestamp', 'level', 'logger', 'event', 'rows', 'tags', 'nested']);
      expect(written.slice(1).map(shape)).toEqual([
        { level: 'error', logger: 'task', event: 'upper-case level' },
        { level: 'critical', logger: 'task', event: 'disk on fire', code: 7 },
        { level: 'debug', logger: 'task', event: 'details' },
        { level: 'info', logger: 'task', event: 'no level given' },
        { level: 'info', logger: 'task', event: '', msg: 'no event given' },
      ]);
      // Records without a timestamp get warden's clock: a real, recent ISO 8601 time.
      for (const r of written.slice(1)) expect(Math.abs(Date.parse(r.timestamp) - Date.now())).toBeLessThan(60_000);
    });
  });

  it('garbage lines and half a JSON record at EOF are kept as malformed text, never dropped', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      const task = sup.start({
        ...steps(
          { fd: 3, text: 'not json at all\n[1,2,3]\n"a string"\n{"broken": \n' },
          { fd: 3, hex: Buffer.concat([Buffer.from('bin '), Buffer.from([0x00, 0xff]), Buffer.from('\n')]).toString('hex') },
          { fd: 3, text: '{"event":"whole"}\n' },
          { fd: 3, text: '{"level":"info","event":"cut in ha' },
        ),
        env: env(),
        logFile: path,
      });
      const emitted = events(task);
      expect((await task.result).state).toBe('success');
      const malformed = (event: string): Record<string, unknown> => ({ level: 'warning', logger: 'task', event, malformed: true });
      const expected = [
        malformed('not json at all'),
        malformed('[1,2,3]'),
        malformed('"a string"'),
        malformed('{"broken": '),
        malformed('bin \u0000\uFFFD'),
        { level: 'info', logger: 'task', event: 'whole' },
        malformed('{"level":"info","event":"cut in ha'),
      ];
      expect(readLog(path).filter(fromTask).map(shape)).toEqual(expected);
      expect(emitted.filter(fromTask).map(shape)).toEqual(expected);
    });
  });
});

describe('the log file across runs', () => {
  it('a resumed task appends to the same file and keeps the earlier lines', async () => {
    await withSupervisor({}, async (sup) => {
      const path = newLog();
      writeFileSync(path, '{"timestamp":"2020-01-01T00:00:00.000Z","level":"info","logger":"executor","event":"written before warden"}\n');
      const first = await sup.run({ id: 'resumed-task', ...steps({ fd: 1, text: 'first attempt\n' }, { exit: 1 }), env: env(), logFile: path });
      expect(first).toMatchObject({ state: 'failed', status: 1 });
      const afterFirst = readFileSync(path, 'utf8');
      const second = await sup.run({ id: 'resumed-task', ...steps({ fd: 1, text: 'second attempt\n' }), env: env(), logFile: path });
      expect(second).toMatchObject({ state: 'success', status: 0 });

      const text = readFileSync(path, 'utf8');
      expect(text.startsWith(afterFirst)).toBe(true);
      // Debug records (comms statistics) aside, both attempts are there, in order.
      const records = readLog(path).filter((r) => r.level !== 'debug');
      expect(records.map((r) => `${r.logger}: ${r.event}`)).toEqual([
        'executor: written before warden',
        'task.stdout: first attempt',
        'warden: exited with code 1',
        'task.stdout: second attempt',
        'warden: exited with code 0',
      ]);
    });
  });
});
