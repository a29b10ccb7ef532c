import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../lib/logs/line-splitter.js';
import { leakChecked, runNode } from './helpers.js';

type Got = [text: string, part: number, more: boolean];

function splitter(maxLineBytes?: number): { s: LineSplitter; got: Got[] } {
  const got: Got[] = [];
  const s = new LineSplitter({ maxLineBytes, onLine: (text, part, more) => got.push([text, part, more]) });
  return { s, got };
}

/** Feeds `input` cut at the given offsets and returns the whole lines' texts. */
function linesOf(input: Buffer, cuts: number[], maxLineBytes?: number): string[] {
  const { s, got } = splitter(maxLineBytes);
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    s.push(input.subarray(from, cut));
    from = cut;
  }
  s.end();
  return got.map(([text]) => text);
}

/** What decoding the whole input at once and splitting it gives (the reference). */
function reference(input: Buffer): string[] {
  const lines = input.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

describe('LineSplitter', () => {
  it('gives the same lines wherever the chunks are cut', leakChecked(() => {
    const input = Buffer.from('ab\ncd\n\nef\r\n\r\ng\rh\nlast');
    const want = ['ab', 'cd', '', 'ef', '', 'g\rh', 'last'];
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j += 3) expect(linesOf(input, [i, j])).toEqual(want);
    }
    expect(linesOf(input, [...Array(input.length).keys()])).toEqual(want);
  }));

  it('drops one trailing \\r, also when the \\r and \\n arrive in different chunks', leakChecked(() => {
    expect(linesOf(Buffer.from('a\r\nb\r\r\n'), [2])).toEqual(['a', 'b\r']);
    expect(linesOf(Buffer.from('a\r'), [])).toEqual(['a']);
  }));

  it('keeps an empty line as "" and adds no line after a final newline', leakChecked(() => {
    expect(linesOf(Buffer.from('\n\n'), [1])).toEqual(['', '']);
    expect(linesOf(Buffer.from('x\n'), [])).toEqual(['x']);
    expect(linesOf(Buffer.alloc(0), [])).toEqual([]);
  }));

  it('decodes invalid UTF-8 to U+FFFD exactly as whole-stream decoding does, at every cut', leakChecked(() => {
    const input = Buffer.from([0x61, 0xff, 0x62, 0x0a, 0xe2, 0x82, 0x41, 0x0a, 0xf0, 0x80, 0x80, 0x80, 0x0a, 0xc3, 0x28, 0x0a, 0xed, 0xa0, 0x80, 0x0a, 0xe2, 0x82]);
    expect(reference(input)[0]).toBe('a\uFFFDb');
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) expect(linesOf(input, [i, j])).toEqual(reference(input));
    }
  }));

  it('never breaks a multi-byte character split across chunks', leakChecked(() => {
    const input = Buffer.from('é€😀\nà😀b€\n');
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) expect(linesOf(input, [i, j])).toEqual(['é€😀', 'à😀b€']);
    }
  }));

  it('matches whole-stream decoding on random bytes cut at random places', leakChecked(() => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = [0x0a, 0x0d, 0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xff, 0x80];
    for (let round = 0; round < 300; round++) {
      const input = Buffer.from(Array.from({ length: 1 + rand(60) }, () => alphabet[rand(alphabet.length)]));
      const cuts = Array.from({ length: rand(6) }, () => rand(input.length + 1)).sort((a, b) => a - b);
      expect(linesOf(input, cuts)).toEqual(reference(input));
    }
  }));

  it('cuts a line longer than maxLineBytes into parts on character boundaries', leakChecked(() => {
    const { s, got } = splitter(10);
    s.push(Buffer.from('0123456789\n')); // exactly the limit: whole
    s.push(Buffer.from('0123456789a\n')); // one byte over: two parts
    s.push(Buffer.from('€€€€€€€\n')); // 21 bytes: 9 + 9 + 3, never a broken character
    s.push(Buffer.from('0123456789\r'));
    s.push(Buffer.from('\n')); // the limit plus a CRLF split across chunks: still whole
    s.end();
    expect(got).toEqual([
      ['0123456789', 0, false],
      ['0123456789', 1, true],
      ['a', 2, false],
      ['€€€', 1, true],
      ['€€€', 2, true],
      ['€', 3, false],
      ['0123456789', 0, false],
    ]);
  }));

  it('splits 64 MiB without a newline into parts while holding at most maxLineBytes', leakChecked(() => {
    const max = 65536;
    const chunk = Buffer.alloc(65536, 'a');
    let parts = 0;
    let bytes = 0;
    let last: Got | undefined;
    const s = new LineSplitter({
      maxLineBytes: max,
      onLine: (text, part, more) => {
        parts++;
        bytes += text.length;
        expect(text.length).toBeLessThanOrEqual(max);
        expect(part).toBe(parts);
        last = [text.slice(0, 1), part, more];
      },
    });
    for (let i = 0; i < 1024; i++) {
      s.push(chunk);
      expect(s.pendingBytes).toBeLessThanOrEqual(max);
    }
    expect(last?.[2]).toBe(true);
    s.end();
    expect(parts).toBe(1024);
    expect(bytes).toBe(64 * 1024 * 1024);
    expect(last).toEqual(['a', 1024, false]);
    expect(s.pendingBytes).toBe(0);
  }));

  it('decodes one huge chunk in slices and still cuts parts correctly', leakChecked(() => {
    const { s, got } = splitter(65536);
    s.push(Buffer.from('€'.repeat(1_000_000) + '\nok\n'));
    s.end();
    const parts = got.slice(0, -1);
    expect(parts.every(([text]) => Buffer.byteLength(text) <= 65536)).toBe(true);
    expect(parts.map(([text]) => text).join('')).toBe('€'.repeat(1_000_000));
    expect(parts.at(-1)?.[2]).toBe(false);
    expect(got.at(-1)).toEqual(['ok', 0, false]);
  }));

  it('counts 1,000,000 short lines pushed in pipe-sized chunks', leakChecked(() => {
    const input = Buffer.from('123456789\n'.repeat(1_000_000));
    let count = 0;
    let wrong = 0;
    const s = new LineSplitter({
      onLine: (text) => {
        count++;
        if (text !== '123456789') wrong++;
      },
    });
    for (let from = 0; from < input.length; from += 65536) s.push(input.subarray(from, from + 65536));
    s.end();
    expect(count).toBe(1_000_000);
    expect(wrong).toBe(0);
  }));

  it('splits a real child\'s stdout, written in small pieces that cut characters', leakChecked(async () => {
    // The child writes each byte separately through a pipe, so characters arrive cut.
    const script = `const b = Buffer.from('héllo wörld 😀\\r\\nsecond\\n\\npartial'); for (const x of b) require('fs').writeSync(1, Buffer.from([x]));`;
    const { child, closed } = runNode(script);
    const { s, got } = splitter();
    child.stdout!.on('data', (chunk: Buffer) => s.push(chunk));
    child.stdout!.on('end', () => s.end());
    expect(await closed).toBe(0);
    expect(got.map(([t]) => t)).toEqual(['héllo wörld 😀', 'second', '', 'partial']);
  }));

  it('rejects a maxLineBytes that cannot hold a character', leakChecked(() => {
    expect(() => new LineSplitter({ maxLineBytes: 3, onLine: () => {} })).toThrow(/maxLineBytes/);
  }));
});
