import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../lib/logs/line-splitter.js';
import {
  channelRecord,
  describeExit,
  exitRecord,
  malformedRecord,
  serializeRecord,
  stderrRecord,
  stdoutRecord,
  wardenRecord,
  type LogRecord,
} from '../../lib/logs/records.js';
import { leakChecked, runNode } from './helpers.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('records', () => {
  it('builds stdout and stderr records with the standard keys in order', leakChecked(() => {
    const out = stdoutRecord('hello');
    expect(Object.keys(out)).toEqual(['timestamp', 'level', 'logger', 'event']);
    expect(out).toMatchObject({ level: 'info', logger: 'task.stdout', event: 'hello' });
    expect(out.timestamp).toMatch(ISO);
    expect(stderrRecord('')).toMatchObject({ level: 'error', logger: 'task.stderr', event: '' });
    expect(stdoutRecord('x', 1, true)).toMatchObject({ part: 1, more: true });
    expect(stdoutRecord('x', 2, false)).not.toHaveProperty('more');
  }));

  it('keeps an fd 3 record\'s fields at the top level and its timestamp', leakChecked(() => {
    const r = channelRecord('{"event":"loaded","timestamp":"2026-01-02T03:04:05.678Z","level":"warn","rows":3,"ctx":{"a":[1,2]}}');
    expect(r).toEqual({ timestamp: '2026-01-02T03:04:05.678Z', level: 'warning', logger: 'task', event: 'loaded', rows: 3, ctx: { a: [1, 2] } });
    expect(Object.keys(r).slice(0, 4)).toEqual(['timestamp', 'level', 'logger', 'event']);
  }));

  it('defaults logger to task and event to "", and reads level names loosely', leakChecked(() => {
    const r = channelRecord('{"x":1}');
    expect(r).toMatchObject({ level: 'info', logger: 'task', event: '', x: 1 });
    expect(r.timestamp).toMatch(ISO);
    expect(channelRecord('{"level":"WARNING"}').level).toBe('warning');
    expect(channelRecord('{"level":"fatal"}').level).toBe('critical');
    expect(channelRecord('{"level":40}').level).toBe('error');
    expect(channelRecord('{"level":"debug","logger":"airflow.task"}')).toMatchObject({ level: 'debug', logger: 'airflow.task' });
  }));

  it('keeps unusable standard values under <key>Raw instead of losing them', leakChecked(() => {
    const r = channelRecord('{"level":"verbose","timestamp":1700000000,"event":{"k":1},"logger":7}');
    expect(r).toMatchObject({ level: 'info', levelRaw: 'verbose', timestampRaw: 1700000000, event: '', eventRaw: { k: 1 }, logger: 'task', loggerRaw: 7 });
    expect(r.timestamp).toMatch(ISO);
  }));

  it('does not let a task pass its records off as warden\'s', leakChecked(() => {
    expect(channelRecord('{"logger":"warden","event":"all good"}').logger).toBe('task.warden');
    expect(channelRecord('{"logger":"warden.signal"}').logger).toBe('task.warden.signal');
    expect(channelRecord('{"logger":"wardenish"}').logger).toBe('wardenish');
  }));

  it('treats __proto__ in a child record as data', leakChecked(() => {
    const r = channelRecord('{"__proto__":{"polluted":true},"event":"e"}');
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
    expect((r as Record<string, unknown>).polluted).toBeUndefined();
    const written: unknown = JSON.parse(serializeRecord(r));
    expect(Object.getOwnPropertyDescriptor(written, '__proto__')?.value).toEqual({ polluted: true });
  }));

  it('keeps fd 3 garbage as malformed warning records with the raw text', leakChecked(() => {
    for (const text of ['not json', '[1,2]', 'null', '42', '"str"', '{"a":', '', '   ', '{} trailing']) {
      expect(channelRecord(text)).toMatchObject({ level: 'warning', logger: 'task', event: text, malformed: true });
    }
    const deep = '{"a":'.repeat(40) + '1' + '}'.repeat(40);
    expect(channelRecord(deep)).toMatchObject({ malformed: true, event: deep });
    expect(channelRecord('{"a":1}', 1, true)).toMatchObject({ malformed: true, part: 1, more: true });
  }));

  it('turns a real child\'s fd 3 lines into records, garbage and half a record at EOF included', leakChecked(async () => {
    const script = [
      "const fs = require('fs');",
      'fs.writeSync(3, JSON.stringify({event: "started", level: "warn", n: 1}) + "\\n");',
      'fs.writeSync(3, "garbage \\u00ff\\n");',
      'fs.writeSync(3, Buffer.from([0x7b, 0x22, 0x65, 0xff, 0x22, 0x3a, 0x31, 0x7d, 0x0a]));', // {"e\xff":1}
      'fs.writeSync(3, \'{"event":"half a rec\');',
    ].join('\n');
    const { child, closed } = runNode(script, ['ignore', 'ignore', 'inherit', 'pipe']);
    const records: LogRecord[] = [];
    const splitter = new LineSplitter({ onLine: (text, part, more) => records.push(channelRecord(text, part, more)) });
    const channel = child.stdio[3]!;
    channel.on('data', (chunk: Buffer) => splitter.push(chunk));
    channel.on('end', () => splitter.end());
    expect(await closed).toBe(0);
    expect(records).toHaveLength(4);
    expect(records[0]).toMatchObject({ event: 'started', level: 'warning', logger: 'task', n: 1 });
    expect(records[1]).toMatchObject({ event: 'garbage ÿ', malformed: true, level: 'warning' });
    expect(records[2]).toMatchObject({ 'e\uFFFD': 1, event: '' });
    expect(records[3]).toMatchObject({ event: '{"event":"half a rec', malformed: true });
  }));

  it('builds warden records whose fields cannot replace the standard keys', leakChecked(() => {
    const r = wardenRecord('warning', 'sent SIGTERM', { target: '-123', logger: 'x', event: 'y' });
    expect(r).toMatchObject({ level: 'warning', logger: 'warden', event: 'sent SIGTERM', target: '-123' });
    expect(malformedRecord('x').logger).toBe('task');
  }));

  it('serializes an unrepresentable record as a warden error record instead of throwing', leakChecked(() => {
    const line = serializeRecord({ ...stdoutRecord('the event'), big: 1n });
    expect(line.endsWith('\n')).toBe(true);
    expect(JSON.parse(line)).toMatchObject({ logger: 'warden', level: 'error', originalEvent: 'the event' });
  }));

  it('describes exits in plain words', leakChecked(() => {
    const base = { exitCode: null, signal: null, signalledByWarden: false, pipesForceClosed: false };
    expect(describeExit({ ...base, exitCode: 3 })).toBe('exited with code 3');
    expect(describeExit({ ...base, exitCode: 0 })).toBe('exited with code 0');
    expect(describeExit({ ...base, signal: 'SIGSEGV' })).toBe('killed by SIGSEGV (segmentation fault)');
    expect(describeExit({ ...base, signal: 'SIGKILL' })).toMatch(/^killed by SIGKILL that warden did not send: likely out of memory/);
    expect(describeExit({ ...base, signal: 'SIGKILL', signalledByWarden: true })).toBe('killed by SIGKILL, sent by warden');
    expect(describeExit({ ...base, exitCode: 137 })).toMatch(/code 137 \(128\+9: .*SIGKILL\)/);
    expect(describeExit({ ...base, exitCode: 127 })).toMatch(/not found/);
    expect(describeExit({ ...base, exitCode: 0, pipesForceClosed: true, drainMs: 2000 })).toMatch(/^exited with code 0; its output pipes were force-closed after 2000 ms \(drainMs\)/);
    expect(exitRecord({ ...base, exitCode: 0 }).level).toBe('info');
    expect(exitRecord({ ...base, signal: 'SIGTERM', signalledByWarden: true }).level).toBe('warning');
    expect(exitRecord({ ...base, signal: 'SIGSEGV' })).toMatchObject({ level: 'error', logger: 'warden', signal: 'SIGSEGV' });
  }));
});
