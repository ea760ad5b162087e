/**
 * Duration literals of the condition language (api.md §13.1): whitespace-separated parts, each an
 * optionally negative integer followed by `us`, `ms`, `s`, `m`, `h` or `d`; the parts are summed.
 */

const UNIT_US: Record<string, number> = {
  us: 1,
  ms: 1_000,
  s: 1_000_000,
  m: 60_000_000,
  h: 3_600_000_000,
  d: 86_400_000_000,
};

/** Parses a duration literal into microseconds, or returns undefined when `text` is not one. */
export function parseDurationLiteral(text: string): number | undefined {
  const len = text.length;
  // Quick reject: a literal must contain a digit followed (eventually) by a unit letter.
  if (len < 2) return undefined;
  let total = 0;
  let i = 0;
  let parts = 0;
  while (i < len) {
    while (i < len && isSpace(text.charCodeAt(i))) i++;
    if (i >= len) break;
    let neg = false;
    if (text.charCodeAt(i) === 45) {
      neg = true;
      i++;
    }
    const numStart = i;
    while (i < len && isDigit(text.charCodeAt(i))) i++;
    if (i === numStart) return undefined;
    const value = Number(text.slice(numStart, i));
    const unitStart = i;
    while (i < len && !isSpace(text.charCodeAt(i))) i++;
    const factor = UNIT_US[text.slice(unitStart, i)];
    if (factor === undefined) return undefined;
    total += (neg ? -value : value) * factor;
    parts++;
  }
  return parts > 0 && Number.isFinite(total) ? total : undefined;
}

const FORMAT_UNITS: Array<[string, number]> = [
  ['d', 86_400_000_000],
  ['h', 3_600_000_000],
  ['m', 60_000_000],
  ['s', 1_000_000],
  ['ms', 1_000],
  ['us', 1],
];

/** Formats microseconds the way the reference server prints durations: `1d 1h`, `-1s`, `0us`. */
export function formatDuration(us: number): string {
  const parts: string[] = [];
  let rest = us;
  for (const [unit, size] of FORMAT_UNITS) {
    if (Math.abs(rest) >= size) {
      const n = Math.trunc(rest / size);
      parts.push(`${n}${unit}`);
      rest -= n * size;
    }
  }
  return parts.length === 0 ? '0us' : parts.join(' ');
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;
}
