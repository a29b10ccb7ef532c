import type { ValidationErrorItem } from './types.js';

/**
 * Request-body validation for the reference control plane, reporting errors the way FastAPI and
 * pydantic v2 do (`422 {detail: [{type, loc, msg, input}]}`), so a client written against Airflow
 * sees the same shapes.
 */

export type FieldKind = 'string' | 'int' | 'number' | 'bool' | 'datetime' | 'object' | 'array' | 'json' | 'object-or-string';

export interface FieldSpec {
  kind: FieldKind;
  /** Default false: the field may be absent. */
  required?: boolean;
  /** Default false: null is refused. */
  nullable?: boolean;
  /** For strings: the accepted values. */
  oneOf?: readonly string[];
  /** For numbers: inclusive bounds. */
  min?: number;
  max?: number;
  /** For strings: the shortest accepted length. */
  minLength?: number;
}

export type Schema = Record<string, FieldSpec>;

type Loc = (string | number)[];

const DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/i;
const ZONE = /(Z|[+-]\d{2}:?\d{2})$/i;

/** A pydantic-style "literal_error" message: `Input should be 'a', 'b' or 'c'`. */
export function literalMessage(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`);
  if (quoted.length <= 1) return `Input should be ${quoted.join('')}`;
  return `Input should be ${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}`;
}

function item(type: string, loc: Loc, msg: string, input: unknown, ctx?: Record<string, unknown>): ValidationErrorItem {
  const out: ValidationErrorItem = { type, loc, msg, input };
  if (ctx !== undefined) out.ctx = ctx;
  return out;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkField(value: unknown, spec: FieldSpec, loc: Loc): ValidationErrorItem | undefined {
  if (value === null) return spec.nullable || spec.kind === 'json' ? undefined : item(typeOf(spec.kind), loc, messageOf(spec.kind), value);
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string') return item('string_type', loc, 'Input should be a valid string', value);
      if (spec.minLength !== undefined && value.length < spec.minLength) {
        return item('string_too_short', loc, `String should have at least ${spec.minLength} character${spec.minLength === 1 ? '' : 's'}`, value, { min_length: spec.minLength });
      }
      if (spec.oneOf && !spec.oneOf.includes(value)) return item('literal_error', loc, literalMessage(spec.oneOf), value, { expected: spec.oneOf.map((v) => `'${v}'`).join(', ') });
      return undefined;
    case 'int':
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value) || (spec.kind === 'int' && !Number.isSafeInteger(value))) {
        return item(typeOf(spec.kind), loc, messageOf(spec.kind), value);
      }
      if (spec.min !== undefined && value < spec.min) return item('greater_than_equal', loc, `Input should be greater than or equal to ${spec.min}`, value, { ge: spec.min });
      if (spec.max !== undefined && value > spec.max) return item('less_than_equal', loc, `Input should be less than or equal to ${spec.max}`, value, { le: spec.max });
      return undefined;
    case 'bool':
      return typeof value === 'boolean' ? undefined : item('bool_type', loc, 'Input should be a valid boolean', value);
    case 'datetime':
      if (typeof value !== 'string' || !DATE_TIME.test(value) || Number.isNaN(Date.parse(value))) {
        return item('datetime_parsing', loc, 'Input should be a valid datetime', value);
      }
      if (!ZONE.test(value)) return item('timezone_aware', loc, 'Input should have timezone info', value);
      return undefined;
    case 'object':
      return isPlainObject(value) ? undefined : item('dict_type', loc, 'Input should be a valid dictionary', value);
    case 'array':
      return Array.isArray(value) ? undefined : item('list_type', loc, 'Input should be a valid list', value);
    case 'object-or-string':
      return isPlainObject(value) || typeof value === 'string' ? undefined : item('dict_type', loc, 'Input should be a valid dictionary or string', value);
    case 'json':
      return undefined;
  }
}

function typeOf(kind: FieldKind): string {
  return ({ string: 'string_type', int: 'int_type', number: 'float_type', bool: 'bool_type', datetime: 'datetime_type', object: 'dict_type', array: 'list_type', json: 'json_type', 'object-or-string': 'dict_type' } as const)[kind];
}

function messageOf(kind: FieldKind): string {
  return ({
    string: 'Input should be a valid string', int: 'Input should be a valid integer', number: 'Input should be a valid number',
    bool: 'Input should be a valid boolean', datetime: 'Input should be a valid datetime', object: 'Input should be a valid dictionary',
    array: 'Input should be a valid list', json: 'Input should be valid JSON', 'object-or-string': 'Input should be a valid dictionary or string',
  } as const)[kind];
}

/**
 * Validates a JSON body against `schema`. `extra: 'forbid'` (Airflow's StrictBaseModel) refuses
 * unknown fields. Returns the errors, empty when the body is valid.
 */
export function validateBody(body: unknown, schema: Schema, options: { extra?: 'forbid' | 'allow'; loc?: Loc } = {}): ValidationErrorItem[] {
  const base = options.loc ?? ['body'];
  if (body === undefined) return [item('missing', base, 'Field required', null)];
  if (!isPlainObject(body)) return [item('model_attributes_type', base, 'Input should be a valid dictionary or object to extract fields from', body)];
  const errors: ValidationErrorItem[] = [];
  for (const [name, spec] of Object.entries(schema)) {
    if (!(name in body) || body[name] === undefined) {
      if (spec.required) errors.push(item('missing', [...base, name], 'Field required', body));
      continue;
    }
    const error = checkField(body[name], spec, [...base, name]);
    if (error) errors.push(error);
  }
  if (options.extra !== 'allow') {
    for (const name of Object.keys(body)) {
      if (!(name in schema)) errors.push(item('extra_forbidden', [...base, name], 'Extra inputs are not permitted', body[name]));
    }
  }
  return errors;
}

/** A query parameter that must be an integer when present. */
export function queryInt(params: URLSearchParams, name: string): { value: number | undefined; error?: ValidationErrorItem } {
  const raw = params.get(name);
  if (raw === null) return { value: undefined };
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) {
    return { value: undefined, error: item('int_parsing', ['query', name], 'Input should be a valid integer, unable to parse string as an integer', raw) };
  }
  return { value: Number(raw) };
}

/** The FastAPI body of a JSON that does not parse. */
export function jsonInvalid(error: unknown): ValidationErrorItem[] {
  const message = error instanceof Error ? error.message : String(error);
  const position = /position (\d+)/.exec(message);
  return [item('json_invalid', ['body', position ? Number(position[1]) : 0], 'JSON decode error', {}, { error: message })];
}
