/**
 * Attachment rules for `<entry>/$meta` records (api.md §14.1): every record needs a `key` label,
 * `remove=true` can only be set by a later label update (the tombstone), and writing key K
 * replaces the records that already carry K.
 */
import { Errors } from '../protocol/errors.js';
import { U64_MAX } from '../protocol/json.js';
import { isMetaEntry } from '../protocol/names.js';
import type { Bucket, Labels } from '../storage/types.js';

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

/**
 * After a `$meta` record with key K was stored at `ts`, removes the other records with key K so
 * that the newest write wins (upsert). No-op for ordinary entries.
 */
export async function replaceOlderAttachments(
  bucket: Bucket,
  entry: string,
  ts: bigint,
  labels: Labels,
): Promise<void> {
  if (!isMetaEntry(entry) || labels.key === undefined) return;
  const stale: bigint[] = [];
  for await (const record of bucket.scan(entry, 0n, U64_MAX)) {
    if (record.meta.ts !== ts && record.meta.labels.key === labels.key) stale.push(record.meta.ts);
  }
  for (const old of stale) {
    try {
      await bucket.removeRecord(entry, old);
    } catch (e) {
      // Already gone (concurrent upsert of the same key): nothing left to replace.
      if ((e as { status?: number }).status !== 404) throw e;
    }
  }
}
