/**
 * Batch protocol v1 (api.md §10): one entry per request, per-record metadata in headers named
 * `x-reduct-time-<ts>` with values `<len>,<content-type>[,<k>=<v>]*`, body = payloads in ascending
 * timestamp order. Used by the v1 batch routes and by replication senders.
 */
import { Errors, FerryError } from './errors.js';
import { parseU64 } from './json.js';
import { checkContentType, checkLabelNameBytes, checkLabelSet } from './field-bounds.js';
import type { Labels } from './labels.js';

/** Content type used when a record header leaves it empty. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const TIME_PREFIX = 'x-reduct-time-';
const ERROR_PREFIX = 'x-reduct-error-';
const DIGITS = /^\d+$/;

/** One record announced in a v1 write batch. */
export interface V1Record {
  ts: bigint;
  /** Payload length in bytes. */
  size: number;
  contentType: string;
  labels: Labels;
}

/** One record of a v1 label-update batch: `null` deletes a label (`k=`). */
export interface V1LabelUpdate {
  ts: bigint;
  changes: Record<string, string | null>;
}

/** A parsed v1 write batch. */
export interface V1Batch {
  /** Records sorted by timestamp: the order of their payloads in the body. */
  records: V1Record[];
  /** Sum of the declared lengths (what `Content-Length` must equal when present). */
  totalSize: number;
}

/**
 * Headers as the parsers accept them: Node's `rawHeaders` (flat name/value list), an iterable of
 * `[name, value]` pairs (fetch `Headers`), or a record (undici `request`, `IncomingHttpHeaders`).
 */
export type HeaderSource =
  | readonly string[]
  | Iterable<readonly [string, string]>
  | Readonly<Record<string, string | string[] | undefined>>;

/** Yields `[name, value]` pairs of any HeaderSource; names keep their case. */
export function* headerPairs(src: HeaderSource): Generator<[string, string]> {
  if (Array.isArray(src)) {
    const flat = src as readonly string[];
    for (let i = 0; i + 1 < flat.length; i += 2) yield [flat[i]!, flat[i + 1]!];
    return;
  }
  if (typeof (src as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of src as Iterable<readonly [string, string]>) yield [k, v];
    return;
  }
  for (const [k, v] of Object.entries(src as Record<string, string | string[] | undefined>)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v) yield [k, item];
    else yield [k, v];
  }
}

/** Calls `fn` for every header of a HeaderSource; no allocation per header for `rawHeaders`. */
export function forEachHeader(src: HeaderSource, fn: (name: string, value: string) => void): void {
  if (Array.isArray(src)) {
    const flat = src as readonly string[];
    for (let i = 0; i + 1 < flat.length; i += 2) fn(flat[i]!, flat[i + 1]!);
    return;
  }
  for (const [k, v] of headerPairs(src)) fn(k, v);
}

/** RFC 7230 token characters. */
const LABEL_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * Labels travel back as `x-reduct-label-<name>` headers, so a name must be a non-empty header
 * token; anything else is refused with 422 when written.
 */
export function checkLabelName(name: string): void {
  checkLabelNameBytes(name);
  if (!LABEL_NAME.test(name)) throw Errors.invalidLabelName(name);
}

/**
 * Splits a label list `k=v,k2="a,b",…` into raw (trimmed) key/value pairs. A value starting with
 * `"` runs to the next `"`; an unterminated quote → 422 `Invalid batched header`. Text without `=`
 * at the end of the list is ignored, as the reference server does.
 */
export function splitLabelList(raw: string, strict = false): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  eachLabel(raw, strict, (k, v) => void out.push([k, v]));
  return out;
}

/** `splitLabelList` handing each pair to `fn` (no array per record on the batch write path). */
function eachLabel(raw: string, strict: boolean, fn: (key: string, value: string) => void): void {
  let rest = raw.trim();
  while (rest.length > 0) {
    const eq = rest.indexOf('=');
    if (eq < 0) {
      if (strict) throw Errors.invalidBatchedHeader();
      break;
    }
    const key = rest.slice(0, eq).trim();
    // A leading '@' (computed label) passes here so that callers can refuse it by name.
    checkLabelName(key.startsWith('@') ? key.slice(1) : key);
    const valuePart = rest.slice(eq + 1);
    if (valuePart.startsWith('"')) {
      const end = valuePart.indexOf('"', 1);
      if (end < 0) throw Errors.invalidBatchedHeader();
      fn(key, valuePart.slice(1, end).trim());
      rest = valuePart
        .slice(end + 1)
        .replace(/^,+/, '')
        .trim();
    } else {
      const comma = valuePart.indexOf(',');
      if (comma < 0) {
        fn(key, valuePart.trim());
        break;
      }
      fn(key, valuePart.slice(0, comma).trim());
      rest = valuePart.slice(comma + 1).trim();
    }
  }
}

