/**
 * Batch protocol v2 (api.md §11): records of several entries of one bucket per request.
 *
 * Headers: `x-reduct-entries` (percent-encoded names, position = index), `x-reduct-start-ts`,
 * optional `x-reduct-labels` (label-name dictionary), and `x-reduct-<index>-<delta>` per record
 * whose value is a delta against the previous record of the same entry. Bodies are ordered by
 * entry index first, then timestamp (the server rule of §11.2).
 */
import { Errors, FerryError } from './errors.js';
import { parseU64, U64_MAX } from './json.js';
import {
  DEFAULT_CONTENT_TYPE,
  errorHeaderValue,
  formatLabelValue,
  checkLabelName,
  forEachHeader,
  headerPairs,
  parseErrorValue,
  splitLabelList,
  type HeaderSource,
} from './batch-v1.js';
import { checkContentType, checkLabelSet } from './field-bounds.js';
import { sameLabels, type Labels } from './labels.js';

export const ENTRIES_HEADER = 'x-reduct-entries';
export const START_TS_HEADER = 'x-reduct-start-ts';
export const LABELS_HEADER = 'x-reduct-labels';
export const LAST_HEADER = 'x-reduct-last';
export const QUERY_ID_HEADER = 'x-reduct-query-id';

const RECORD_HEADER = /^x-reduct-(\d+)-(.*)$/;
const DIGITS = /^\d+$/;

/** One record of a decoded v2 request. */
export interface V2Record {
  entryIndex: number;
  entry: string;
  ts: bigint;
  /** ts - start ts, as in the header name (for error headers). */
  delta: bigint;
  /** Payload length in bytes. */
  size: number;
  contentType: string;
  /** Labels after applying the entry's accumulated deltas (deleted ones are absent). */
  labels: Labels;
  /**
   * Labels deleted (`k=`) by this entry's accumulated deltas and not set again since: for label
   * updates (`PATCH /io/{b}/update`) these are the labels to remove, `labels` the ones to set.
   */
  removed: string[];
}

/** A decoded v2 request. */
export interface V2Batch {
  entries: string[];
  startTs: bigint;
  labelNames: string[] | undefined;
  /** Records in body order: entry index first, then timestamp. */
  records: V2Record[];
  /** Sum of declared lengths. */
  totalSize: number;
}

/** RFC 7230 tchar: kept as-is by the percent-encoding of entry and label names. */
function isTchar(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(byte))
  );
}

