/**
 * Ferry's records-table batch (a Ferry-to-Ferry form of `POST /b/{bucket}/{entry}/batch`): the
 * records' metadata travels in the body ahead of the payloads instead of one `x-reduct-time-<ts>`
 * header per record. Parsing and validating thousands of headers cost the sender (undici checks
 * each) and the destination more CPU than storing the records (issue 9), the header count bounds a
 * request to ~900 records, and a header list cannot carry every label value (a leading `"`, or
 * `"` with `,`). Body (`application/x-ferry-records`), integers big-endian:
 *
 *   "FRT1" | u32 table bytes | table | payloads back to back, in table order
 *   table  = u32 count | record × count
 *   record = u64 ts | u64 size | u8 flags | [16-byte digest when flags & 1]
 *            | u16 content-type bytes | content type
 *            | u16 label count | (u16 name bytes | name | u16 value bytes | value) × count
 *
 * Strings are the bytes their header would carry (one byte per character, as Node reads header
 * values), so that a record reads back the same whichever form wrote it, and every stored value
 * can travel in a header of a read answer: tab, 0x20–0x7E and 0x80–0xFF only. Timestamps ascend
 * strictly. Every field is checked with the bounds of the header forms; the destination
 * advertises the form with `x-ferry-features: records-table` on its answers.
 */
import { checkLabelName, DEFAULT_CONTENT_TYPE, headerSafe } from './batch-v1.js';
import { Errors, FerryError } from './errors.js';
import { checkLabelSet } from './field-bounds.js';
import type { Labels } from './labels.js';
import { MAX_CONTENT_TYPE_BYTES, MAX_LABELS_PER_RECORD } from './limits.js';

/** Request content type of a records-table batch. */
export const RECORDS_TABLE_CONTENT_TYPE = 'application/x-ferry-records';
/** Answer header by which a destination says it takes records-table batches. */
export const FEATURES_HEADER = 'x-ferry-features';
/** The feature's name in {@link FEATURES_HEADER}. */
export const RECORDS_TABLE_FEATURE = 'records-table';
/** Bytes before the table: magic and table length. */
export const TABLE_PREFIX_BYTES = 8;
/** Most records in one table (memory per request stays bounded). */
export const MAX_TABLE_RECORDS = 16_384;
/** Most bytes of one table. */
export const MAX_TABLE_BYTES = 16 * 1024 * 1024;

const MAGIC = 0x46525431; // "FRT1"
const DIGEST_BYTES = 16;
const HAS_DIGEST = 1;

/** One record of a table. */
export interface TableRecord {
  ts: bigint;
  size: number;
  contentType: string;
  labels: Readonly<Labels>;
  /** 16-byte content digest (first bytes of SHA-256), when the sender knows it. */
  digest?: Buffer | undefined;
}

/** A decoded table. */
export interface DecodedTable {
  records: TableRecord[];
  /** Sum of the record sizes. */
  totalSize: number;
}

/** The record has a digest to send. */
const hasDigest = (r: TableRecord): r is TableRecord & { digest: Buffer } =>
  r.digest !== undefined && r.digest.length >= DIGEST_BYTES;

/** Writes `s` (header characters, one byte each) with its u16 length at `at`; returns the position after it. */
function put(buf: Buffer, at: number, s: string): number {
  const n = s.length;
  buf[at] = n >> 8;
  buf[at + 1] = n & 0xff;
  at += 2;
  if (n <= 64) {
    for (let i = 0; i < n; i++) buf[at + i] = s.charCodeAt(i);
    return at + n;
  }
  return at + buf.write(s, at, n, 'latin1');
}

/** Whether a records table can carry `r` exactly (else it goes another way, or not at all). */
export function tableCarries(r: Pick<TableRecord, 'contentType' | 'labels'>): boolean {
  if (!headerSafe(r.contentType)) return false;
  for (const k in r.labels) if (!headerSafe(k) || !headerSafe(r.labels[k]!)) return false;
  return true;
}

/**
 * The prefix and table of `records` (ascending ts); the payloads follow it in the body. Written
 * in two passes into one buffer; a labels object or content type the record before had too is
 * copied from its bytes.
 */
