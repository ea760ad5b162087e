/** Directives of a `when` object (api.md §13.4): top-level keys starting with `#`. */
import { JsonFloat } from '../../protocol/json.js';
import { compileError } from './expr.js';
import { parseDurationLiteral } from './duration.js';

/** Per-query overrides and context options carried by `#` keys. */
export interface Directives {
  ctxBefore?: { records: number } | { durationUs: bigint };
  ctxAfter?: { records: number } | { durationUs: bigint };
  selectLabels?: string[];
  batchSize?: number;
  batchRecords?: number;
  batchMetadataSize?: number;
  batchTimeoutMs?: number;
  recordTimeoutMs?: number;
  ioTimeoutMs?: number;
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof JsonFloat) return v.value;
  return undefined;
}

function positiveInt(key: string, v: unknown): number {
  const n = asNumber(v);
  if (n === undefined || !Number.isInteger(n) || n < 0) {
    throw compileError(`Directive '${key}' must be a non-negative integer`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1e3,
  m: 1e6,
  g: 1e9,
};

/** A byte size: a number, or a string such as `"1MB"`, `"512 KiB"`. */
function byteSize(key: string, v: unknown): number {
  if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
    const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
    if (m && unit !== undefined) return Math.round(Number(m[1]) * unit);
    throw compileError(`Directive '${key}' must be a size in bytes or a string like "1MB", got '${v}'`);
  }
  return positiveInt(key, v);
}

/** Integer seconds or a duration literal → ms. */
function timeoutMs(key: string, v: unknown): number {
  if (typeof v === 'string') {
    const us = parseDurationLiteral(v);
    if (us === undefined || us < 0)
      throw compileError(`Directive '${key}' must be seconds or a duration literal, got '${v}'`);
    return Math.round(us / 1000);
  }
  const n = asNumber(v);
  if (n === undefined || !(n >= 0))
    throw compileError(`Directive '${key}' must be seconds or a duration literal`);
  return Math.round(n * 1000);
}

function context(key: string, v: unknown): { records: number } | { durationUs: bigint } {
  if (typeof v === 'string') {
    const us = parseDurationLiteral(v);
    if (us === undefined || us < 0)
      throw compileError(`Directive '${key}' must be a number of records or a duration, got '${v}'`);
    return { durationUs: BigInt(us) };
  }
  const n = asNumber(v);
  if (n === undefined || !Number.isInteger(n) || n < 0) {
    throw compileError(`Directive '${key}' must be a number of records or a duration`);
  }
  return { records: n };
}

function labelList(key: string, v: unknown): string[] {
  const list = Array.isArray(v) ? v : [v];
  for (const item of list) {
    if (typeof item !== 'string') throw compileError(`Directive '${key}' must be a list of label names`);
  }
  return list as string[];
}

/** Applies one directive to `out`; throws 422 for unknown, unsupported or malformed directives. */
export function applyDirective(out: Directives, key: string, value: unknown): void {
  if (value === null || value === undefined) throw compileError(`Directive '${key}' cannot be null`);
  switch (key) {
    case '#ctx_before':
      out.ctxBefore = context(key, value);
      return;
    case '#ctx_after':
      out.ctxAfter = context(key, value);
      return;
    case '#select_labels':
      out.selectLabels = labelList(key, value);
      return;
    case '#batch_size':
      out.batchSize = byteSize(key, value);
      return;
    case '#batch_records':
      out.batchRecords = positiveInt(key, value);
      return;
    case '#batch_metadata_size':
      out.batchMetadataSize = byteSize(key, value);
      return;
    case '#batch_timeout':
      out.batchTimeoutMs = timeoutMs(key, value);
      return;
    case '#record_timeout':
      out.recordTimeoutMs = timeoutMs(key, value);
      return;
    case '#io_timeout':
      out.ioTimeoutMs = timeoutMs(key, value);
      return;
    case '#ext':
      throw compileError(`Directive '#ext' is not supported: this server has no extensions`);
    default:
      throw compileError(`Directive '${key}' is not supported`);
  }
}