/**
 * Whether `formatLabelValue(value)` parses back to `value` in a header list: a value that starts
 * with a double quote, or holds both a comma and a double quote, cannot be written there (the
 * grammar has no escape); such labels travel in headers of their own (`x-reduct-label-<name>`).
 */
export function listCarriesValue(value: string): boolean {
  if (value.startsWith('"')) return false;
  return !(value.includes('"') && value.includes(','));
}

/** Formats one label value for a header list: quoted when it contains a comma. */
export function formatLabelValue(value: string): string {
  return value.includes(',') ? `"${value}"` : value;
}

/**
 * Parses a v1 record header value into length, content type and the raw label pairs; `where`
 * names the header in bound errors.
 */
function parseRecordValue(
  value: string,
  ts: bigint,
  label: (key: string, value: string) => void,
): { size: number; contentType: string } {
  const comma = value.indexOf(',');
  if (comma < 0) throw Errors.invalidBatchedHeader();
  const lenText = value.slice(0, comma).trim();
  if (!DIGITS.test(lenText)) throw Errors.invalidBatchedContentLength();
  const size = Number(lenText);
  if (!Number.isSafeInteger(size)) throw Errors.invalidBatchedContentLength();
  const rest = value.slice(comma + 1);
  const comma2 = rest.indexOf(',');
  const ct = (comma2 < 0 ? rest : rest.slice(0, comma2)).trim();
  try {
    checkContentType(ct);
  } catch {
    checkContentType(ct, headerWhere(ts)); // the same refusal, naming the header
  }
  if (comma2 >= 0) eachLabel(rest.slice(comma2 + 1), false, label);
  return { size, contentType: ct === '' ? DEFAULT_CONTENT_TYPE : internContentType(ct) };
}

const contentTypes = new Map<string, string>();

/**
 * One string per distinct content type: a slice of the header value would keep the whole header
 * string alive for as long as the record's descriptor stays in memory.
 */
function internContentType(ct: string): string {
  const known = contentTypes.get(ct);
  if (known !== undefined) return known;
  // A flat copy, not a view into the header value.
  const own = (' ' + ct).slice(1);
  if (contentTypes.size < 256) contentTypes.set(own, own);
  return own;
}

/** ` in header 'x-reduct-time-<ts>'`: where a bound error was found. */
const headerWhere = (ts: bigint): string => ` in header '${TIME_PREFIX}${ts}'`;

/**
 * `checkLabelSet` naming the record's header in its refusal; the name is built only then (once
 * per record it cost a bigint formatting and a string).
 */
function checkLabels(labels: Readonly<Record<string, string | null>>, ts: bigint): void {
  try {
    checkLabelSet(labels);
  } catch {
    checkLabelSet(labels, headerWhere(ts));
  }
}

/** Collects `x-reduct-time-<ts>` headers from Node's `rawHeaders` (name/value pairs), sorted by ts. */
function collectTimeHeaders(headers: HeaderSource): Array<[bigint, string]> {
  const found: Array<[bigint, string]> = [];
  let sorted = true;
  forEachHeader(headers, (name, value) => {
    if (name.length <= TIME_PREFIX.length) return;
    // Clients send lower-case names; compare without allocating, fall back for other cases.
    if (!name.startsWith(TIME_PREFIX) && name.slice(0, TIME_PREFIX.length).toLowerCase() !== TIME_PREFIX)
      return;
    const ts = parseU64(name.slice(TIME_PREFIX.length));
    if (ts === undefined) throw Errors.invalidBatchedTime();
    if (found.length > 0 && found[found.length - 1]![0] > ts) sorted = false;
    found.push([ts, value]);
  });
  // stable sort: duplicated timestamps keep their header order (the second write then fails 409)
  if (!sorted) found.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return found;
}

/**
 * Parses the headers of a v1 write batch (`POST /b/{b}/{e}/batch`).
 * Throws 422 `Invalid batched header` (e.g. `3` without comma), `Invalid content length`, or
 * the bad-timestamp message. Labels with an empty value are kept with value ''.
 */
export function parseV1Batch(headers: HeaderSource): V1Batch {
  const records: V1Record[] = [];
  let totalSize = 0;
  let labels: Labels = {};
  let computed = false;
  const label = (k: string, v: string): void => {
    // refused once the whole list is split: a malformed list is reported as such first
    if (k.startsWith('@')) computed = true;
    labels[k] = v;
  };
  for (const [ts, value] of collectTimeHeaders(headers)) {
    labels = {};
    const { size, contentType } = parseRecordValue(value, ts, label);
    if (computed) throw Errors.batchComputedLabelName();
    checkLabels(labels, ts);
    records.push({ ts, size, contentType, labels });
    totalSize += size;
  }
  return { records, totalSize };
}

