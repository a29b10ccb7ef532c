import { WardenError } from '../errors.js';
import { MAX_REQUEST_ID } from '../comms/protocol.js';

/**
 * Hands out request ids: 1, 2, ... 2^32-1, then 1 again.
 *
 * Invariants:
 * - Never returns 0 (the startup frame's id) nor an id the caller still has in flight.
 * - Ids come in increasing order between wraps, so a late response to a timed-out request can
 *   only be mistaken for a newer one after 2^32-1 more requests.
 */
export class RequestIdAllocator {
  #next: number;
  #wrapped = false;

  /** `first`: the first id handed out (1 unless a test wants to see the wrap). */
  constructor(first = 1) {
    if (!Number.isInteger(first) || first < 1 || first > MAX_REQUEST_ID) {
      throw new WardenError('ERR_INVALID_OPTION', `the first request id must be an integer from 1 to ${MAX_REQUEST_ID}, got ${String(first)}`);
    }
    this.#next = first;
  }

  /** The next id not in `inFlight`. Throws WardenError `ERR_BUSY` if every id is in flight. */
  next(inFlight: { has(id: number): boolean; readonly size: number }): number {
    if (inFlight.size >= MAX_REQUEST_ID) {
      throw new WardenError('ERR_BUSY', `all ${MAX_REQUEST_ID} request ids are in flight; wait for responses before sending more`);
    }
    for (;;) {
      const id = this.#next;
      if (id === MAX_REQUEST_ID) {
        this.#next = 1;
        this.#wrapped = true;
      } else {
        this.#next = id + 1;
      }
      // Before the first wrap every id is new: skip the lookup (it is the hot path in a burst).
      if (!this.#wrapped || !inFlight.has(id)) return id;
    }
  }
}
