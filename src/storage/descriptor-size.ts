/**
 * The size ReductStore accounts for one record (api.md §3.9): payload length plus the length of
 * its protobuf descriptor as encoded when the write starts. Clients compare sizes exactly.
 */
import type { Labels } from './types.js';

/** Number of 7-bit groups needed to encode `n` as a protobuf varint. */
export function varintLen(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

const utf8Len = (s: string): number => Buffer.byteLength(s);

/** Encoded descriptor length for a record written at `begin` (offset inside its block). */
export function descriptorSize(
  ts: bigint,
  begin: number,
  size: number,
  contentType: string,
  labels: Labels,
): number {
  // Timestamps below 2^53 µs (year 2255) take the Number path: no BigInt division per record.
  const n = Number(ts);
  const exact = Number.isSafeInteger(n);
  const sec = exact ? Math.floor(n / 1_000_000) : Number(ts / 1_000_000n);
  const nanos = (exact ? n % 1_000_000 : Number(ts % 1_000_000n)) * 1000;
  const tsmsg = (sec > 0 ? 1 + varintLen(sec) : 0) + (nanos > 0 ? 1 + varintLen(nanos) : 0);
  let total = 2 + tsmsg;
  if (begin > 0) total += 1 + varintLen(begin);
  const end = begin + size;
  if (end > 0) total += 1 + varintLen(end);
  for (const name in labels) {
    const value = labels[name]!;
    const n = utf8Len(name);
    const v = utf8Len(value);
    const m = (n > 0 ? 1 + varintLen(n) + n : 0) + (v > 0 ? 1 + varintLen(v) + v : 0);
    total += 1 + varintLen(m) + m;
  }
  if (contentType.length > 0) {
    const c = utf8Len(contentType);
    total += 1 + varintLen(c) + c;
  }
  return total;
}
