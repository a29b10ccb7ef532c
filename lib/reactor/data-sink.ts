/**
 * A stream that reads into a buffer of its own (net.Socket's `onread` option) delivers its bytes
 * to the function stored under this key instead of emitting 'data'. The reactor sets it when it
 * registers such a stream and clears it when it releases the stream, so, as for 'data', nothing
 * is delivered after release. The bytes passed are valid only during the call (the buffer is
 * read into again): a consumer copies what it keeps.
 */
export const DATA_SINK: unique symbol = Symbol('warden.dataSink');

export interface DataSinkHolder {
  [DATA_SINK]: ((chunk: Buffer) => void) | undefined;
}

export function hasDataSink(stream: object): stream is DataSinkHolder {
  return DATA_SINK in stream;
}
