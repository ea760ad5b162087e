/**
 * Wire format of `POST /api/v1/ferry/groups/apply` (a Ferry destination's atomic apply of one
 * shipment across buckets, replication.md §8). Body (`application/x-ferry-shipment`):
 *
 *   [u32 big-endian header length][header: UTF-8 JSON][payloads of the writes, back to back]
 *
 * Header: `{"key", "from", "position", "items": [...]}`; an item is
 * `{"kind": "write", "bucket", "entry", "ts", "lsn", "size", "content_type", "labels", "origin",
 * "digest"}` (digest: 32 hex digits, optional) or `{"kind": "update", "bucket", "entry", "ts",
 * "lsn", "labels", "removed_labels", "origin"}`. u64 values are JSON integers. The answer is a
 * {@link ShipmentAnswer}.
 */
import { Errors, FerryError } from './errors.js';
import { checkContentType, checkLabelSet, checkOrigin } from './field-bounds.js';
import { describeJsonValue, parseJson, toU64 } from './json.js';
import { MAX_SHIPMENT_ITEMS } from './limits.js';
import { isValidBucketName, isValidEntryName } from './names.js';

/** Content type of a shipment body. */
export const SHIPMENT_CONTENT_TYPE = 'application/x-ferry-shipment';
/** Bytes of the header-length prefix. */
export const SHIPMENT_PREFIX_BYTES = 4;

/** Characters of a shipment stream key: letters, digits and `-_.:`. */
const KEY = /^[A-Za-z0-9_.:-]{1,255}$/;

/** Whether `key` can name a shipment stream. */
export const isShipmentKey = (key: string): boolean => KEY.test(key);

/** One change of a shipment header. */
export interface ShipmentWireItem {
  kind: 'write' | 'update';
  bucket: string;
  entry: string;
  ts: bigint;
  lsn: bigint;
  /** Writes: payload bytes (taken from the body in item order). */
  size?: number;
  content_type?: string;
  labels: Record<string, string>;
  removed_labels?: string[];
  origin?: string;
  /** Writes: 32 hex digits, the first 16 bytes of the payload's SHA-256. */
  digest?: string;
}

/** The JSON header of a shipment body. */
export interface ShipmentWireHeader {
  key: string;
  from: bigint;
  position: bigint;
  items: ShipmentWireItem[];
}

/** Answer of `POST /api/v1/ferry/groups/apply` (and of `Storage.applyShipment`). */
export interface ShipmentAnswer {
  /** False when the stream was at `position` or beyond already (a re-sent shipment: nothing done). */
  applied: boolean;
  /** The stream's applied position now. */
  position: bigint;
  written: number;
  /** Writes found stored already with the same size and digest. */
  present: number;
  updated: number;
  /** Label updates for records the destination does not hold (skipped). */
  missing: number;
  /** Changes at or before the applied position (left out). */
  skipped: number;
}

/** Answer of `GET /api/v1/ferry/groups/apply/{key}`. */
export interface ShipmentPositionAnswer {
  key: string;
  position: bigint;
}

const bad = (msg: string): FerryError => Errors.unprocessable(`Invalid shipment: ${msg}`);
const HEX32 = /^[0-9a-fA-F]{32}$/;
const ITEM_KEYS = new Set([
  'kind',
  'bucket',
  'entry',
  'ts',
  'lsn',
  'size',
  'content_type',
  'labels',
  'removed_labels',
  'origin',
  'digest',
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function u64(v: unknown, field: string): bigint {
  const n = typeof v === 'string' ? undefined : toU64(v);
  if (n === undefined)
    throw bad(`'${field}' must be an unsigned 64-bit integer (got ${describeJsonValue(v)})`);
  return n;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw bad(`'${field}' must be a string`);
  return v;
}

function labelsOf(v: unknown, field: string): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v)) throw bad(`'${field}' must be an object of string values`);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw bad(`'${field}.${k.slice(0, 64)}' must be a string`);
  }
  checkLabelSet(v as Record<string, string>, ` of ${field}`);
  return v as Record<string, string>;
}

/**
 * Validates a parsed shipment header: every field typed and within its bound (limits.ts), names
 * valid, at most MAX_SHIPMENT_ITEMS items. Throws 422 naming the field.
 */
