/**
 * Runtime values of the condition language (api.md §13.2) and the operations on them shared by
 * all operators. Values are plain JS primitives so that evaluation allocates nothing:
 * bool → boolean, int → number (bigint only outside the safe range), float → number,
 * string → string, duration → {@link Duration}. Int and float are both JS numbers: their
 * observable behaviour (comparison, arithmetic, string form) is identical in the reference.
 */
import { FerryError } from '../../protocol/errors.js';
import { formatDuration } from './duration.js';

/** A duration in microseconds (i64). Behaves as an int everywhere except its string form. */
export class Duration {
  constructor(readonly us: number) {}
}

export type Val = boolean | number | bigint | string | Duration;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** 422 raised while evaluating (bad operand types, division by zero, ...). */
export function evalError(message: string): FerryError {
  return new FerryError(422, message);
}

/** Normalises a bigint: back to number when it is a safe integer. */
export function normInt(b: bigint): number | bigint {
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
}

/** Label inference: `true`/`false` → bool, integer text → int, float text → float, else string. */
export function inferLabel(s: string): Val {
  const len = s.length;
  if (len === 0) return s;
  const c0 = s.charCodeAt(0);
  if ((c0 >= 48 && c0 <= 57) || c0 === 45 || c0 === 43 || c0 === 46) {
    const n = parseNumber(s);
    return n === undefined ? s : n;
  }
  if (c0 === 116) return s === 'true' ? true : s;
  if (c0 === 102) return s === 'false' ? false : s;
  if (c0 === 105 || c0 === 73 || c0 === 110 || c0 === 78) {
    const f = parseSpecialFloat(s);
    return f === undefined ? s : f;
  }
  return s;
}

/** Parses integer text (i64) or float text the way the reference does; undefined if neither. */
export function parseNumber(s: string): number | bigint | undefined {
  const len = s.length;
  let i = 0;
  let c = s.charCodeAt(0);
  if (c === 45 || c === 43) {
    if (len === 1) return undefined;
    i = 1;
    c = s.charCodeAt(1);
    if (c === 105 || c === 73 || c === 110 || c === 78) return parseSpecialFloat(s);
  }
  const intStart = i;
  while (i < len && isDigit(s.charCodeAt(i))) i++;
  const intDigits = i - intStart;
  if (i === len) {
    if (intDigits === 0) return undefined;
    if (intDigits <= 15) return Number(s) || 0; // `|| 0` turns -0 into the int 0
    const b = BigInt(s);
    if (b >= I64_MIN && b <= I64_MAX) return normInt(b);
    return Number(s); // out of i64: the reference falls back to f64
  }
  let fracDigits = 0;
  if (s.charCodeAt(i) === 46) {
    i++;
    const fracStart = i;
    while (i < len && isDigit(s.charCodeAt(i))) i++;
    fracDigits = i - fracStart;
  }
  if (intDigits === 0 && fracDigits === 0) return undefined;
  if (i < len) {
    c = s.charCodeAt(i);
    if (c !== 101 && c !== 69) return undefined;
    i++;
    c = s.charCodeAt(i);
    if (c === 45 || c === 43) i++;
    const expStart = i;
    while (i < len && isDigit(s.charCodeAt(i))) i++;
    if (i === expStart || i !== len) return undefined;
  }
  return Number(s);
}

/** Parses strict integer text within i64; undefined otherwise. */
export function parseInteger(s: string): number | bigint | undefined {
  const len = s.length;
  let i = 0;
  const c = s.charCodeAt(0);
  if (c === 45 || c === 43) i = 1;
  if (i === len) return undefined;
  for (let k = i; k < len; k++) if (!isDigit(s.charCodeAt(k))) return undefined;
  if (len - i <= 15) return Number(s) || 0;
  const b = BigInt(s);
  return b >= I64_MIN && b <= I64_MAX ? normInt(b) : undefined;
}

function parseSpecialFloat(s: string): number | undefined {
  let sign = 1;
  let body = s;
  if (s[0] === '-' || s[0] === '+') {
    sign = s[0] === '-' ? -1 : 1;
    body = s.slice(1);
  }
  switch (body.toLowerCase()) {
    case 'inf':
    case 'infinity':
      return sign * Infinity;
    case 'nan':
      return NaN;
    default:
      return undefined;
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Truthiness: non-zero numbers and non-empty strings are true. */
export function truthy(v: Val): boolean {
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      return v !== 0;
    case 'string':
      return v.length !== 0;
    case 'bigint':
      return v !== 0n;
    default:
      return (v as Duration).us !== 0;
  }
}

/** Name of a value's type as used in error messages. */
export function typeName(v: Val): string {
  switch (typeof v) {
    case 'boolean':
      return 'boolean';
    case 'number':
      return Number.isInteger(v) ? 'integer' : 'float';
    case 'bigint':
      return 'integer';
    case 'string':
      return 'string';
    default:
      return 'duration';
  }
}

/** Numeric view of a non-string value (bool → 0/1, duration → µs). Strings must be excluded first. */
export function numOf(v: Exclude<Val, string>): number | bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v.us;
}

/** `$eq`: numbers and bools compare numerically across types; string vs non-string is false. */
export function valEq(a: Val, b: Val): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  // Loose equality compares number and bigint exactly.
  return numOf(a) == numOf(b);
}

/** Ordering: -1, 0, 1, or undefined when not comparable (string vs non-string, NaN). */
export function valCmp(a: Val, b: Val): -1 | 0 | 1 | undefined {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a !== 'string' || typeof b !== 'string') return undefined;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const x = numOf(a);
  const y = numOf(b);
  return x < y ? -1 : x > y ? 1 : x == y ? 0 : undefined;
}

/** String form (used by `$cast: string`, string operators, `$has`, `$ref`). */
export function toStr(v: Val): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      return formatFloat(v);
    case 'bigint':
      return v.toString();
    default:
      return formatDuration((v as Duration).us);
  }
}

/** Formats a number like the reference: never in exponent notation, `inf`, `NaN`. */
export function formatFloat(n: number): string {
  if (Number.isInteger(n)) return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  // Only tiny magnitudes reach here (large ones are integers): expand `1.5e-7` → `0.00000015`.
  const neg = s[0] === '-';
  const mantissa = s.slice(neg ? 1 : 0, e).replace('.', '');
  const exp = Number(s.slice(e + 1));
  return `${neg ? '-' : ''}0.${'0'.repeat(-exp - 1)}${mantissa}`;
}

/** `as_int` of the reference: bool → 0/1, float truncated, duration → µs, integer text parsed. */
export function asInt(v: Val): number | bigint {
  switch (typeof v) {
    case 'number':
      if (Number.isInteger(v)) return v;
      return Number.isNaN(v) ? 0 : Math.trunc(v);
    case 'bigint':
      return v;
    case 'boolean':
      return v ? 1 : 0;
    case 'string': {
      const n = parseInteger(v);
      if (n === undefined) throw evalError(`Value '${v}' could not be parsed as integer`);
      return n;
    }
    default:
      return (v as Duration).us;
  }
}

/** `as_float` of the reference. */
export function asFloat(v: Val): number {
  switch (typeof v) {
    case 'number':
      return v;
    case 'bigint':
      return Number(v);
    case 'boolean':
      return v ? 1 : 0;
    case 'string': {
      const n = inferLabel(v);
      if (typeof n === 'number') return n;
      if (typeof n === 'bigint') return Number(n);
      throw evalError(`Value '${v}' could not be parsed as float`);
    }
    default:
      return (v as Duration).us;
  }
}
