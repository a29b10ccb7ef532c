import { appendFileSync, chmodSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { LineSplitter } from '../../lib/logs/line-splitter.js';
import { TaskLogWriter } from '../../lib/logs/log-writer.js';
import { channelRecord, serializeRecord, stderrRecord, stdoutRecord, wardenRecord, type LogRecord } from '../../lib/logs/records.js';
import { SecretMasker } from '../../lib/logs/secret-masker.js';
import { leakChecked, runNode, withTempDir } from './helpers.js';

function linesOf(path: string): unknown[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
}

/** Paths this process has open, from /proc/self/fd. */
function openPaths(): string[] {
  const paths: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      paths.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The fd of the directory listing itself is gone by now.
    }
  }
  return paths;
}

describe('TaskLogWriter', () => {
  it('appends to an existing file, keeping its earlier lines', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    writeFileSync(path, '{"timestamp":"t0","level":"info","logger":"task","event":"earlier attempt"}\n');
    const writer = TaskLogWriter.open(path);
    expect(writer.write(stdoutRecord('now'))).toBe(true);
    await writer.close();
    expect(linesOf(path)).toMatchObject([{ event: 'earlier attempt' }, { event: 'now', logger: 'task.stdout' }]);
  })));

  it('writes exactly what JSON.stringify would, on the fast path and off it', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    const records: LogRecord[] = [
      stdoutRecord('plain ascii ~ with DEL \x7f'),
      stdoutRecord('quote " backslash \\ tab \t nul \x00'),
      stderrRecord('unicode é€ 😀 and a lone \ud800 surrogate'),
      stdoutRecord(''),
      stdoutRecord('part', 2, true),
      channelRecord('{"event":"e","n":1,"nested":{"a":[true,null]}}'),
      wardenRecord('critical', 'x', { pid: 42 }),
      { timestamp: 'odd "ts"', level: 'info', logger: 'log\nger', event: 'e' },
    ];
    const writer = TaskLogWriter.open(path);
    for (const r of records) writer.write(r);
    await writer.close();
    expect(readFileSync(path, 'utf8')).toBe(records.map((r) => JSON.stringify(r) + '\n').join(''));
  })));

  it('keeps 200,000 records in order across many batches', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    const writer = TaskLogWriter.open(path);
    for (let i = 0; i < 200_000; i++) {
      writer.write(stdoutRecord(`line ${i}`));
      if (i % 1000 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await writer.close();
    const events = linesOf(path).map((r) => (r as LogRecord).event);
    expect(events).toHaveLength(200_000);
    expect(events.every((e, i) => e === `line ${i}`)).toBe(true);
  })));

  it('returns false at highWaterMarkBytes, holds at most one record more, then drains', leakChecked(() => withTempDir(async (dir) => {
    const hwm = 4096;
    const writer = TaskLogWriter.open(join(dir, 'task.log'), { highWaterMarkBytes: hwm });
    const drained = new Promise<void>((resolve) => writer.onDrain(resolve));
    let writes = 0;
    let record = stdoutRecord('x'.repeat(100));
    while (writer.write(record)) {
      writes++;
      record = stdoutRecord('x'.repeat(100));
    }
    const oneRecord = Buffer.byteLength(serializeRecord(record));
    expect(writes).toBeGreaterThan(0);
    expect(writer.bufferedBytes).toBeGreaterThanOrEqual(hwm);
    expect(writer.bufferedBytes).toBeLessThan(hwm + oneRecord);
    await drained;
    expect(writer.bufferedBytes).toBeLessThan(hwm);
    await writer.close();
    expect(linesOf(join(dir, 'task.log'))).toHaveLength(writes + 1);
  })));

  it('reports a write error once, drains a paused caller, and keeps emitting records (/dev/full)', leakChecked(async () => {
    const errors: WardenError[] = [];
    const emitted: LogRecord[] = [];
    const writer = TaskLogWriter.open('/dev/full', { highWaterMarkBytes: 1024, onError: (e) => errors.push(e), onRecord: (r) => emitted.push(r) });
    const drained = new Promise<void>((resolve) => writer.onDrain(resolve));
    let accepted = 0;
    while (writer.write(stdoutRecord(`before ${accepted}`))) accepted++;
    await drained; // the failure must release a caller that paused on false
    for (let i = 0; i < 5; i++) {
      expect(writer.write(stdoutRecord(`after ${i}`))).toBe(true);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await writer.close();
    expect(errors).toHaveLength(1);
    expect(writer.errors).toEqual(errors);
    expect(errors[0]).toBeInstanceOf(WardenError);
    expect(errors[0].code).toBe('ERR_LOG_FILE');
    expect(errors[0].message).toContain('/dev/full');
    expect(emitted).toHaveLength(accepted + 1 + 5);
    expect(emitted.at(-1)?.event).toBe('after 4');
    expect(writer.unwrittenRecords).toBe(5);
    expect(openPaths()).not.toContain('/dev/full');
  }));

  it('lets the error callback log the failure as a record: it is emitted, not queued for the dead file', leakChecked(async () => {
    const emitted: LogRecord[] = [];
    let failed!: () => void;
    const failure = new Promise<void>((resolve) => (failed = resolve));
    const writer: TaskLogWriter = TaskLogWriter.open('/dev/full', {
      onRecord: (r) => emitted.push(r),
      onError: (e) => {
        writer.write(wardenRecord('error', e.message, { code: e.code }));
        failed();
      },
    });
    writer.write(stdoutRecord('lost to ENOSPC'));
    await failure;
    expect(writer.bufferedBytes).toBe(0);
    await writer.close();
    expect(emitted.map((r) => r.code ?? r.event)).toEqual(['lost to ENOSPC', 'ERR_LOG_FILE']);
    expect(writer.errors).toHaveLength(1);
    expect(writer.unwrittenRecords).toBe(1);
    expect(openPaths()).not.toContain('/dev/full');
  }));

  it('refuses a log file it cannot open with ERR_LOG_FILE naming the path, leaking no fd', leakChecked(() => withTempDir(async (dir) => {
    const before = readdirSync('/proc/self/fd').length;
    for (const path of [dir, join(dir, 'missing', 'task.log')]) {
      let error: unknown;
      try {
        TaskLogWriter.open(path);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(WardenError);
      expect((error as WardenError).code).toBe('ERR_LOG_FILE');
      expect((error as WardenError).message).toContain(path);
    }
    const locked = join(dir, 'locked');
    writeFileSync(locked, '');
    chmodSync(locked, 0o400);
    if (process.getuid?.() !== 0) expect(() => TaskLogWriter.open(locked)).toThrow(/locked/);
    expect(() => TaskLogWriter.open(join(dir, 'x'), { highWaterMarkBytes: 0 })).toThrow(/highWaterMarkBytes/);
    expect(readdirSync('/proc/self/fd').length).toBe(before);
  })));

  it('closes its file: no fd, no pending request, nothing written after close', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    const emitted: string[] = [];
    const writer = TaskLogWriter.open(path, { onRecord: (r) => emitted.push(r.event) });
    expect(openPaths()).toContain(path);
    writer.write(stdoutRecord('kept'));
    const closing = writer.close();
    expect(writer.close()).toBe(closing);
    expect(writer.write(stdoutRecord('late'))).toBe(true);
    await closing;
    expect(openPaths()).not.toContain(path);
    appendFileSync(path, ''); // the file itself is fine; the writer just no longer writes
    expect(linesOf(path)).toMatchObject([{ event: 'kept' }]);
    expect(emitted).toEqual(['kept', 'late']);
    expect(writer.unwrittenRecords).toBe(1);
  })));

  it('masks records before they are written or emitted', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    const masker = new SecretMasker();
    masker.add('tok-123456');
    const emitted: LogRecord[] = [];
    const writer = TaskLogWriter.open(path, { masker, onRecord: (r) => emitted.push(r) });
    writer.write(stdoutRecord('Bearer tok-123456'));
    writer.write(wardenRecord('info', 'connected', { url: 'https://x/?t=tok-123456' }));
    await writer.close();
    expect(readFileSync(path, 'utf8')).not.toContain('tok-123456');
    expect(emitted.map((r) => r.event)).toEqual(['Bearer ***', 'connected']);
    expect(emitted[1].url).toBe('https://x/?t=***');
  })));

  it('emits only, without a file', leakChecked(async () => {
    const emitted: LogRecord[] = [];
    const writer = TaskLogWriter.open(undefined, { highWaterMarkBytes: 1, onRecord: (r) => emitted.push(r) });
    expect(writer.write(stdoutRecord('a'))).toBe(true);
    await writer.close();
    expect(emitted).toHaveLength(1);
    expect(writer.unwrittenRecords).toBe(0);
  }));

  it('survives a listener that throws, reporting it once', leakChecked(async () => {
    const errors: WardenError[] = [];
    const writer = TaskLogWriter.open(undefined, { onError: (e) => errors.push(e), onRecord: () => { throw new Error('listener bug'); } });
    writer.write(stdoutRecord('a'));
    writer.write(stdoutRecord('b'));
    await writer.close();
    expect(errors.map((e) => e.code)).toEqual(['ERR_LOG_LISTENER']);
  }));

  it('backpressures a real child\'s stdout end to end: pause on false, resume on drain, every line kept', leakChecked(() => withTempDir(async (dir) => {
    const path = join(dir, 'task.log');
    const lines = 100_000;
    const script = `const b = []; for (let i = 0; i < ${lines}; i++) b.push('line ' + i + ' ' + 'y'.repeat(60)); process.stdout.write(b.join('\\n') + '\\n');`;
    const { child, closed } = runNode(script);
    const stdout = child.stdout!;
    const writer = TaskLogWriter.open(path, { highWaterMarkBytes: 64 * 1024 });
    let pauses = 0;
    let full = false;
    writer.onDrain(() => stdout.resume());
    const splitter = new LineSplitter({ onLine: (text, part, more) => { if (!writer.write(stdoutRecord(text, part, more))) full = true; } });
    stdout.on('data', (chunk: Buffer) => {
      splitter.push(chunk);
      if (full) {
        full = false;
        pauses++;
        stdout.pause();
      }
    });
    stdout.on('end', () => splitter.end());
    expect(await closed).toBe(0);
    await writer.close();
    const events = linesOf(path).map((r) => (r as LogRecord).event);
    expect(events).toHaveLength(lines);
    expect(events.every((e, i) => e === `line ${i} ${'y'.repeat(60)}`)).toBe(true);
    expect(pauses).toBeGreaterThan(0);
  })));
});
