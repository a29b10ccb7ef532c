import { describe, expect, it } from 'vitest';
import { JsonLinesBatch, MAX_BATCH_BYTES } from '../../lib/logs/json-lines-batch.js';
import { serializeRecord, stdoutRecord, type LogRecord } from '../../lib/logs/records.js';

describe('JsonLinesBatch', () => {
  it('packs large records into shared buffers: the buffers it hands over hold little beyond their bytes', () => {
    const batch = new JsonLinesBatch(1 << 20);
    // Parts of a 64 KiB-per-part line, the records of a child printing without newlines; off the
    // fast path (they carry `part`/`more`), plus a non-ASCII whole line on it.
    const records: LogRecord[] = [];
    for (let i = 1; i <= 12; i++) records.push(stdoutRecord('a'.repeat(64 * 1024), i, true));
    records.push(stdoutRecord('é'.repeat(40 * 1024)));
    for (const r of records) batch.append(r);
    const bytes = batch.bytes;
    const { views, buffers } = batch.take();
    expect(Buffer.concat(views).toString('utf8')).toBe(records.map(serializeRecord).join(''));
    expect(views.reduce((n, v) => n + v.length, 0)).toBe(bytes);
    // A buffer is sealed only when the next record does not fit in what is left of it (here each
    // holds three parts); reserving 3 bytes per UTF-16 unit regardless gave each part a 256 KiB
    // buffer of its own, 3.6x the bytes.
    const held = buffers.reduce((n, b) => n + b.length, 0);
    expect(buffers.every((b) => b.length === MAX_BATCH_BYTES)).toBe(true);
    expect(held).toBeLessThan(2 * bytes);
  });
});
