/** Turning a request frame's body into a request, and the wording of what is wrong with it. */
import { decodeBody } from './frame-codec.js';
import { STARTUP_FRAME_ID, type RequestBody } from './protocol.js';

/** Longest message put in an error response; longer ones are cut (error frames stay small). */
export const MAX_MESSAGE_CHARS = 512;

/**
 * Decodes and checks one request body, `buf[start, end)`: one msgpack map with a string `type`, on
 * an id other than 0. Never throws. Returns the body, or (a string) the `ERR_BAD_REQUEST` message
 * to send back: no result object per request on the hot path.
 */
export function parseRequest(id: number, buf: Buffer, start = 0, end: number = buf.length): RequestBody | string {
  let body: unknown;
  try {
    body = decodeBody(buf, start, end);
  } catch (err) {
    return clip(`request ${id}: the body is not valid msgpack (${errorMessage(err)}); send one msgpack map with a string "type"`);
  }
  if (!isPlainMap(body) || typeof body['type'] !== 'string') {
    return `request ${id}: the body must be a msgpack map with a string "type", got ${describe(body)}`;
  }
  if (id === STARTUP_FRAME_ID) {
    return 'request id 0 is reserved for the startup frame; number requests from 1';
  }
  return body as RequestBody;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function clip(text: string): string {
  return text.length <= MAX_MESSAGE_CHARS ? text : `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…`;
}

function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'binary data';
  if (isPlainMap(value)) return `a map whose "type" is ${value['type'] === undefined ? 'missing' : `a ${typeof value['type']}`}`;
  return `a ${typeof value}`;
}

/** Why a well-formed request is not run: its error response, and the record the channel notes. */
export interface Refusal {
  code: 'ERR_BAD_REQUEST' | 'ERR_UNKNOWN_REQUEST' | 'ERR_BUSY';
  message: string;
  detail?: Record<string, unknown>;
  level: 'info' | 'warning';
  event: string;
  fields: Record<string, unknown>;
}

/**
 * Checks a parsed request against the channel's state: its id must not be in flight, its type must
 * have a handler, and a slot must be free. Returns undefined when it may run. `knownTypes` is only
 * called for an unknown type.
 */
export function refusal(
  id: number, type: string, hasHandler: boolean, knownTypes: () => string[],
  inflight: { has(id: number): boolean; readonly size: number }, maxInflight: number,
): Refusal | undefined {
  if (inflight.has(id)) {
    const message = `request id ${id} is already in flight; ids must be unique among in-flight requests`;
    return { code: 'ERR_BAD_REQUEST', message, level: 'warning', event: 'comms.bad-request', fields: { requestId: id, error: message } };
  }
  if (!hasHandler) {
    const known = knownTypes().join(', ') || '(none)';
    const message = clip(`no handler for request type "${type}"; known types: ${known}`);
    return { code: 'ERR_UNKNOWN_REQUEST', message, level: 'warning', event: 'comms.unknown-request', fields: { requestId: id, type: clip(type), known } };
  }
  if (inflight.size >= maxInflight) {
    const message = `${inflight.size} requests are already in flight (maxInflightRequests); retry after one completes`;
    const detail = { maxInflightRequests: maxInflight };
    return { code: 'ERR_BUSY', message, detail, level: 'info', event: 'comms.busy', fields: { requestId: id, type, ...detail } };
  }
  return undefined;
}
