/**
 * Bucket and entry name rules (api.md §3.7, §14.1).
 *
 * Names are used as path components by the storage engine, so anything accepted here must be
 * unable to escape a directory: only ASCII letters, digits, `-` and `_` are allowed in a segment,
 * which rules out `.`/`..`, backslashes, NUL bytes and absolute paths by construction.
 */
import { Errors } from './errors.js';
import { MAX_ENTRY_NAME_BYTES } from './limits.js';

/** Suffix of attachment entries (`<entry>/$meta`). */
export const META_SUFFIX = '/$meta';

const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** Names become directory names: keep every path component within common file-system limits. */
export const MAX_NAME_BYTES = 255;

/** True if `name` is a valid bucket name (non-empty, `^[A-Za-z0-9_-]+$`). */
export function isValidBucketName(name: string): boolean {
  return name.length <= MAX_NAME_BYTES && SEGMENT.test(name);
}

/**
 * Validates a bucket name. Throws 422 `Bucket or entry name can contain only letters, digests and
 * [-,_] symbols`. The empty name is rejected too: it would address the data directory itself.
 */
export function validateBucketName(name: string): void {
  if (!isValidBucketName(name)) throw Errors.invalidName();
}

/** Options of `validateEntryName`. */
export interface EntryNameOptions {
  /** Accept the `/$meta` attachment suffix (default false). */
  allowMeta?: boolean;
}

/** True if `name` is a valid entry name under the given options. */
export function isValidEntryName(name: string, opts: EntryNameOptions = {}): boolean {
  let base = name;
  if (isMetaEntry(name)) {
    if (!opts.allowMeta) return false;
    base = metaParent(name);
  }
  if (base.length === 0 || name.length > MAX_ENTRY_NAME_BYTES) return false;
  // split keeps empty strings for leading/trailing/double slashes, which SEGMENT rejects
  for (const segment of base.split('/')) {
    if (segment.length > MAX_NAME_BYTES || !SEGMENT.test(segment)) return false;
  }
  return true;
}

/**
 * Validates an entry name: segments of letters, digits, `-` and `_` separated by `/`, no leading
 * or trailing `/`, no empty segment; `<entry>/$meta` only with `allowMeta`.
 * Throws 422 `Invalid entry name '<name>'`.
 */
export function validateEntryName(name: string, opts: EntryNameOptions = {}): void {
  // Segments are ASCII, so characters are bytes; the name itself is not echoed back.
  if (name.length > MAX_ENTRY_NAME_BYTES)
    throw Errors.fieldTooLong('Entry name', name.length, MAX_ENTRY_NAME_BYTES);
  if (!isValidEntryName(name, opts)) throw Errors.invalidEntryName(name);
}

/** True for attachment entries (`<parent>/$meta`). Does not validate the parent. */
export function isMetaEntry(name: string): boolean {
  return name.endsWith(META_SUFFIX) && name.length > META_SUFFIX.length;
}

/** The parent entry of an attachment entry (`a/b/$meta` → `a/b`); the name itself otherwise. */
export function metaParent(name: string): string {
  return isMetaEntry(name) ? name.slice(0, -META_SUFFIX.length) : name;
}
