/**
 * Turns JSON-lines task log records into lines for a person: relative time, level, logger,
 * event, then the other fields as key=value.
 */

export interface PrettyOptions {
  /** ANSI colours for levels and dim metadata. Decide with `shouldColor`. */
  color: boolean;
}

const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
const LEVEL_STYLES: Readonly<Record<string, string>> = {
  debug: '\x1b[90m',
  info: '\x1b[32m',
  warning: '\x1b[33m',
  error: '\x1b[31m',
  critical: '\x1b[1;41;97m',
};
const MALFORMED_STYLE = '\x1b[35m';
/** Wide enough for "critical"; keeps events in one column. */
const LEVEL_WIDTH = 8;
const STANDARD_KEYS = new Set(['timestamp', 'level', 'logger', 'event']);
/**
 * Control characters other than tab and newline, DEL, and the C1 range (\x9b is a CSI on some
 * terminals): a task's output must not be able to move the cursor or rewrite the screen of the
 * person reading its log.
 */
const UNSAFE_CHARS = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** Colours only for a terminal, and never when NO_COLOR is set to anything (no-color.org). */
export function shouldColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '');
}

/**
 * Formats one log line at a time. Relative times count from the first record that has a
 * readable timestamp, so the formatter must see the lines in file order.
 *
 * Invariants:
 * 1. Every input line gives exactly one output string (no newline at its end); a line that is
 *    not a JSON object gives `[malformed] <the line>` and never an exception.
 * 2. No output contains a control character from the input other than tab and newline.
 */
export class RecordFormatter {
  private readonly color: boolean;
  private startMs: number | undefined;

  constructor(options: PrettyOptions) {
    this.color = options.color;
  }

  format(line: string): string {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      record = undefined;
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      return `${' '.repeat(RELATIVE_WIDTH)} ${this.paint(MALFORMED_STYLE, '[malformed]')} ${safe(line)}`;
    }
    const fields = record as Record<string, unknown>;
    const level = typeof fields.level === 'string' ? fields.level : 'info';
    const parts = [
      this.paint(DIM, this.relativeTime(fields.timestamp)),
      this.paint(LEVEL_STYLES[level] ?? '', safe(level.toUpperCase()).padEnd(LEVEL_WIDTH)),
      this.paint(DIM, safe(typeof fields.logger === 'string' ? fields.logger : '-')),
      safe(typeof fields.event === 'string' ? fields.event : valueText(fields.event)),
    ];
    for (const key of Object.keys(fields)) {
      if (STANDARD_KEYS.has(key)) continue;
      parts.push(`${this.paint(DIM, `${safe(key)}=`)}${safe(valueText(fields[key]))}`);
    }
    return parts.join(' ');
  }

  /** `+1.234s` from the first timestamped record; `?` padded when there is no readable time. */
  private relativeTime(timestamp: unknown): string {
    const ms = typeof timestamp === 'string' ? Date.parse(timestamp) : NaN;
    if (Number.isNaN(ms)) return '?'.padStart(RELATIVE_WIDTH);
    this.startMs ??= ms;
    const delta = (ms - this.startMs) / 1000;
    return `${delta < 0 ? '-' : '+'}${Math.abs(delta).toFixed(3)}s`.padStart(RELATIVE_WIDTH);
  }

  private paint(style: string, text: string): string {
    return this.color && style !== '' ? `${style}${text}${RESET}` : text;
  }
}

/** `+12.345s` fits; longer runs just widen the column for that line. */
const RELATIVE_WIDTH = 9;

/** A field value as a person reads it: bare words bare, everything else as JSON. */
function valueText(value: unknown): string {
  if (typeof value === 'string' && value.length > 0 && !/[\s"=]/.test(value)) return value;
  if (value === undefined) return '';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function safe(text: string): string {
  return text.replace(UNSAFE_CHARS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