export function encodeRecordsTable(records: readonly TableRecord[]): Buffer {
  // callers check tableCarries(): a character beyond one byte would be stored altered
  let bytes = TABLE_PREFIX_BYTES + 4;
  let lastLabels: Readonly<Labels> | undefined;
  let labelBytes = 0;
  let lastType: string | undefined;
  let typeBytes = 0;
  for (const r of records) {
    if (r.contentType !== lastType) {
      lastType = r.contentType;
      typeBytes = 2 + r.contentType.length;
    }
    if (r.labels !== lastLabels) {
      lastLabels = r.labels;
      labelBytes = 2;
      for (const k in r.labels) labelBytes += 4 + k.length + r.labels[k]!.length;
    }
    bytes += 17 + (hasDigest(r) ? DIGEST_BYTES : 0) + typeBytes + labelBytes;
  }
  const buf = Buffer.allocUnsafe(bytes);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt32BE(bytes - TABLE_PREFIX_BYTES, 4);
  buf.writeUInt32BE(records.length, 8);
  let at = TABLE_PREFIX_BYTES + 4;
  lastLabels = undefined;
  lastType = undefined;
  let typeAt = 0;
  let typeEnd = 0;
  let labelsAt = 0;
  let labelsEnd = 0;
  for (const r of records) {
    buf.writeBigUInt64BE(r.ts, at);
    buf.writeUInt32BE(Math.floor(r.size / 0x100000000), at + 8);
    buf.writeUInt32BE(r.size >>> 0, at + 12);
    at += 16;
    if (hasDigest(r)) {
      buf[at++] = HAS_DIGEST;
      r.digest.copy(buf, at, 0, DIGEST_BYTES);
      at += DIGEST_BYTES;
    } else buf[at++] = 0;
    if (r.contentType === lastType) at += buf.copy(buf, at, typeAt, typeEnd);
    else {
      lastType = r.contentType;
      typeAt = at;
      at = put(buf, at, r.contentType);
      typeEnd = at;
    }
    if (r.labels === lastLabels) at += buf.copy(buf, at, labelsAt, labelsEnd);
    else {
      lastLabels = r.labels;
      labelsAt = at;
      const names = Object.keys(r.labels);
      buf[at] = names.length >> 8;
      buf[at + 1] = names.length & 0xff;
      at += 2;
      for (const k of names) {
        const v = r.labels[k]!;
        at = put(buf, at, k);
        at = put(buf, at, v);
      }
      labelsEnd = at;
    }
  }
  return buf;
}

/** Length of the table that follows a prefix (422 for a body that is not a records table). */
export function tableLength(prefix: Buffer): number {
  if (prefix.length < TABLE_PREFIX_BYTES || prefix.readUInt32BE(0) !== MAGIC)
    throw Errors.unprocessable('Not a records table: the body must start with "FRT1"');
  const n = prefix.readUInt32BE(4);
  if (n < 4 || n > MAX_TABLE_BYTES)
    throw Errors.unprocessable(`Records table of ${n} bytes: must be 4 to ${MAX_TABLE_BYTES} bytes`);
  return n;
}

const invalid = (what: string): FerryError => Errors.unprocessable(`Invalid records table: ${what}`);

/** Strings decoded from a table, reused when the same bytes come again (names repeat). */
interface Interned {
  at: number;
  len: number;
  s: string;
}

