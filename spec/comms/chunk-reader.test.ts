import { describe, expect, it } from 'vitest';
import { ChunkReader } from '../../lib/comms/chunk-reader.js';
import { decodeBody, encodeFrame, FrameDecoder } from '../../lib/comms/frame-codec.js';

/** A reader over a writer whose queue the test sets, recording what happens in order. */
function setup(maxQueuedWriteBytes = 100) {
  const events: string[] = [];
  const records: string[] = [];
  const writer = { queuedBytes: 0, hold: () => void events.push('hold'), release: () => void events.push('release') };
  let ended = false;
  let reader!: ChunkReader;
  reader = new ChunkReader({
    io: { pauseReading: () => void events.push('io-pause'), resumeReading: () => void events.push('io-resume') },
    decoder: new FrameDecoder({ maxFrameBytes: 1024 }),
    visitor: {
      frame: (id, buf, start, end) => {
        events.push(`frame ${id} ${String(decodeBody(buf, start, end))}`);
        writer.queuedBytes += 60; // each answer queues 60 bytes
        reader.afterAnswer();
        return !reader.paused && !ended;
      },
      stop: () => void events.push('stop'),
    },
    writer, maxQueuedWriteBytes, taskId: 't', ended: () => ended,
    log: (_level, event) => void records.push(event),
  });
  return { reader, writer, events, records, end: () => (ended = true) };
}

const frames = (...values: string[]): Buffer => Buffer.concat(values.map((v, i) => encodeFrame(i + 1, v)));

describe('ChunkReader', () => {
  it('reads a chunk in place, holding the writer so that its answers leave in one write', () => {
    const { reader, events } = setup(1000);
    reader.push(frames('a', 'b'));
    expect(events).toEqual(['hold', 'frame 1 a', 'frame 2 b', 'release']);
    expect(reader.keptBytes).toBe(0);
  });

  it('pauses over the bound, copies the unread rest (the owner may reuse its buffer), and resumes at half', () => {
    const { reader, writer, events, records } = setup(100);
    const buf = frames('a', 'b', 'c');
    reader.push(buf);
    // 60 then 120 queued bytes: paused after the second frame, the third kept.
    expect(events).toEqual(['hold', 'frame 1 a', 'frame 2 b', 'io-pause', 'release']);
    expect(reader.paused).toBe(true);
    expect(reader.keptBytes).toBeGreaterThan(0);
    buf.fill(0); // the owner refills its read buffer
    writer.queuedBytes = 51;
    reader.afterShrink(); // over half the bound: still paused
    expect(reader.paused).toBe(true);
    writer.queuedBytes = 0; // the answer to frame 3 brings it to 60: under the bound
    reader.afterShrink();
    expect(events.slice(5)).toEqual(['hold', 'frame 3 c', 'release', 'io-resume']);
    expect(reader.keptBytes).toBe(0);
    expect(records).toEqual(['comms.read-paused']);
    expect(reader.pauses).toBe(1);
  });

  it('keeps chunks pushed while paused, and drops them at the end', () => {
    const { reader, writer, events, end } = setup(50);
    reader.push(frames('a', 'b'));
    expect(reader.paused).toBe(true);
    reader.push(frames('c'));
    expect(events.filter((e) => e.startsWith('frame'))).toEqual(['frame 1 a']);
    end();
    reader.clear();
    writer.queuedBytes = 0;
    reader.afterShrink();
    expect(reader.keptBytes).toBe(0);
    expect(events.filter((e) => e.startsWith('frame'))).toEqual(['frame 1 a']);
    expect(events).not.toContain('io-resume');
  });
});