export function parseShipmentHeader(json: unknown): ShipmentWireHeader {
  if (!isObject(json)) throw bad('the header must be a JSON object');
  const key = str(json['key'], 'key');
  if (!isShipmentKey(key)) throw Errors.shipmentInvalidKey(key);
  const from = u64(json['from'], 'from');
  const position = u64(json['position'], 'position');
  const raw = json['items'];
  if (!Array.isArray(raw)) throw bad("'items' must be an array");
  if (raw.length > MAX_SHIPMENT_ITEMS)
    throw bad(`at most ${MAX_SHIPMENT_ITEMS} items per shipment (got ${raw.length})`);
  // a header names few buckets and entries, each many times: each is checked once
  const buckets = new Set<string>();
  const entries = new Set<string>();
  const items = raw.map((it: unknown, i): ShipmentWireItem => {
    const f = `items[${i}]`;
    if (!isObject(it)) throw bad(`'${f}' must be an object`);
    for (const k of Object.keys(it))
      if (!ITEM_KEYS.has(k)) throw bad(`unknown field '${f}.${k.slice(0, 64)}'`);
    const kind = it['kind'];
    if (kind !== 'write' && kind !== 'update') throw bad(`'${f}.kind' must be 'write' or 'update'`);
    const bucket = str(it['bucket'], `${f}.bucket`);
    if (!buckets.has(bucket)) {
      if (!isValidBucketName(bucket)) throw bad(`'${f}.bucket' is not a bucket name`);
      buckets.add(bucket);
    }
    const entry = str(it['entry'], `${f}.entry`);
    if (!entries.has(entry)) {
      if (!isValidEntryName(entry, { allowMeta: true })) throw bad(`'${f}.entry' is not an entry name`);
      entries.add(entry);
    }
    const out: ShipmentWireItem = {
      kind,
      bucket,
      entry,
      ts: u64(it['ts'], `${f}.ts`),
      lsn: u64(it['lsn'], `${f}.lsn`),
      labels: labelsOf(it['labels'], `${f}.labels`),
    };
    if (it['origin'] !== undefined) {
      out.origin = str(it['origin'], `${f}.origin`);
      checkOrigin(out.origin);
    }
    if (kind === 'write') {
      const size = u64(it['size'], `${f}.size`);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`'${f}.size' is too large`);
      out.size = Number(size);
      if (it['content_type'] !== undefined) {
        out.content_type = str(it['content_type'], `${f}.content_type`);
        checkContentType(out.content_type, ` of ${f}`);
      }
      if (it['digest'] !== undefined) {
        const d = str(it['digest'], `${f}.digest`);
        if (!HEX32.test(d)) throw bad(`'${f}.digest' must be 32 hex digits`);
        out.digest = d;
      }
    } else {
      const removed = it['removed_labels'] ?? [];
      if (!Array.isArray(removed) || removed.some((r) => typeof r !== 'string'))
        throw bad(`'${f}.removed_labels' must be an array of label names`);
      checkLabelSet(Object.fromEntries(removed.map((r: string) => [r, null])), ` of ${f}.removed_labels`);
      out.removed_labels = removed as string[];
    }
    return out;
  });
  return { key, from, position, items };
}

/** Whether a parsed JSON value is not a number that JSON.parse may have rounded (beyond 2^53 - 1). */
const exact = (v: unknown): boolean => typeof v !== 'number' || Number.isSafeInteger(v);

/** Whether the u64 fields of a natively parsed header hold the exact values of the text. */
function exactU64s(json: unknown): boolean {
  if (!isObject(json)) return true;
  if (!exact(json['from']) || !exact(json['position'])) return false;
  const items = json['items'];
  if (!Array.isArray(items)) return true;
  for (const it of items)
    if (isObject(it) && (!exact(it['ts']) || !exact(it['lsn']) || !exact(it['size']))) return false;
  return true;
}

/**
 * Parses a shipment header's JSON. A header of many items is most of an apply's CPU with the
 * lossless parser, so the native one is used, and its result kept when no u64 field is beyond
 * 2^53 - 1 (an integer up to there parses exactly, one beyond it comes back as a number that is
 * not a safe integer); otherwise `parseJson` keeps u64 exact.
 */
export function parseShipmentJson(text: string): unknown {
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    return parseJson(text); // its error message
  }
  return exactU64s(json) ? json : parseJson(text);
}
