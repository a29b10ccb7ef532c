/**
 * The report every bench returns, and the table run.ts prints from it.
 *
 * A row is one figure. When it is compared with a baseline measured in the same run, `baseline`
 * names and gives that figure and `ratio` is always `value / baseline.value`; a goal is checked
 * against either the ratio or the value itself.
 */

export interface Goal {
  /** What the goal constrains: the row's ratio or its raw value. */
  of: 'ratio' | 'value';
  op: '<=' | '>=';
  target: number;
}

export interface Row {
  name: string;
  value: number;
  unit: string;
  baseline: { name: string; value: number } | null;
  /**
   * `value / baseline.value` unless the bench gave a more robust estimate of the same quotient
   * (e.g. the median of per-round paired ratios; the detail then says so). Null without a baseline.
   */
  ratio: number | null;
  goal: Goal | null;
  /** null when the row has no goal. */
  pass: boolean | null;
  /** Spread, counts, anything a reader needs to trust the figure (max, n, per-trial values). */
  detail?: string;
}

export interface BenchReport {
  name: string;
  rows: Row[];
  /** Observations worth a human's attention (anomalies, warden behaviour that looked off). */
  notes: string[];
  durationMs: number;
  /** Raw per-round / per-trial figures, for the JSON file only. */
  raw?: unknown;
}

export interface RowInput {
  name: string;
  value: number;
  unit: string;
  baseline?: { name: string; value: number } | null;
  goal?: Goal | null;
  detail?: string;
  /** Overrides `value / baseline.value` (say how it was computed in `detail`). */
  ratio?: number;
}

/** Builds a row, computing the ratio and whether the goal holds. */
export function row(input: RowInput): Row {
  const baseline = input.baseline ?? null;
  const ratio = input.ratio !== undefined && baseline ? input.ratio : baseline && baseline.value !== 0 && Number.isFinite(input.value) ? input.value / baseline.value : null;
  const goal = input.goal ?? null;
  let pass: boolean | null = null;
  if (goal) {
    const subject = goal.of === 'ratio' ? ratio : input.value;
    pass = subject === null || !Number.isFinite(subject) ? false : goal.op === '<=' ? subject <= goal.target : subject >= goal.target;
  }
  return { name: input.name, value: input.value, unit: input.unit, baseline, ratio, goal, pass, ...(input.detail ? { detail: input.detail } : {}) };
}

/** A number with about 3 significant digits, thousands separated. */
export function fmt(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US');
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  if (abs === 0) return '0';
  return n.toFixed(3);
}

function goalText(g: Goal | null): string {
  if (!g) return '';
  return `${g.of === 'ratio' ? 'x' : 'v'} ${g.op} ${fmt(g.target)}`;
}

/** The human-readable table: one block per bench, then its notes. */
export function formatReports(reports: readonly BenchReport[]): string {
  const header = ['figure', 'value', 'unit', 'baseline', 'ratio', 'goal', 'pass', 'detail'];
  const lines: string[] = [];
  for (const r of reports) {
    const cells = r.rows.map((x) => [
      x.name,
      fmt(x.value),
      x.unit,
      x.baseline ? `${fmt(x.baseline.value)} (${x.baseline.name})` : '',
      x.ratio === null ? '' : `${x.ratio.toFixed(2)}x`,
      goalText(x.goal),
      x.pass === null ? '' : x.pass ? 'PASS' : 'FAIL',
      x.detail ?? '',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const numeric = new Set([1, 4]);
    const line = (c: string[]): string =>
      c
        .map((s, i) => (i === c.length - 1 ? s : numeric.has(i) ? s.padStart(widths[i]!) : s.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd();
    lines.push('', `== ${r.name} (${(r.durationMs / 1000).toFixed(1)} s) ==`, line(header), widths.map((w, i) => (i === widths.length - 1 ? '------' : '-'.repeat(w))).join('  '));
    for (const c of cells) lines.push(line(c));
    for (const n of r.notes) lines.push(`  note: ${n}`);
  }
  return lines.join('\n');
}
