/**
 * What a RemoteTarget puts on the wire and reads back, as pure functions: transport error codes,
 * request slicing, per-record answers of batch v1 and v2, which writes may be joined into one v2
 * request and how that request is built (remote-target.ts does the I/O).
 */
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import { listCarriesValue, parseV1ErrorHeaders } from '../protocol/batch-v1.js';
import { encodeV2Batch, v2RecordKey, type V2EncodedBatch } from '../protocol/batch-v2.js';
import type { FerryError } from '../protocol/errors.js';
import type { Labels } from '../storage/types.js';
import { HANDSHAKE_TIMEOUT, IDENTITY_MISMATCH, PROXY_REFUSED } from './remote-connector.js';
import { boundMessage, joinable, TargetError, type ItemOutcome, type ShipRecord } from './target.js';
import type { CoalescedCall } from './write-coalescer.js';

/** One header of an answer (the first when repeated). */
export const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Negative client codes of api.md §3.5 for transport failures. */
export function transportError(e: unknown): TargetError {
  const err = e as NodeJS.ErrnoException & { code?: string };
  const code = err?.code ?? '';
  // refusals of a remote's connector: their messages say everything already
  if (code === IDENTITY_MISMATCH || code === PROXY_REFUSED) return new TargetError(-3, err.message, true);
  if (code === HANDSHAKE_TIMEOUT) return new TargetError(-2, `Timeout: ${err.message}`, true);
  const timeout =
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT';
  const status = timeout ? -2 : code.startsWith('E') || code.startsWith('UND_ERR') ? -3 : -1;
  return new TargetError(
    status,
    `${timeout ? 'Timeout' : 'Connection error'}: ${err?.message ?? String(e)}`,
    true,
  );
}

/**
 * Records per request. Node's HTTP server keeps only about 1000 request headers by default and
 * drops the rest silently, and each record takes one header (two with its digest), so larger
 * batches are split into several requests.
 */
export const MAX_RECORDS_PER_REQUEST = 900;
export const MAX_RECORDS_WITH_DIGESTS = 450;

/**
 * A joined request holds at most this many bytes of payloads, label text and entry names, so that
 * its headers stay far below the destination's 1 MiB bound and the watchdog's budget of its
 * smallest write covers sending it all (its records: `MAX_RECORDS_PER_REQUEST`).
 */
export const MAX_COALESCED_BYTES = 256 * 1024;
/** Batch protocol v2 (multi-entry writes) exists from API 1.18. */
const V2_API_MINOR = 18;

/** Answer header prefix of a record found stored identically (`x-ferry-present-<ts>: 1`). */
export const PRESENT_PREFIX = 'x-ferry-present-';
/** The outcome of a record written. */
export const WRITTEN: ItemOutcome = Object.freeze({ kind: 'written' });

/** A per-record 409, resolved by the caller (digest re-send or read-back). */
export interface Conflict {
  kind: 'conflict';
  message: string;
}

/** Splits into the fewest slices of at most `max` records, of about equal size. */
export function sliceRecords(records: readonly ShipRecord[], max: number): Array<readonly ShipRecord[]> {
  if (records.length <= max) return [records];
  const n = Math.ceil(records.length / max);
  const per = Math.ceil(records.length / n);
  const out: Array<readonly ShipRecord[]> = [];
  for (let i = 0; i < records.length; i += per) out.push(records.slice(i, i + per));
  return out;
}

/** Per-record errors of a batch answer, with the destination's messages bounded. */
export function recordErrors(h: IncomingHttpHeaders): Map<bigint, { status: number; message: string }> {
  const out = new Map<bigint, { status: number; message: string }>();
  for (const [ts, e] of parseV1ErrorHeaders(h))
    out.set(ts, { status: e.status, message: boundMessage(e.message) });
  return out;
}

/** Every label value can be written in a batch header list (see `listCarriesValue`). */
export function listCarries(labels: Labels): boolean {
  for (const k in labels) if (!listCarriesValue(labels[k]!)) return false;
  return true;
}

/**
 * A record a batch write cannot carry as it is: a label value no header list can hold, or a
 * content type with a comma (the `<size>,<content type>,<labels>` value has no escape).
 */
export const awkwardWrite = (r: ShipRecord): boolean => r.contentType.includes(',') || !listCarries(r.labels);

/**
 * Whether a single-record request (`x-reduct-label-<name>` headers, whose names arrive
 * lower-cased) carries these labels exactly: their names are lower-case.
 */
export function singleCarries(labels: Labels): boolean {
  for (const k in labels) if (k !== k.toLowerCase()) return false;
  return true;
}

/** An entry name as a URL path (each segment encoded). */
export const encodePath = (entry: string): string => entry.split('/').map(encodeURIComponent).join('/');

/** Whether a destination takes joined writes: a Ferry (it sent its instance id) with batch v2. */
export const joinsWrites = (instanceId: string, apiMinor: number): boolean =>
  instanceId !== '' && apiMinor >= V2_API_MINOR;

/**
 * Whether a write may travel in a joined v2 request: the destination is Ferry (it sent its
 * instance id) with v2, the write is small (`joinable`), and no label has an empty value (v2's `k=`
 * deletes a label, so such a label could not be sent).
 */
export function coalescible(records: readonly ShipRecord[], instanceId: string, apiMinor: number): boolean {
  if (!joinsWrites(instanceId, apiMinor)) return false;
  if (!joinable(records, (r) => r.size)) return false;
  for (const r of records) for (const k in r.labels) if (r.labels[k] === '') return false;
  return true;
}

/** What a write adds to a joined request: payloads, label text and the entry name (encoded). */
export function joinedBytes(entry: string, records: readonly ShipRecord[]): number {
  let n = entry.length * 3;
  for (const r of records) {
    n += r.size + 24;
    for (const k in r.labels) n += k.length + r.labels[k]!.length * 3 + 4;
  }
  return n;
}

/**
 * A v2 write of several entries' records (`POST /io/{bucket}/write`): its encoding, the records
 * in body order, and its headers (without the body's length or encoding).
 */
export function v2WriteRequest(
  origin: string,
  calls: readonly CoalescedCall<ShipRecord>[],
): { enc: V2EncodedBatch; ordered: ShipRecord[]; headers: string[] } {
  const flat: Array<{ entry: string; r: ShipRecord }> = [];
  for (const c of calls) for (const r of c.records) flat.push({ entry: c.entry, r });
  const enc = encodeV2Batch(
    flat.map(({ entry, r }) => ({
      entry,
      ts: r.ts,
      size: r.size,
      contentType: r.contentType,
      labels: r.labels,
    })),
  );
  const headers: string[] = ['content-type', 'application/octet-stream', 'x-ferry-origin', origin];
  for (const k in enc.headers) headers.push(k, enc.headers[k]!);
  return { enc, ordered: enc.order.map((i) => flat[i]!.r), headers };
}

/** The per-record errors of a v2 answer, per call and record (undefined: written). */
export function v2RecordErrors(
  calls: readonly CoalescedCall<ShipRecord>[],
  enc: V2EncodedBatch,
  errors: ReadonlyMap<string, FerryError>,
): Array<Array<FerryError | undefined>> {
  const index = new Map(enc.entries.map((e, i) => [e, i]));
  return calls.map((c) => {
    const i = index.get(c.entry)!;
    return c.records.map((r) => errors.get(v2RecordKey(i, r.ts - enc.startTs)));
  });
}
