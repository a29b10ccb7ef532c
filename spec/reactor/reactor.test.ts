import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { nativeSpawn, nativeSpawnAvailable } from '../../lib/process/native-spawn.js';
import { Reactor } from '../../lib/reactor/reactor.js';
import { guardLeaks } from '../helpers/leaks.js';

const { env } = guardLeaks();

/** A real child with fds 1-4 as sockets; `script` is bash. */
function child(script: string) {
  return spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], env: env() });
}

describe('Reactor invariants', () => {
  it('releases a stream by unregistering first: no data callback runs after release, even if data was already buffered', async () => {
    const reactor = new Reactor();
    const c = child('for i in $(seq 1 2000); do echo line-$i; done; echo ready >&2; sleep 300');
    const seen: string[] = [];
    const reg = reactor.addStream('t1', 'stdout', c.stdout!, { data: (b) => seen.push(b.toString()) });
    reactor.addStream('t1', 'stderr', c.stderr!, {});
    await once(c.stderr!, 'data');
    reactor.pause(reg);
    const before = seen.length;
    expect(reactor.release(reg)).toBe(true);
    c.stdout!.emit('data', Buffer.from('late')); // a queued event arriving after release
    expect(seen.length).toBe(before);
    // The error sink stays attached until 'close': an error emitted now is handled, not thrown.
    expect(() => c.stdout!.emit('error', new Error('late error after release'))).not.toThrow();
    expect(reactor.release(reg)).toBe(false); // releasing twice is harmless
    c.kill('SIGKILL');
    await once(c, 'exit');
    reactor.releaseTask('t1');
    expect(reactor.releaseTask('t1')).toEqual([]);
    expect(reactor.openHandles('t1')).toBe(0);
  });

  it('never leaves an error event unhandled: a child killed while our writes to its fd 4 are pending', async () => {
    const reactor = new Reactor();
    const c = child('echo ready; sleep 300');
    const errors: Error[] = [];
    let ended = false;
    const comms = reactor.addStream('t2', 'comms', c.stdio[4] as Socket, { error: (e) => errors.push(e), end: () => (ended = true) });
    reactor.addStream('t2', 'stdout', c.stdout!, { data: () => {} });
    reactor.addStream('t2', 'stderr', c.stderr!, {});
    await once(c.stdout!, 'data');
    // The child never reads fd 4: 8 MiB stays queued in our socket.
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < 8; i++) reactor.write(comms, big);
    expect((c.stdio[4] as Socket).writableLength).toBeGreaterThan(0);
    c.kill('SIGKILL');
    await once(c, 'exit');
    // EPIPE / ECONNRESET / EOF: whichever the kernel reports reaches the task's handlers and the
    // reactor releases the socket; an unhandled 'error' would fail this test file.
    await new Promise<void>((resolve) => {
      const check = (): void => (comms.released ? resolve() : void setImmediate(check));
      check();
    });
    expect(ended || errors.length > 0).toBe(true);
    for (const e of errors) expect(['EPIPE', 'ECONNRESET']).toContain((e as NodeJS.ErrnoException).code);
    reactor.releaseTask('t2');
  });

  it('never runs a task timer after the task is released', async () => {
    const reactor = new Reactor();
    let ran = false;
    reactor.timer('t3', 1, () => (ran = true));
    expect(reactor.openHandles('t3')).toBe(1);
    reactor.releaseTask('t3');
    await new Promise<void>((resolve) => reactor.wheel.schedule(10, resolve));
    expect(ran).toBe(false);
    expect(reactor.wheel.size).toBe(0);
  });

  it('releases on EOF after the end callback, and counts nothing as force-closed', async () => {
    const reactor = new Reactor();
    const c = child('echo hi; echo err >&2');
    const exited = once(c, 'exit');
    const ends: string[] = [];
    const names = ['stdout', 'stderr', 'log', 'comms'] as const;
    const streams = [c.stdout!, c.stderr!, c.stdio[3] as Socket, c.stdio[4] as Socket];
    const allEnded = new Promise<void>((resolve) => {
      names.forEach((n, i) =>
        reactor.addStream('t4', n, streams[i]!, {
          data: () => {},
          end: () => {
            ends.push(n);
            if (ends.length === 4) resolve();
          },
        }),
      );
    });
    await allEnded;
    await exited;
    expect(ends.sort()).toEqual(['comms', 'log', 'stderr', 'stdout']);
    expect(reactor.openStreams('t4')).toEqual([]);
    expect(reactor.releaseTask('t4')).toEqual([]);
  });

  it('writes straight to the descriptor when nothing is queued, and keeps byte order when the socket fills', async () => {
    const reactor = new Reactor();
    // The child echoes fd 4 back on stdout, but only after it was told to start reading.
    const c = child('read -r go <&4; echo ready >&2; cat <&4');
    const sock = c.stdio[4] as Socket;
    const received: Buffer[] = [];
    let total = 0;
    const n = 64;
    const size = 64 * 1024; // 4 MiB in all: far more than a socket buffer holds
    const done = new Promise<void>((resolve) => {
      reactor.addStream('t5', 'stdout', c.stdout!, {
        data: (b) => {
          received.push(b);
          total += b.length;
          if (total === n * size) resolve();
        },
      });
    });
    reactor.addStream('t5', 'stderr', c.stderr!, {});
    const comms = reactor.addStream('t5', 'comms', sock, {});
    expect(reactor.write(comms, Buffer.from('go\n'))).toBe(true);
    await once(c.stderr!, 'data');
    let full = false;
    for (let i = 0; i < n; i++) {
      const accepted = reactor.write(comms, Buffer.alloc(size, i));
      if (!accepted) full = true;
    }
    // Once the socket was full, writes queued in the stream, which the direct path must respect.
    expect(full).toBe(true);
    await done;
    const all = Buffer.concat(received);
    for (let i = 0; i < n; i++) expect(all[i * size]).toBe(i), expect(all[i * size + size - 1]).toBe(i);
    c.kill('SIGKILL');
    await once(c, 'exit');
    reactor.releaseTask('t5');
  });

  it('reports a direct write to a closed peer through the error handler after the write returned, once, and releases the stream', async () => {
    const reactor = new Reactor();
    // The child shuts down the reading side of its fd 4 and stays: our next write fails with
    // EPIPE, while our own reading side sees no EOF (so the failure is the write's to report).
    const c = child(`exec python3 -c 'import signal, socket; s = socket.socket(fileno=4); s.shutdown(socket.SHUT_RD); print("ready", flush=True); signal.pause()'`);
    const sock = c.stdio[4] as Socket;
    const errors: Error[] = [];
    let inWrite = false;
    const comms = reactor.addStream('t6', 'comms', sock, {
      error: (e) => {
        expect(inWrite).toBe(false);
        errors.push(e);
      },
    });
    reactor.pause(comms); // not reading: the write is what finds the peer gone
    reactor.addStream('t6', 'stdout', c.stdout!, { data: () => {} });
    reactor.addStream('t6', 'stderr', c.stderr!, {});
    await once(c.stdout!, 'data');
    inWrite = true;
    expect(reactor.write(comms, Buffer.from('hello'))).toBe(false);
    expect(reactor.write(comms, Buffer.from('again'))).toBe(false);
    inWrite = false;
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EPIPE']);
    expect(comms.released).toBe(true);
    expect(reactor.write(comms, Buffer.from('late'))).toBe(false);
    c.kill('SIGKILL');
    await once(c, 'exit');
    reactor.releaseTask('t6');
  });

  it.runIf(nativeSpawnAvailable)('a socket that reads into its own buffer (the native comms fd) delivers through its data sink: pause holds bytes back, resume brings them, nothing after release', async () => {
    const reactor = new Reactor();
    // The child writes `one` on fd 4, then `two` once told (a line on its stdin), then waits.
    const child = nativeSpawn({
      command: 'bash',
      args: ['-c', 'printf one >&4; read -r _; printf two >&4; echo wrote; read -r _; printf three >&4; sleep 300'],
      cwd: undefined,
      env: env(),
      setsid: true,
      stdin: true,
    });
    const got: string[] = [];
    let notify: () => void = () => {};
    const comms = reactor.addStream('t7', 'comms', child.stdio[4] as Socket, {
      data: (chunk) => {
        got.push(chunk.toString());
        notify();
      },
    });
    let stdout = '';
    let onStdout: () => void = () => {};
    reactor.addStream('t7', 'stdout', child.stdio[1] as Socket, {
      data: (chunk) => {
        stdout += chunk.toString();
        onStdout();
      },
    });
    for (const i of [2, 3]) reactor.addStream('t7', `fd${i}`, child.stdio[i] as Socket, { data: () => {} });
    const stdin = reactor.addStream('t7', 'stdin', child.stdio[0] as Socket, {});
    const next = (): Promise<void> => new Promise((resolve) => (notify = resolve));
    await next();
    expect(got).toEqual(['one']);
    reactor.pause(comms);
    const wrote = new Promise<void>((resolve) => (onStdout = () => stdout.includes('wrote') && resolve()));
    reactor.write(stdin, Buffer.from('go\n'));
    // `two` was written to fd 4 before `wrote` to stdout; paused, it stays in the socket.
    await wrote;
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(got).toEqual(['one']);
    const resumed = next();
    reactor.resume(comms);
    await resumed;
    expect(got.join('')).toBe('onetwo');
    reactor.release(comms);
    reactor.write(stdin, Buffer.from('go\n'));
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(got.join('')).toBe('onetwo');
    reactor.releaseTask('t7');
  });
});

