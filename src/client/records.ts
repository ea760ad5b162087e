/**
 * Records as the SDK hands them out and takes them in: timestamps are `bigint` µs (numbers are
 * accepted), payloads are bytes, strings, Blobs or web streams.
 */
import type { Labels } from '../protocol/labels.js';
import type { RequestBody } from './transport.js';

/** A timestamp in µs since the epoch. */
export type Timestamp = bigint | number;

/** Metadata of a stored record. */
export interface RecordInfo {
  entry: string;
  /** Timestamp, µs. */
  ts: bigint;
  /** Payload length in bytes. */
  size: number;
  contentType: string;
  labels: Labels;
}

/** A record read from a query: metadata and the whole payload (empty for `head` queries). */
export interface QueriedRecord extends RecordInfo {
  data: Uint8Array;
}

/** A record read on its own: the payload is a stream, read it once. */
export interface ReadRecord extends RecordInfo {
  /** The payload (null for `head`). Cancel it if you do not read it all. */
  readonly stream: ReadableStream<Uint8Array> | null;
  /** Reads the whole payload. */
  bytes(): Promise<Uint8Array>;
  /** Reads the whole payload as UTF-8 text. */
  text(): Promise<string>;
}

/** One record of a batch write. */
export interface BatchRecord {
  ts: Timestamp;
  data: Uint8Array | string;
  contentType?: string;
  labels?: Labels;
}

/** Microseconds since the epoch of a Date (or now). */
export function toMicros(date: Date = new Date()): bigint {
  return BigInt(date.getTime()) * 1000n;
}

/** Bytes of a string or byte payload. */
export function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}

/** Payload length when it is known without reading the body, else undefined (streams). */
export function knownSize(body: RequestBody): number | undefined {
  if (typeof body === 'string') return new TextEncoder().encode(body).length;
  if (body instanceof Uint8Array) return body.byteLength;
  if (body instanceof ArrayBuffer) return body.byteLength;
  if (typeof Blob !== 'undefined' && body instanceof Blob) return body.size;
  return undefined;
}

/** Labels from `x-reduct-label-<name>` headers. */
export function labelsFromHeaders(headers: Headers): Labels {
  const labels: Labels = {};
  headers.forEach((value, name) => {
    if (name.startsWith('x-reduct-label-')) labels[name.slice('x-reduct-label-'.length)] = value;
  });
  return labels;
}

/** `x-reduct-label-<name>` headers of labels; an empty value removes a label in updates. */
export function labelHeaders(labels: Labels | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) headers[`x-reduct-label-${k}`] = v;
  return headers;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