/** Percent-encodes a name byte by byte: tchar kept, everything else `%XX` (upper-case hex). */
export function encodeHeaderComponent(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += isTchar(byte) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Percent-decodes a name; returns undefined on a malformed escape or invalid UTF-8. */
export function decodeHeaderComponent(encoded: string): string | undefined {
  if (!encoded.includes('%')) return encoded;
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x25) {
      const hex = encoded.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      bytes.push(...Buffer.from(encoded[i]!, 'utf8'));
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

function decodeList(value: string, onError: (item: string) => FerryError): string[] {
  return value.split(',').map((item) => {
    const trimmed = item.trim();
    const decoded = decodeHeaderComponent(trimmed);
    if (decoded === undefined) throw onError(trimmed);
    return decoded;
  });
}

/**
 * Parses a label delta `k=v,k2=,3="a,b"` into operations (`null` = delete). Keys that are decimal
 * numbers refer to `labelNames` when the dictionary is present; literal names must not start
 * with `@`. A missing `=` or an unterminated quote → 422 `Invalid batched header`.
 */
export function parseLabelDelta(
  raw: string,
  labelNames: readonly string[] | undefined,
): Array<[string, string | null]> {
  return splitLabelList(raw, true).map(([rawKey, value]): [string, string | null] => {
    let key = rawKey;
    if (labelNames !== undefined && DIGITS.test(rawKey)) {
      const name = labelNames[Number(rawKey)];
      if (name === undefined) throw Errors.batchLabelIndexOutOfRange(rawKey);
      key = name;
    }
    if (key.startsWith('@')) throw Errors.batchComputedLabelName();
    checkLabelName(key);
    return [key, value === '' ? null : value];
  });
}

interface EntryState {
  contentType: string;
  /** Label state: value, or null once deleted by `k=`. */
  labels: Map<string, string | null>;
}

function splitState(state: Map<string, string | null>): { labels: Labels; removed: string[] } {
  const labels: Labels = {};
  const removed: string[] = [];
  for (const [k, v] of state) {
    if (v === null) removed.push(k);
    else labels[k] = v;
  }
  return { labels, removed };
}

/** Options of {@link parseV2Batch}. */
export interface V2ParseOptions {
  /**
   * Record header values carry nothing (`/io/{b}/remove`, api.md §11.7: the SDK sends `0,`, other
   * clients an empty value): they are not parsed; records have size 0 and no labels.
   */
  ignoreValues?: boolean;
}

/**
 * Decodes the headers of a v2 request (`/io/{b}/write`, `/update`, `/remove`). Records come back
 * in body order. An empty `x-reduct-entries` with no record headers is an empty batch.
 * Throws 422 with the reference messages on malformed headers.
 */
export function parseV2Batch(headers: HeaderSource, opts: V2ParseOptions = {}): V2Batch {
  let entriesRaw: string | undefined;
  let startRaw: string | undefined;
  let labelsRaw: string | undefined;
  const found: Array<{ name: string; index: number; delta: bigint; value: string }> = [];
  forEachHeader(headers, (rawName, value) => {
    const name = rawName.toLowerCase();
    if (!name.startsWith('x-reduct-')) return;
    if (name === ENTRIES_HEADER) entriesRaw = value;
    else if (name === START_TS_HEADER) startRaw = value;
    else if (name === LABELS_HEADER) labelsRaw = value;
    else {
      const m = RECORD_HEADER.exec(name);
      if (m === null) return;
      const delta = parseU64(m[2]!);
      if (delta === undefined) throw Errors.batchHeaderTime(name);
      const index = Number(m[1]);
      if (!Number.isSafeInteger(index)) throw Errors.batchEntryIndexOutOfRange(name);
      found.push({ name, index, delta, value });
    }
  });

  if (entriesRaw === undefined) throw Errors.batchEntriesRequired();
  if (entriesRaw.trim() === '') {
    if (found.length > 0) throw Errors.batchEntriesRequired();
    return {
      entries: [],
      startTs: parseU64((startRaw ?? '0').trim()) ?? 0n,
      labelNames: undefined,
      records: [],
      totalSize: 0,
    };
  }
  const entries = decodeList(entriesRaw, (item) => Errors.batchEntryEncoding(item));
  if (startRaw === undefined) throw Errors.batchStartTsRequired();
  const startTs = parseU64(startRaw.trim());
  if (startTs === undefined) throw Errors.batchStartTsInvalid();
  let labelNames: string[] | undefined;
  if (labelsRaw !== undefined) {
    if (labelsRaw.trim() === '') throw Errors.batchLabelsEmpty();
    labelNames = decodeList(labelsRaw, (item) => Errors.batchLabelEncoding(item));
  }

  found.sort((a, b) => a.index - b.index || (a.delta < b.delta ? -1 : a.delta > b.delta ? 1 : 0));

  const states = new Map<number, EntryState>();
  const records: V2Record[] = [];
  let totalSize = 0;
  for (const h of found) {
    const entry = entries[h.index];
    if (entry === undefined) throw Errors.batchEntryIndexOutOfRange(`x-reduct-${h.index}-${h.delta}`);
    const ts = startTs + h.delta;
    if (ts > U64_MAX) throw Errors.batchHeaderTime(h.name);
    if (opts.ignoreValues) {
      const base = { contentType: DEFAULT_CONTENT_TYPE, labels: {}, removed: [] };
      records.push({ entryIndex: h.index, entry, ts, delta: h.delta, size: 0, ...base });
      continue;
    }
    const prev = states.get(h.index);
    const comma = h.value.indexOf(',');
    const lenText = (comma < 0 ? h.value : h.value.slice(0, comma)).trim();
    if (!DIGITS.test(lenText) || !Number.isSafeInteger(Number(lenText))) throw Errors.invalidBatchedHeader();
    const size = Number(lenText);
    let state: EntryState;
    if (comma < 0) {
      if (prev === undefined) throw Errors.batchFirstRecordIncomplete();
      state = prev;
    } else {
      const rest = h.value.slice(comma + 1);
      const comma2 = rest.indexOf(',');
      const ct = (comma2 < 0 ? rest : rest.slice(0, comma2)).trim();
      const where = ` in header '${h.name}'`;
      checkContentType(ct, where);
      const contentType = ct !== '' ? ct : (prev?.contentType ?? DEFAULT_CONTENT_TYPE);
      let labels = prev?.labels ?? new Map<string, string | null>();
      let changed = false;
      if (comma2 >= 0) {
        const ops = parseLabelDelta(rest.slice(comma2 + 1), labelNames);
        if (ops.length > 0) {
          labels = new Map(labels);
          for (const [k, v] of ops) labels.set(k, v);
          changed = true;
        }
      }
      state = { contentType, labels };
      // bounds apply to the labels the record has, not to those earlier records deleted
      if (changed) checkLabelSet(splitState(labels).labels, where);
    }
    states.set(h.index, state);
    const split = splitState(state.labels);
    records.push({
      entryIndex: h.index,
      entry,
      ts,
      delta: h.delta,
      size,
      contentType: state.contentType,
      labels: split.labels,
      removed: split.removed,
    });
    totalSize += size;
  }
  return { entries, startTs, labelNames, records, totalSize };
}

/** Metadata of a record to emit in a v2 batch. */
export interface V2OutRecord {
  entry: string;
  ts: bigint;
  size: number;
  contentType: string;
  labels: Labels;
}

/** A v2 batch ready to send. */
export interface V2EncodedBatch {
  /**
   * `x-reduct-entries`, `x-reduct-start-ts`, optional `x-reduct-labels` and one
   * `x-reduct-<i>-<delta>` per record (no content-type/length/last: the caller adds those).
   */
  headers: Record<string, string>;
  /** Indexes into the input array in body order (entry index, then timestamp). */
  order: number[];
  /** Entry names by index after renumbering. */
  entries: string[];
  startTs: bigint;
  /** Sum of record sizes (the `Content-Length`, also for HEAD). */
  totalSize: number;
}

/**
 * Encodes records for a v2 read response (or a v2 write request — the format is the same).
 * Entries are renumbered by their first timestamp in the batch (ties by name); values are minimal
 * per-entry deltas: the content type when it changes, `k=v` for new/changed labels, `k=` for
 * removed ones, label names through the `x-reduct-labels` dictionary. Labels with an empty value
 * cannot be expressed (`k=` deletes) and are omitted. An empty input yields the empty batch
 * (`x-reduct-entries: ""`, `x-reduct-start-ts: 0`).
 */
export function encodeV2Batch(records: readonly V2OutRecord[]): V2EncodedBatch {
  if (records.length === 0) {
    return {
      headers: { [ENTRIES_HEADER]: '', [START_TS_HEADER]: '0' },
      order: [],
      entries: [],
      startTs: 0n,
      totalSize: 0,
    };
  }
  const byEntry = new Map<string, { first: bigint; idx: number[] }>();
  let startTs = records[0]!.ts;
  let totalSize = 0;
  records.forEach((r, i) => {
    if (r.ts < startTs) startTs = r.ts;
    totalSize += r.size;
    const group = byEntry.get(r.entry);
    if (group === undefined) byEntry.set(r.entry, { first: r.ts, idx: [i] });
    else {
      group.idx.push(i);
      if (r.ts < group.first) group.first = r.ts;
    }
  });
  const entries = [...byEntry.keys()].sort((a, b) => {
    const fa = byEntry.get(a)!.first;
    const fb = byEntry.get(b)!.first;
    return fa < fb ? -1 : fa > fb ? 1 : a < b ? -1 : a > b ? 1 : 0;
  });

  const headers: Record<string, string> = {
    [ENTRIES_HEADER]: entries.map(encodeHeaderComponent).join(','),
    [START_TS_HEADER]: startTs.toString(),
  };
  const labelIndex = new Map<string, number>();
  const ensure = (name: string): number => {
    let idx = labelIndex.get(name);
    if (idx === undefined) {
      idx = labelIndex.size;
      labelIndex.set(name, idx);
    }
    return idx;
  };

  const order: number[] = [];
  entries.forEach((entry, entryIndex) => {
    const idx = byEntry.get(entry)!.idx;
    idx.sort((a, b) => (records[a]!.ts < records[b]!.ts ? -1 : records[a]!.ts > records[b]!.ts ? 1 : 0));
    let prevCt: string | undefined;
    let prevLabels: Labels = {};
    for (const i of idx) {
      const r = records[i]!;
      order.push(i);
      const ct = r.contentType === '' ? DEFAULT_CONTENT_TYPE : r.contentType;
      const ops: string[] = [];
      if (!sameLabels(prevLabels, r.labels)) {
        const names = new Set([...Object.keys(prevLabels), ...Object.keys(r.labels)]);
        for (const name of [...names].sort()) {
          const before = prevLabels[name] ?? '';
          const now = r.labels[name] ?? '';
          if (before === now) continue;
          ops.push(`${ensure(name)}=${now === '' ? '' : formatLabelValue(now)}`);
        }
      }
      let value = String(r.size);
      if (prevCt !== ct || ops.length > 0) value += `,${prevCt === ct ? '' : ct}`;
      if (ops.length > 0) value += `,${ops.join(',')}`;
      headers[`x-reduct-${entryIndex}-${r.ts - startTs}`] = value;
      prevCt = ct;
      prevLabels = r.labels;
    }
  });
  if (labelIndex.size > 0)
    headers[LABELS_HEADER] = [...labelIndex.keys()].map(encodeHeaderComponent).join(',');
  return { headers, order, entries, startTs, totalSize };
}

/** Per-record error header of a v2 batch: `x-reduct-error-<i>-<delta>: <status>,<message>`. */
export function v2ErrorHeader(entryIndex: number, delta: bigint, err: FerryError): [string, string] {
  return [`x-reduct-error-${entryIndex}-${delta}`, errorHeaderValue(err)];
}

const ERROR_HEADER = /^x-reduct-error-(\d+)-(\d+)$/;

/** Key of a record in {@link parseV2ErrorHeaders}: entry index and delta. */
export const v2RecordKey = (entryIndex: number, delta: bigint): string => `${entryIndex}-${delta}`;

/**
 * Parses the `x-reduct-error-<i>-<delta>` headers of a v2 batch response (for replication
 * senders), keyed by {@link v2RecordKey}.
 */
export function parseV2ErrorHeaders(headers: HeaderSource): Map<string, FerryError> {
  const out = new Map<string, FerryError>();
  for (const [rawName, value] of headerPairs(headers)) {
    const m = ERROR_HEADER.exec(rawName.toLowerCase());
    if (m === null) continue;
    const delta = parseU64(m[2]!);
    const index = Number(m[1]);
    if (delta === undefined || !Number.isSafeInteger(index)) continue;
    out.set(v2RecordKey(index, delta), parseErrorValue(value));
  }
  return out;
}
