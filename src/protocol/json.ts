/**
 * Bigint-safe JSON (api.md §3.6, §19). Integers that do not fit a JS number exactly are parsed as
 * `bigint`; everything else keeps its native type so that condition objects (`when`) keep their
 * key order and float/int distinction. Serialisation writes bigints as plain JSON integers.
 */
import { parse as losslessParse, isSafeNumber, isInteger } from 'lossless-json';
import { Errors } from './errors.js';

/**
 * Marker for a JSON number written as a float whose value is integral (`1.0`, `2e3`), so that the
 * condition language can keep int and float apart. Use `jsonNumber()` to read such values elsewhere.
 */
export class JsonFloat {
  constructor(readonly value: number) {}
}

function parseNumber(text: string): number | bigint | JsonFloat {
  if (isInteger(text)) {
    return isSafeNumber(text) ? Number(text) : BigInt(text);
  }
  const n = Number(text);
  // `1.0` or `2e3` must stay a float for the condition language; other floats are plain numbers.
  return Number.isInteger(n) ? new JsonFloat(n) : n;
}

/**
 * Parses a JSON body. Integers beyond 2^53 become bigint. Throws 422 `Invalid JSON: ...`.
 * An empty body parses to `undefined`.
 */
export function parseJson(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return losslessParse(text, null, parseNumber);
  } catch (e) {
    throw Errors.invalidJson((e as Error).message);
  }
}

/** Serialises a value, writing bigints as plain integers (never quoted). */
export function stringifyJson(value: unknown, space?: number): string {
  let special = false;
  const out = JSON.stringify(
    value,
    (_k, v) => {
      if (typeof v === 'bigint') {
        special = true;
        return `\uE000N${v.toString()}\uE000`;
      }
      if (v instanceof JsonFloat) {
        special = true;
        return `\uE000N${Number.isInteger(v.value) ? v.value.toFixed(1) : String(v.value)}\uE000`;
      }
      return v;
    },
    space,
  );
  return special ? out.replace(/"\uE000N([^\uE000"]+)\uE000"/g, '$1') : out;
}

/** Reads a JSON number that may be a JsonFloat marker; returns undefined for non-numbers. */
export function jsonNumber(v: unknown): number | bigint | undefined {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (v instanceof JsonFloat) return v.value;
  return undefined;
}

export const U64_MAX = 0xffffffffffffffffn;
const DIGITS = /^\d+$/;

/** Parses a decimal u64 (timestamps, sizes, ids in headers and query strings), or undefined. */
export function parseU64(text: string | null | undefined): bigint | undefined {
  if (text === null || text === undefined || !DIGITS.test(text)) return undefined;
  const v = BigInt(text);
  return v <= U64_MAX ? v : undefined;
}

/** Converts a JSON number/bigint/integer string to bigint, or returns undefined if it is not a u64. */
export function toU64(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v >= 0n && v <= U64_MAX ? v : undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string') return parseU64(v);
  return undefined;
}

/**
 * A short, safe rendering of a value from a request for error messages. Never calls user-supplied
 * `toString`/`valueOf` (a JSON object may carry such keys as data), bounded in length.
 */
export function describeJsonValue(v: unknown): string {
  const text = typeof v === 'string' ? v : (stringifyJson(v) ?? typeof v);
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}
