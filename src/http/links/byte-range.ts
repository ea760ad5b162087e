/**
 * The `Range` request header for one record (RFC 9110 §14): a single `bytes=` range. Query links
 * (api.md §15) answer 206 for a satisfiable range and 416 for an unsatisfiable one. A header that
 * is not a single well-formed byte range is ignored (the whole record is sent, as RFC 9110 allows).
 */

/** An inclusive byte range within a payload. */
export interface ByteRange {
  start: number;
  end: number;
}

const SINGLE = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i;

/**
 * The range a `Range` header selects in a payload of `size` bytes: undefined = send everything,
 * `'unsatisfiable'` = 416.
 */
export function parseByteRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = SINGLE.exec(header);
  if (!m) return undefined;
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    // suffix range: the last N bytes
    const n = Number(last);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (end < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}
