/**
 * Parsers for environment variable values. Each throws an Error naming the variable and what is
 * allowed, so that a misconfigured server refuses to start with a clear message.
 *
 * Human sizes follow ReductStore: decimal units for `KB`, `MB`, `GB`, `TB`, `PB` (10^3 steps) and
 * binary units for `KiB`, `MiB`, `GiB`, `TiB`, `PiB` (2^10 steps); units are case-insensitive,
 * `K`/`M`/`G`/`T`/`P` alone are decimal, a bare number or `B` means bytes. Fractions are allowed
 * (`1.5GB`); the result is rounded down to whole bytes.
 */
import { U64_MAX } from '../protocol/json.js';

const SIZE_UNITS: Record<string, bigint> = {
  '': 1n,
  b: 1n,
  k: 1000n,
  kb: 1000n,
  m: 1000n ** 2n,
  mb: 1000n ** 2n,
  g: 1000n ** 3n,
  gb: 1000n ** 3n,
  t: 1000n ** 4n,
  tb: 1000n ** 4n,
  p: 1000n ** 5n,
  pb: 1000n ** 5n,
  ki: 1024n,
  kib: 1024n,
  mi: 1024n ** 2n,
  mib: 1024n ** 2n,
  gi: 1024n ** 3n,
  gib: 1024n ** 3n,
  ti: 1024n ** 4n,
  tib: 1024n ** 4n,
  pi: 1024n ** 5n,
  pib: 1024n ** 5n,
};

/** Parses a human size (`10GB`, `512 MiB`, `1000`) into bytes, or returns undefined if invalid. */
export function parseHumanSize(text: string): bigint | undefined {
  const m = /^\s*(\d+)(?:\.(\d+))?\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[3] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const whole = BigInt(m[1] as string);
  const fracText = m[2] ?? '';
  const fracScale = 10n ** BigInt(fracText.length);
  const frac = fracText ? BigInt(fracText) : 0n;
  const bytes = whole * unit + (frac * unit) / fracScale;
  return bytes > U64_MAX ? undefined : bytes;
}

/** The trimmed text, or undefined when it is unset or blank. */
export function nonEmpty(text: string | undefined): string | undefined {
  const t = text?.trim();
  return t === '' ? undefined : t;
}

/** Reads a variable, trimmed; empty strings count as unset. */
export function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return nonEmpty(env[name]);
}

/** Boolean: true/false, 1/0, yes/no, on/off (case-insensitive). */
export function parseBool(name: string, text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(t)) return true;
  if (['false', '0', 'no', 'off'].includes(t)) return false;
  throw new Error(`${name}: invalid boolean '${text}' (allowed: true, false, 1, 0, yes, no, on, off)`);
}

/** Integer within [min, max]. */
export function parseIntIn(name: string, text: string, min: number, max: number): number {
  const t = text.trim();
  if (!/^\d+$/.test(t) || Number(t) < min || Number(t) > max) {
    throw new Error(`${name}: invalid value '${text}' (allowed: an integer from ${min} to ${max})`);
  }
  return Number(t);
}

/** Human size as bigint bytes. */
export function parseSize(name: string, text: string): bigint {
  const v = parseHumanSize(text);
  if (v === undefined) {
    throw new Error(
      `${name}: invalid size '${text}' (allowed: bytes or a number with a unit such as 512MB, 10GB, 1KiB, 4GiB)`,
    );
  }
  return v;
}

/** Human size that must fit a JS number exactly (byte budgets used in arithmetic). */
export function parseSizeNumber(name: string, text: string): number {
  const v = parseSize(name, text);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${name}: size '${text}' is too large`);
  return Number(v);
}

/**
 * Duration in milliseconds: a plain number means seconds (ReductStore's unit, fractions allowed);
 * suffixes `ms`, `s`, `m`, `h` are accepted as well.
 */
export function parseDurationMs(name: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (!m) {
    throw new Error(
      `${name}: invalid duration '${text}' (allowed: seconds such as 5 or 0.5, or 500ms, 5s, 2m, 1h)`,
    );
  }
  const n = Number(m[1]);
  const unit = (m[2] ?? 's').toLowerCase();
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}

/** One of a fixed set of values (case-insensitive); returns the canonical spelling. */
export function parseEnum<T extends string>(name: string, text: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a.toLowerCase() === text.trim().toLowerCase());
  if (found === undefined)
    throw new Error(`${name}: invalid value '${text}' (allowed: ${allowed.join(', ')})`);
  return found;
}

/** Comma-separated list, items trimmed, empty items dropped. */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
