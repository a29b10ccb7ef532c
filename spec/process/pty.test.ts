import { describe, expect, it } from 'vitest';
import { nativeSpawnAvailable } from '../../lib/process/native-spawn.js';
import type { Task } from '../../lib/supervisor/task.js';
import { guardLeaks } from '../helpers/leaks.js';
import { cliPath, fixture } from '../helpers/paths.js';
import { containments, withSupervisor } from '../helpers/tasks.js';

const { env } = guardLeaks();

/** Collects a task's stdout; `until(text)` resolves once it has appeared. */
function output(task: Task): { text(): string; until(word: string): Promise<void> } {
  let text = '';
  const waiting: Array<{ word: string; done: () => void }> = [];
  task.on('stdout', (chunk) => {
    text += chunk.toString();
    for (const w of waiting.splice(0)) {
      if (text.includes(w.word)) w.done();
      else waiting.push(w);
    }
  });
  return {
    text: () => text,
    until: (word) => new Promise((done, fail) => {
      if (text.includes(word)) return done();
      waiting.push({ word, done });
      void task.result.then(() => fail(new Error(`settled before printing ${word}: ${text.slice(-300)}`)));
    }),
  };
}

describe.skipIf(!nativeSpawnAvailable)('pty mode', () => {
  it('fds 0-2 are a terminal of the asked size and the controlling terminal; its output is the stdout records; the exit status passes through', async () => {
    await withSupervisor({}, async (sup) => {
      const script = 'tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; stty size; ' +
        'read -r _ _ _ _ _ _ tty_nr _ < /proc/$$/stat; [ "$tty_nr" != 0 ] && echo has-ctty; echo to-stderr >&2; exit 5';
      const task = sup.start({ command: 'bash', args: ['-c', script], env: env(), pty: { cols: 132, rows: 43 } });
      const records: string[] = [];
      task.on('log', (r) => { if (r.logger === 'task.stdout') records.push(r.event); });
      const out = output(task);
      const r = await task.result;
      expect(r).toMatchObject({ state: 'failed', reason: 'exited', exitCode: 5, survivors: 0, pipesForceClosed: false });
      expect(out.text()).toMatch(/^\/dev\/pts\/\d+\r\nall-tty\r\n43 132\r\nhas-ctty\r\nto-stderr\r\n$/);
      // The terminal's \r\n line ends are records without the \r.
      expect(records).toEqual([expect.stringMatching(/^\/dev\/pts\/\d+$/), 'all-tty', '43 132', 'has-ctty', 'to-stderr']);
    });
  });

  it('task.write types into the terminal, task.end sends end of file (^D), task.resize sends SIGWINCH with the new size', async () => {
    await withSupervisor({}, async (sup) => {
      const script = 'trap \'stty size\' WINCH; echo ready; while read -r line; do echo "got:$line"; done; echo eof';
      const task = sup.start({ command: 'bash', args: ['-c', script], env: env(), pty: true });
      const out = output(task);
      await out.until('ready');
      expect(task.resize(100, 50)).toBe(true);
      task.write('first line\n');
      // bash runs the WINCH trap once its read has returned.
      await out.until('got:first line');
      await out.until('50 100');
      task.end();
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', exitCode: 0 });
      expect(out.text()).toMatch(/eof\r\n$/);
      expect(task.resize(90, 30)).toBe(false); // settled: no terminal any more
    });
  });

  it.each(containments)('loses none of the output at the end (containment %s)', async (containment) => {
    await withSupervisor({ containment }, async (sup) => {
      for (let i = 0; i < 4; i++) {
        const task = sup.start({ command: 'bash', args: ['-c', 'for i in $(seq 1 3000); do echo "line-$i"; done; echo last >&2'], env: env(), pty: true });
        const out = output(task);
        const r = await task.result;
        expect(r.status).toBe(0);
        const lines = out.text().split('\r\n');
        expect(lines.filter((l) => l.startsWith('line-'))).toHaveLength(3000);
        expect(lines.at(-2)).toBe('last');
      }
    });
  });

  it('the log and comms channels stay fds 3 and 4: a warden/child task in a terminal asks and logs as usual', async () => {
    await withSupervisor({}, async (sup) => {
      sup.handle('Echo', (body: { v: string }) => body.v);
      const task = sup.start({ command: process.execPath, args: [fixture('pty-task.mjs')], env: env(), pty: { cols: 90, rows: 20 } });
      const logged: Array<Record<string, unknown>> = [];
      task.on('log', (r) => { if (r.logger === 'task') logged.push(r as unknown as Record<string, unknown>); });
      const out = output(task);
      const r = await task.result;
      expect(r).toMatchObject({ state: 'success', survivors: 0 });
      const lines = out.text().split('\r\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).toEqual({ tty: [true, true, true], columns: 90, rows: 20 });
      expect(lines[1]).toEqual({ answer: 'through fd 4' });
      expect(logged).toEqual([expect.objectContaining({ level: 'info', event: 'pty task asked', answer: 'through fd 4' })]);
      expect(task.channel?.stats).toMatchObject({ requests: 1, responses: 1 });
    });
  });

  it('a tree started in a terminal is torn down whole, under every tier', async () => {
    for (const containment of containments) {
      await withSupervisor({ containment }, async (sup) => {
        const task = sup.start({ command: fixture('tree.sh'), env: env(), pty: true, graceMs: 200 });
        await output(task).until('ready');
        task.cancel();
        const r = await task.result;
        expect(r).toMatchObject({ reason: 'cancelled', survivors: 0 });
        expect(r.escapees).toBe(2);
      });
    }
  });

  it('warden run --pty in a terminal: raw keystrokes reach the task (Ctrl-C as SIGINT in its terminal), its size follows warden\'s', async () => {
    // warden run inside a terminal that warden gives it: as a person at a terminal would use it.
    await withSupervisor({}, async (sup) => {
      const inner = 'trap \'stty size\' WINCH; trap \'echo interrupted; exit 9\' INT; stty size; echo ready; ' +
        'read -r line; echo "got:$line"; sleep 300 & echo armed; while :; do wait; done'; // a WINCH also ends a wait
      const task = sup.start({ command: process.execPath, args: [cliPath, 'run', '--pty', '--', 'bash', '-c', inner], env: env(), pty: { cols: 100, rows: 30 } });
      const out = output(task);
      await out.until('ready');
      expect(out.text()).toContain('30 100'); // warden's own size
      expect(task.resize(120, 40)).toBe(true);
      task.write('typed\r'); // Enter, as a keyboard sends it
      await out.until('got:typed');
      await out.until('40 120');
      await out.until('armed'); // in `wait`: a trapped signal ends it and runs the trap
      task.write('\x03'); // Ctrl-C
      const r = await task.result;
      expect(out.text()).toContain('interrupted');
      expect(r).toMatchObject({ exitCode: 9, survivors: 0 }); // warden run exits with the task's status
    });
  });

  it('refuses what it cannot do: pty without the native spawner is a spawn failure, bad sizes throw, resize without a terminal is false', async () => {
    await withSupervisor({ spawner: 'node', containment: 'group' }, async (sup) => {
      const r = await sup.run({ command: 'true', env: env(), pty: true });
      expect(r).toMatchObject({ state: 'failed', reason: 'spawn-failed', status: 126 });
      expect(r.error!.code).toBe('ERR_UNSUPPORTED');
      expect(r.error!.message).toMatch(/pty mode: it needs warden's native spawner/);
    });
    await withSupervisor({}, async (sup) => {
      expect(() => sup.start({ command: 'true', env: env(), pty: { cols: 0 } })).toThrow(/pty.cols must be an integer from 1 to 65535/);
      expect(() => sup.start({ command: 'true', env: env(), pty: 'yes' as never })).toThrow(/spec.pty must be a boolean or \{cols, rows\}/);
      const task = sup.start({ command: 'bash', args: ['-c', 'echo ready; sleep 300'], env: env() });
      await output(task).until('ready');
      expect(task.resize(80, 24)).toBe(false);
      expect(() => task.resize(80, 70000)).toThrow(TypeError);
      task.cancel();
      await task.result;
    });
  });
});