/** Bytes `[a, a+len)` and `[b, b+len)` of `buf` are equal. */
function sameBytes(buf: Buffer, a: number, b: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** The text of `buf[at, at+len)`, one character per byte; undefined when no header carries it. */
function text(buf: Buffer, at: number, len: number): string | undefined {
  let s = '';
  if (len <= 64) for (let i = 0; i < len; i++) s += String.fromCharCode(buf[at + i]!);
  else s = buf.toString('latin1', at, at + len);
  return headerSafe(s) ? s : undefined;
}

/**
 * Decodes and checks a table (without its prefix): 422 naming the problem for a truncated table,
 * trailing bytes, too many records, timestamps out of order, a size beyond 2^53, a bad label
 * name, or a field over its bound. Records with the same label bytes as the one before share one
 * labels object (checked once); treat it as read-only.
 */
export function decodeRecordsTable(table: Buffer): DecodedTable {
  const end = table.length;
  let at = 0;
  const need = (n: number): void => {
    if (at + n > end) throw invalid('it ends inside a record');
  };
  need(4);
  const count = table.readUInt32BE(0);
  at = 4;
  if (count > MAX_TABLE_RECORDS) throw invalid(`${count} records, at most ${MAX_TABLE_RECORDS}`);
  const records: TableRecord[] = new Array<TableRecord>(count);
  let totalSize = 0;
  let prevTs = -1n;
  let typeAt = -1;
  let typeLen = -1;
  let type = DEFAULT_CONTENT_TYPE;
  let labelsAt = -1;
  let labelsLen = -1;
  let labels: Labels = {};
  /** Label names seen (checked once each). */
  const names: Interned[] = [];
  for (let i = 0; i < count; i++) {
    need(17 + 2);
    const ts = table.readBigUInt64BE(at);
    const hi = table.readUInt32BE(at + 8);
    const size = hi * 0x100000000 + table.readUInt32BE(at + 12);
    const flags = table[at + 16]!;
    at += 17;
    if (ts <= prevTs) throw invalid(`timestamps must ascend strictly (${ts} after ${prevTs})`);
    prevTs = ts;
    if (hi > 0x1fffff) throw invalid(`size of record ${ts} is beyond 2^53`);
    if ((flags & ~HAS_DIGEST) !== 0) throw invalid(`unknown flags ${flags} of record ${ts}`);
    let digest: Buffer | undefined;
    if (flags & HAS_DIGEST) {
      need(DIGEST_BYTES + 2);
      digest = table.subarray(at, at + DIGEST_BYTES);
      at += DIGEST_BYTES;
    }
    const ctLen = table.readUInt16BE(at);
    at += 2;
    if (ctLen > MAX_CONTENT_TYPE_BYTES)
      throw Errors.fieldTooLong(`Content-Type of record ${ts}`, ctLen, MAX_CONTENT_TYPE_BYTES);
    need(ctLen + 2);
    if (ctLen !== typeLen || !sameBytes(table, at, typeAt, ctLen)) {
      const t = ctLen === 0 ? DEFAULT_CONTENT_TYPE : text(table, at, ctLen);
      if (t === undefined) throw invalid(`the content type of record ${ts} holds a control character`);
      type = t;
      typeAt = at;
      typeLen = ctLen;
    }
    at += ctLen;
    const start = at;
    const n = table.readUInt16BE(at);
    at += 2;
    if (n > MAX_LABELS_PER_RECORD) throw Errors.tooManyLabels(` of record ${ts}`, n, MAX_LABELS_PER_RECORD);
    for (let k = 0; k < 2 * n; k++) {
      need(2);
      const len = table.readUInt16BE(at);
      need(2 + len);
      at += 2 + len;
    }
    const len = at - start;
    if (len !== labelsLen || !sameBytes(table, start, labelsAt, len)) {
      labels = decodeLabels(table, start, names, ts);
      labelsAt = start;
      labelsLen = len;
    }
    records[i] = { ts, size, contentType: type, labels, digest };
    totalSize += size;
  }
  if (at !== end) throw invalid(`${end - at} bytes after the last record`);
  return { records, totalSize };
}

/** The labels at `at` (their framing was checked), checked against the bounds. */
function decodeLabels(b: Buffer, at: number, names: Interned[], ts: bigint): Labels {
  const labels: Labels = {};
  const n = b.readUInt16BE(at);
  at += 2;
  for (let k = 0; k < n; k++) {
    const nameLen = b.readUInt16BE(at);
    at += 2;
    let name: string | undefined;
    for (const e of names)
      if (e.len === nameLen && sameBytes(b, e.at, at, nameLen)) {
        name = e.s;
        break;
      }
    if (name === undefined) {
      name = text(b, at, nameLen) ?? '';
      if (name.startsWith('@')) throw Errors.batchComputedLabelName();
      checkLabelName(name);
      if (names.length < 64) names.push({ at, len: nameLen, s: name });
    }
    at += nameLen;
    const valueLen = b.readUInt16BE(at);
    const value = text(b, at + 2, valueLen);
    if (value === undefined)
      throw invalid(`the value of label '${name}' of record ${ts} holds a control character`);
    at += 2 + valueLen;
    if (Object.hasOwn(labels, name)) throw invalid(`label '${name}' twice of record ${ts}`);
    labels[name] = value;
  }
  checkLabelSet(labels, ` of record ${ts}`);
  return labels;
}
