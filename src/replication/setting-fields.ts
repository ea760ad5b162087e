/**
 * Field readers shared by the replication settings parsers (settings.ts, base-settings.ts): each
 * refuses a bad value with the one 422 message naming the field.
 */
import { Errors, type FerryError } from '../protocol/errors.js';
import { jsonNumber, U64_MAX } from '../protocol/json.js';

/** The 422 for a replication setting `field` (dotted for nested fields). */
export const invalidSetting = (field: string, why: string): FerryError =>
  Errors.unprocessable(`Invalid replication setting '${field}': ${why}`);

/** A u64 µs timestamp `body[key]` (number or bigint), or undefined when absent; `field` names it. */
export function timestampField(
  body: Record<string, unknown>,
  key: string,
  field: string = key,
): bigint | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  const n = jsonNumber(v);
  const big =
    typeof n === 'bigint' ? n : typeof n === 'number' && Number.isSafeInteger(n) ? BigInt(n) : undefined;
  if (big === undefined || big < 0n || big > U64_MAX) {
    throw invalidSetting(field, 'must be a timestamp in microseconds (an integer between 0 and 2^64-1)');
  }
  return big;
}
