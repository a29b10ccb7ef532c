/** A usage error: `warden` prints the message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface FlagSpec {
  /** 'int': a non-negative integer; 'string': any value; 'bool': no value. */
  type: 'int' | 'string' | 'bool';
  /** Smallest accepted integer. */
  min?: number;
}

/**
 * Parses `[--flag value | --flag=value | --no-flag]... [--] command args...`. Option parsing
 * stops at `--` or at the first word that is not an option, so the command's own flags are never
 * taken for warden's.
 */
export function parseFlags(argv: readonly string[], specs: Record<string, FlagSpec>): { flags: Record<string, string | number | boolean>; rest: string[] } {
  const flags: Record<string, string | number | boolean> = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === '--') {
      i++;
      break;
    }
    if (!tok.startsWith('--')) break;
    const eq = tok.indexOf('=');
    let name = eq >= 0 ? tok.slice(2, eq) : tok.slice(2);
    let negated = false;
    if (!(name in specs) && name.startsWith('no-') && specs[name.slice(3)]?.type === 'bool') {
      name = name.slice(3);
      negated = true;
    }
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown option --${name}. Run 'warden help' for the options.`);
    if (spec.type === 'bool') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value.`);
      flags[name] = !negated;
      continue;
    }
    const value = eq >= 0 ? tok.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value.`);
    if (spec.type === 'int') {
      const n = Number(value);
      const min = spec.min ?? 0;
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${value}'.`);
      flags[name] = n;
    } else flags[name] = value;
  }
  return { flags, rest: argv.slice(i) };
}
