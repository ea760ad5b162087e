/**
 * V8 heap growth for `ferry serve`. V8 grows its heap up to 4× the live data when allocation is
 * fast, and a server ingesting at full speed allocates fast: most of that growth is garbage (RSS
 * near 300 MB for ~50 MB live). A fixed growth factor of 2 brought peak RSS during 1 KiB batch
 * ingest down to about 220 MB in `npm run bench:store` at no measurable cost (README, "Memory"). `FERRY_HEAP_GROWING_PERCENT=0` restores V8's adaptive
 * default.
 */

/** Growth percent used when `FERRY_HEAP_GROWING_PERCENT` is unset or empty. */
const DEFAULT_PERCENT = 100;

/**
 * The V8 flag for a `FERRY_HEAP_GROWING_PERCENT` value: `--heap-growing-percent=<n>`, or undefined
 * for `0` (keep V8's default). Throws an Error with the user-facing message on anything but a
 * non-negative integer.
 */
export function heapGrowingFlag(value: string | undefined): string | undefined {
  const percent = value === undefined || value === '' ? DEFAULT_PERCENT : Number(value);
  if (!Number.isInteger(percent) || percent < 0) {
    throw new Error(`FERRY_HEAP_GROWING_PERCENT must be a non-negative integer, got '${value}'`);
  }
  return percent > 0 ? `--heap-growing-percent=${percent}` : undefined;
}
