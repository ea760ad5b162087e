/**
 * Attachment rules for `<entry>/$meta` records (api.md §14.1) that clients must follow: every record
 * needs a `key` label, and `remove=true` can only be set by a later label update (the tombstone).
 * The rule that writing key K replaces the records that already carry K is storage's
 * (`Bucket.write`), so that every writer — HTTP and replication targets alike — gets it.
 */
import { Errors } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';
import type { Labels } from '../storage/types.js';

/** Throws 422 when a record written into a `$meta` entry breaks the attachment rules. */
export function checkMetaWrite(entry: string, labels: Labels): void {
  if (!isMetaEntry(entry)) return;
  if (labels.key === undefined || labels.key === '') {
    throw Errors.unprocessable(`Records of '${entry}' must have a 'key' label`);
  }
  if (labels.remove === 'true') {
    throw Errors.unprocessable(`Records of '${entry}' can't be written with label 'remove=true'`);
  }
}
