/**
 * Bench child: writes `argv[2]` lines of 80 bytes (79 characters + newline) to stdout as fast as
 * the pipe takes them, honouring backpressure, then ends.
 */
const LINE = 80;
const total = Number(process.argv[2] ?? 1_000_000);
const perBlock = 819; // 65,520 bytes per write
const block = Buffer.alloc(perBlock * LINE);
for (let i = 0; i < perBlock; i++) {
  const text = `line ${String(i).padStart(6, '0')} `.padEnd(LINE - 1, 'abcdefghij');
  block.write(`${text}\n`, i * LINE, 'latin1');
}

async function main(): Promise<void> {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, perBlock);
    left -= n;
    const ok = process.stdout.write(n === perBlock ? block : block.subarray(0, n * LINE));
    if (!ok) await new Promise<void>((resolve) => process.stdout.once('drain', () => resolve()));
  }
}

void main();
