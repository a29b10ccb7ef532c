import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../lib/logs/line-splitter.js';
import { TaskLogWriter } from '../../lib/logs/log-writer.js';
import { channelRecord, stdoutRecord, type LogRecord } from '../../lib/logs/records.js';
import { SecretMasker } from '../../lib/logs/secret-masker.js';
import { leakChecked, runNode } from './helpers.js';

describe('SecretMasker', () => {
  it('replaces every occurrence, longest secret first', leakChecked(() => {
    const m = new SecretMasker();
    expect(m.mask('nothing registered')).toBe('nothing registered');
    m.add('hunter2');
    m.add('hunter2-extended');
    expect(m.mask('a hunter2 b hunter2-extended c hunter2')).toBe('a *** b *** c ***');
  }));

  it('ignores secrets shorter than minSecretChars and non-strings', leakChecked(() => {
    const m = new SecretMasker();
    expect(m.add('abcd')).toBe(0);
    expect(m.add(undefined as unknown as string)).toBe(0);
    expect(m.size).toBe(0);
    expect(m.mask('abcd')).toBe('abcd');
    expect(new SecretMasker({ minSecretChars: 3 }).add('abc')).toBeGreaterThan(0);
  }));

  it('matches a secret literally, whatever regular-expression characters it holds', leakChecked(() => {
    const m = new SecretMasker();
    m.add('a.b*c(d)[e]|f\\g$');
    expect(m.mask('x a.b*c(d)[e]|f\\g$ y axbbc')).toBe('x *** y axbbc');
  }));

  it('masks the URL-encoded and JSON-escaped forms too', leakChecked(() => {
    const m = new SecretMasker();
    m.add('p@ss w"rd/1');
    expect(m.mask('postgres://u:p%40ss%20w%22rd%2F1@db')).toBe('postgres://u:***@db');
    expect(m.mask('{"password": "p@ss w\\"rd/1"}')).toBe('{"password": "***"}');
    expect(m.mask('raw p@ss w"rd/1')).toBe('raw ***');
  }));

  it('masks a multi-line secret whole and line by line', leakChecked(() => {
    const m = new SecretMasker();
    m.add('-----BEGIN KEY-----\nMIIEvQIBADANBg\r\nkqhkiG9w0BAQE\nab\n-----END KEY-----');
    expect(m.mask('MIIEvQIBADANBg')).toBe('***');
    expect(m.mask('line kqhkiG9w0BAQE')).toBe('line ***');
    expect(m.mask('ab')).toBe('ab'); // a piece shorter than the minimum is not a secret of its own
    expect(m.mask('k=-----BEGIN KEY-----\nMIIEvQIBADANBg\r\nkqhkiG9w0BAQE\nab\n-----END KEY-----')).toBe('k=***');
  }));

  it('masks every string of a record, nested objects and arrays too, without touching the original', leakChecked(() => {
    const m = new SecretMasker();
    m.add('s3cr3t-value');
    const record = channelRecord('{"event":"token s3cr3t-value","conn":{"extra":["x","s3cr3t-value"],"port":5432},"note":"fine"}');
    const masked = m.maskRecord(record);
    expect(masked).toEqual({ ...record, event: 'token ***', conn: { extra: ['x', '***'], port: 5432 } });
    expect(record.event).toBe('token s3cr3t-value');
    expect((record.conn as { extra: string[] }).extra[1]).toBe('s3cr3t-value');
    const clean = stdoutRecord('nothing here');
    expect(m.maskRecord(clean)).toBe(clean);
  }));

  it('does not mask the level field', leakChecked(() => {
    const m = new SecretMasker({ minSecretChars: 4 });
    m.add('info');
    expect(m.maskRecord(stdoutRecord('info'))).toMatchObject({ level: 'info', event: '***' });
  }));

  it('holds at most maxSecrets patterns and counts what it refused', leakChecked(() => {
    const m = new SecretMasker({ maxSecrets: 3 });
    expect(m.add('first-secret')).toBe(1);
    expect(m.add('second-secret')).toBe(1);
    expect(m.add('third-secret')).toBe(1);
    expect(m.add('fourth-secret')).toBe(0);
    expect(m.size).toBe(3);
    expect(m.refused).toBe(1);
    expect(m.add('x'.repeat(70_000))).toBe(0);
  }));

  it('masks a secret that a real child wrote in two chunks of one line', leakChecked(async () => {
    // The child writes the first half, waits until the parent has read it (a byte on stdin),
    // then writes the rest: the secret really arrives in two pipe reads.
    const script = [
      "const fs = require('fs');",
      "fs.writeSync(1, 'connecting with password=hunt');",
      "process.stdin.once('data', () => { fs.writeSync(1, 'er2-secret ok\\nnext line\\n'); });",
    ].join('\n');
    const { child, closed } = runNode(script, ['pipe', 'pipe', 'inherit']);
    const masker = new SecretMasker();
    masker.add('hunter2-secret');
    const records: LogRecord[] = [];
    const writer = TaskLogWriter.open(undefined, { masker, onRecord: (r) => records.push(r) });
    const splitter = new LineSplitter({ onLine: (text, part, more) => writer.write(stdoutRecord(text, part, more)) });
    const chunks: string[] = [];
    child.stdout!.on('data', (chunk: Buffer) => {
      chunks.push(chunk.toString());
      splitter.push(chunk);
      if (chunks.length === 1) child.stdin!.end('go');
    });
    child.stdout!.on('end', () => splitter.end());
    expect(await closed).toBe(0);
    await writer.close();
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(chunks.some((c) => c.includes('hunter2-secret'))).toBe(false);
    expect(records.map((r) => r.event)).toEqual(['connecting with password=*** ok', 'next line']);
  }));
});
