/**
 * Bench child: a warden task that measures its own round trips through `warden/child` against
 * the supervisor's `Echo` handler, and prints one JSON line with its timings on stdout.
 *
 *   argv: <sequential count> <burst count> <message bytes>
 *
 * Sequential: 1,000 warm-up requests, then `sequential` requests one at a time. Burst: `burst`
 * requests issued in one tick, all awaited. Each request body is `{type: 'Echo', v}` with `v`
 * sized so that the request frame is about `message bytes`; the response `{ok: v}` is about the
 * same size. Any answer other than the echo is counted in `wrong`. The wait for each answer is
 * warden/child's default (spin, then sleep) unless WARDEN_COMMS_SPIN_US says otherwise.
 */
import { connect } from 'warden/child';

const sequential = Number(process.argv[2] ?? 20_000);
const burst = Number(process.argv[3] ?? 200_000);
const messageBytes = Number(process.argv[4] ?? 100);

const warden = await connect();
// Frame: 8-byte header + msgpack {type: 'Echo', v: <str>}: fixmap(1) + 'type'(5) + 'Echo'(5) + 'v'(2) + str header (2).
const v = 'x'.repeat(Math.max(1, messageBytes - 8 - 15));
let wrong = 0;

const t0 = performance.now();
for (let i = 0; i < 1000; i++) if ((await warden.request('Echo', { v })) !== v) wrong++;
const warmMs = performance.now() - t0;

const t1 = performance.now();
const cpu1 = process.cpuUsage();
for (let i = 0; i < sequential; i++) if ((await warden.request('Echo', { v })) !== v) wrong++;
const seqMs = performance.now() - t1;
// This process's CPU over the sequential phase (user + system, microseconds): its share of a round trip.
const seqCpu = process.cpuUsage(cpu1);
const seqCpuUs = seqCpu.user + seqCpu.system;

const t2 = performance.now();
const pending: Array<Promise<unknown>> = new Array(burst);
for (let i = 0; i < burst; i++) pending[i] = warden.request('Echo', { v });
const answers = await Promise.allSettled(pending);
const burstMs = performance.now() - t2;
for (const a of answers) if (a.status !== 'fulfilled' || a.value !== v) wrong++;

// The spin-then-sleep wait's counts (null when it is off), so the bench can check what it measured.
process.stdout.write(`${JSON.stringify({ sequential, burst, seqMs, seqCpuUs, burstMs, warmMs, wrong, spin: warden.spin ?? null })}\n`);