/**
 * Parses the headers of a v1 label-update batch (`PATCH /b/{b}/{e}/batch`): values look like
 * `0,,x=z,a=`; length and content type are ignored, `k=` deletes `k`.
 */
export function parseV1UpdateBatch(headers: HeaderSource): V1LabelUpdate[] {
  return collectTimeHeaders(headers).map(([ts, value]) => {
    const changes: Record<string, string | null> = {};
    parseRecordValue(value, ts, (k, v) => void (changes[k] = v === '' ? null : v));
    checkLabels(changes, ts);
    return { ts, changes };
  });
}

/** Timestamps of a v1 remove batch (`DELETE /b/{b}/{e}/batch`); header values are ignored. */
export function parseV1RemoveBatch(headers: HeaderSource): bigint[] {
  return collectTimeHeaders(headers).map(([ts]) => ts);
}

/** Formats labels sorted by name as `k=v,…` (values with commas quoted). */
function formatLabels(labels: Record<string, string | null>): string {
  const keys = Object.keys(labels);
  for (let i = 1; i < keys.length; i++)
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      break;
    }
  // one string built in place (per record on the replication path: no mapped array and join)
  let out = '';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    out += `${i === 0 ? '' : ','}${k}=${formatLabelValue(labels[k] ?? '')}`;
  }
  return out;
}

/** Header value `<len>,<ct>[,<labels sorted by name>]`; the content type is always written. */
export function encodeV1Value(rec: Omit<V1Record, 'ts'>): string {
  const ct = rec.contentType === '' ? DEFAULT_CONTENT_TYPE : rec.contentType;
  const labels = formatLabels(rec.labels);
  return labels === '' ? `${rec.size},${ct}` : `${rec.size},${ct},${labels}`;
}

/**
 * Builds `x-reduct-time-<ts>` headers for records: used for v1 batch read responses and by
 * replication senders to build v1 write batches (the body must follow in ascending ts order).
 */
export function encodeV1Headers(records: readonly V1Record[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const r of records) headers[`${TIME_PREFIX}${r.ts}`] = encodeV1Value(r);
  return headers;
}

/** Builds v1 label-update headers (`0,,k=v,k2=`); `null` or '' deletes a label. */
export function encodeV1UpdateHeaders(updates: readonly V1LabelUpdate[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const u of updates) headers[`${TIME_PREFIX}${u.ts}`] = `0,,${formatLabels(u.changes)}`;
  return headers;
}

/** Builds v1 remove headers (`0,` per timestamp). */
export function encodeV1RemoveHeaders(timestamps: readonly bigint[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const ts of timestamps) headers[`${TIME_PREFIX}${ts}`] = '0,';
  return headers;
}

const HEADER_UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;

/** Whether `s` can be a header value as it is: tab, 0x20–0x7E and 0x80–0xFF only. */
export const headerSafe = (s: string): boolean => !HEADER_UNSAFE.test(s);

/** `<status>,<message>` for a per-record error header; unsafe messages become `Unparsable message`. */
export function errorHeaderValue(err: FerryError): string {
  const msg = headerSafe(err.message) ? err.message : 'Unparsable message';
  return `${err.status},${msg}`;
}

/** Per-record error header of a v1 batch: `x-reduct-error-<ts>: <status>,<message>`. */
export function v1ErrorHeader(ts: bigint, err: FerryError): [string, string] {
  return [`${ERROR_PREFIX}${ts}`, errorHeaderValue(err)];
}

/** The error of a per-record error header value `<status>,<message>` (v1 and v2). */
export function parseErrorValue(value: string): FerryError {
  const comma = value.indexOf(',');
  const status = Number.parseInt(comma < 0 ? value : value.slice(0, comma), 10);
  return new FerryError(Number.isFinite(status) ? status : 500, comma < 0 ? '' : value.slice(comma + 1));
}

/** Parses `x-reduct-error-<ts>` headers of a v1 batch response (for replication senders). */
export function parseV1ErrorHeaders(headers: HeaderSource): Map<bigint, FerryError> {
  const out = new Map<bigint, FerryError>();
  for (const [rawName, value] of headerPairs(headers)) {
    const name = rawName.toLowerCase();
    if (!name.startsWith(ERROR_PREFIX)) continue;
    const ts = parseU64(name.slice(ERROR_PREFIX.length));
    if (ts === undefined) continue;
    out.set(ts, parseErrorValue(value));
  }
  return out;
}
