/** Record labels as they travel in `x-reduct-label-<name>` headers and JSON (api.md §8.1). */

/** Label name → value. Names arrive lower-case through HTTP headers. */
export type Labels = Record<string, string>;

/** True when two label sets hold the same names with the same values. */
export function sameLabels(a: Labels, b: Labels): boolean {
  if (a === b) return true;
  const keys = Object.keys(b);
  if (keys.length !== Object.keys(a).length) return false;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}
