import { parseFlags, UsageError } from './args.js';
import { startReferenceControlPlane } from '../control-plane/reference-server.js';

export const CONTROL_PLANE_USAGE = `warden control-plane [--port N] [--host H] [--token T]
  Run the reference control plane (Airflow-shaped Execution API + /admin/ API) until SIGINT or
  SIGTERM. Prints one JSON line {"url", "token", "pid"} on stdout, then a line for people on stderr.
  --port N     TCP port (default 0: any free port)
  --host H     interface (default 127.0.0.1)
  --token T    bearer token clients must send (default: a random one, printed)`;

export interface ControlPlaneCommandIo {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Stops the server like SIGTERM does; for embedding and tests. */
  signal?: AbortSignal;
}

/**
 * `warden control-plane`: starts the reference control plane, prints where it is, and serves until
 * SIGINT/SIGTERM (or `io.signal`). Resolves 0 once the server is closed and its signal listeners
 * are removed, so the process then exits on its own. Usage errors throw `UsageError` (exit 2).
 */
export async function runControlPlaneCommand(argv: readonly string[], io: ControlPlaneCommandIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const { flags, rest } = parseFlags(argv, { port: { type: 'int' }, host: { type: 'string' }, token: { type: 'string' }, help: { type: 'bool' } });
  if (flags.help === true) {
    stdout.write(`${CONTROL_PLANE_USAGE}\n`);
    return 0;
  }
  if (rest.length > 0) throw new UsageError(`warden control-plane takes no arguments, got '${rest[0]}'.\n${CONTROL_PLANE_USAGE}`);
  const port = (flags.port as number | undefined) ?? 0;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}.`);
  const token = flags.token as string | undefined;
  if (token !== undefined && token.trim() === '') throw new UsageError('--token must not be empty.');

  const server = await startReferenceControlPlane({ port, host: (flags.host as string | undefined) ?? '127.0.0.1', token });
  stdout.write(`${JSON.stringify({ url: server.url, token: server.token, pid: process.pid })}\n`);
  stderr.write(
    `warden control plane listening on ${server.url} (Execution API under ${server.url}/execution/, admin under ${server.url}/admin/).\n` +
      `Clients send "Authorization: Bearer ${server.token}". Stop with Ctrl-C.\n`,
  );

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (io.signal?.aborted) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  await server.close();
  stderr.write('warden control plane stopped.\n');
  return 0;
}
