/**
 * Shipment items of a consistency group's changes (replication.md §8): the engine's group windows
 * (cut at commit boundaries by the task, shipped by group-shipper.ts) become shipment items here,
 * each write with its record's payload read from the source (adjacent payloads at once); destination buckets get the member
 * names with `dstPrefix` prepended, and records written by this instance's clients carry its id
 * as their origin (loop prevention at the destination).
 */
import { FerryError } from '../protocol/errors.js';
import { readPayloads, STORED_PAYLOAD } from '../storage/payload-chunks.js';
import type { Change, ShipmentItem, Storage, StoredRecord } from '../storage/types.js';
import { mapLimit } from './map-limit.js';

/** How {@link shipmentItemOf} names and marks an item. */
export interface ShipmentItemNaming {
  /** Prepended to the member's name at the destination. */
  dstPrefix?: string;
  /** This instance's id: the origin of records its own clients wrote. */
  sourceInstance: string;
}

/** Source records looked up at once while a shipment is put together. */
const LOOKUP_CONCURRENCY = 32;

/**
 * The shipment items of a member's changes (in order), with the records' payloads for writes;
 * undefined for a record gone at the source (removed before it was read: nothing left to send).
 * Payloads that lie back to back in a block file are read at once (one read per record cost more
 * than the rest of a shipment at the source).
 */
export async function shipmentItemsOf(
  storage: Pick<Storage, 'bucket' | 'hasBucket'>,
  changes: readonly Change[],
  naming: ShipmentItemNaming,
): Promise<Array<ShipmentItem | undefined>> {
  const records = await mapLimit(changes, LOOKUP_CONCURRENCY, (c) => storedRecordOf(storage, c));
  const found: StoredRecord[] = [];
  for (const r of records) if (r) found.push(r);
  let payloads: Buffer[] | undefined;
  try {
    payloads = await readPayloads(found, STORED_PAYLOAD);
  } catch {
    // one record removed meanwhile fails its run: read them one by one, the gone ones left out
  }
  const out = new Array<ShipmentItem | undefined>(changes.length);
  let k = 0;
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    const item: ShipmentItem = {
      kind: c.kind,
      bucket: `${naming.dstPrefix ?? ''}${c.bucket}`,
      entry: c.entry,
      ts: c.ts,
      lsn: c.lsn,
      labels: c.labels,
      origin: c.origin || naming.sourceInstance,
    };
    if (c.kind === 'update') {
      item.removedLabels = c.removedLabels ?? [];
      out[i] = item;
      continue;
    }
    const record = records[i];
    if (!record) continue;
    const payload = payloads ? payloads[k++] : await payloadOf(record);
    if (!payload) continue;
    item.payload = payload;
    item.contentType = c.contentType;
    item.digest = c.digest;
    out[i] = item;
  }
  return out;
}

const gone = (e: unknown): boolean => e instanceof FerryError && (e.status === 404 || e.status === 409);

/** The finished source record of a write (undefined for an update, or when it is gone). */
async function storedRecordOf(
  storage: Pick<Storage, 'bucket' | 'hasBucket'>,
  c: Change,
): Promise<StoredRecord | undefined> {
  if (c.kind === 'update' || !storage.hasBucket(c.bucket)) return undefined;
  try {
    const record = await storage.bucket(c.bucket).read(c.entry, c.ts);
    return record.meta.state === 'finished' ? record : undefined;
  } catch (e) {
    if (gone(e)) return undefined;
    throw e;
  }
}

async function payloadOf(record: StoredRecord): Promise<Buffer | undefined> {
  try {
    return await record.buffer();
  } catch (e) {
    if (gone(e)) return undefined;
    throw e;
  }
}
