/**
 * Bucket permission items (api.md §5.1): exact names, or prefixes ending in `*`. Wildcards never
 * match buckets whose name starts with `$`; those need the literal item (e.g. `"$system"`).
 */

/** True when one of the items grants access to the bucket. */
export function matchesBucket(items: readonly string[], bucket: string): boolean {
  const special = bucket.startsWith('$');
  for (const item of items) {
    if (item === bucket) return true;
    if (!special && item.endsWith('*') && bucket.startsWith(item.slice(0, -1))) return true;
  }
  return false;
}

const ITEM = /^[*a-zA-Z0-9_-]+$/;
// `$`-items name special buckets literally (`$system`); a wildcard in them would never match.
const SPECIAL_ITEM = /^\$[a-zA-Z0-9_-]+$/;

/** True when the item is an allowed `read`/`write` entry. */
export function isValidPermissionItem(item: string): boolean {
  return ITEM.test(item) || SPECIAL_ITEM.test(item);
}
