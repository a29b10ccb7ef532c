/**
 * The comms protocol's shared vocabulary (DESIGN.md section 5, docs/protocol.md): the names both
 * sides agree on. Types and constants only, so `warden/child` can import it without pulling in
 * anything of the supervisor.
 */

/** Environment variable naming the child's comms fd (framed requests and responses). */
export const COMMS_FD_ENV = 'WARDEN_COMMS_FD';
/** Environment variable naming the child's structured log fd (JSON lines, child -> supervisor). */
export const LOG_FD_ENV = 'WARDEN_LOG_FD';

/** Id of the one unsolicited frame (supervisor -> child); children number requests from 1. */
export const STARTUP_FRAME_ID = 0;
/** Largest request id: ids are u32 and wrap from here back to 1. */
export const MAX_REQUEST_ID = 0xffff_ffff;
/** `type` of the startup frame's body. */
export const STARTUP_TYPE = 'StartupDetails';

/** Default bound on a frame's length field (id + body), both ways: 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Default time the child waits for a response, and the supervisor lets a handler run: 30 s. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** A request body: a msgpack map with a string `type`; the other keys depend on the type. */
export interface RequestBody {
  type: string;
  [key: string]: unknown;
}

/** The `error` member of a failed response. `code` is one of the stable `ERR_*` codes. */
export interface ErrorBody {
  code: string;
  message: string;
  detail?: unknown;
}

/** Every response body is exactly one of these. */
export type ResponseBody<T = unknown> = { ok: T } | { error: ErrorBody };

/** Body of the id-0 frame: task id, attempt and run context; the supervisor decides the rest. */
export interface StartupDetails {
  type: typeof STARTUP_TYPE;
  [key: string]: unknown;
}

/** One request type's shapes: what the child sends (without `type`) and what `ok` carries back. */
export interface RequestSpec {
  request: object;
  response: unknown;
}

/**
 * A map from request type to its shapes, used to type handlers and `request()`:
 * `interface MyRequests { GetVariable: { request: { key: string }; response: { key: string; value: unknown } } }`.
 */
export type RequestMapOf<M> = { [K in keyof M]: RequestSpec };

/** The untyped default: any type, any body, any response. */
export type AnyRequests = Record<string, { request: Record<string, unknown>; response: unknown }>;

/** The request types the supervisor's default handlers serve (README lists each). */
export interface DefaultRequests {
  GetVariable: { request: { key: string }; response: { key: string; value: unknown } };
}
