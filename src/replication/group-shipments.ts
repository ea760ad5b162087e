/**
 * Shipment items of a consistency group's changes (replication.md §8): the engine's group windows
 * (cut at commit boundaries by the task, shipped by group-shipper.ts) become shipment items here,
 * each write with its record's payload read from the source; destination buckets get the member
 * names with `dstPrefix` prepended, and records written by this instance's clients carry its id
 * as their origin (loop prevention at the destination).
 */
import { FerryError } from '../protocol/errors.js';
import type { Change, ShipmentItem, Storage } from '../storage/types.js';

/** How {@link shipmentItemOf} names and marks an item. */
export interface ShipmentItemNaming {
  /** Prepended to the member's name at the destination. */
  dstPrefix?: string;
  /** This instance's id: the origin of records its own clients wrote. */
  sourceInstance: string;
}

/**
 * The shipment item of a member's change, with the record's payload for a write; undefined when
 * the record is gone at the source (removed before it was read: nothing left to send).
 */
export async function shipmentItemOf(
  storage: Pick<Storage, 'bucket' | 'hasBucket'>,
  c: Change,
  naming: ShipmentItemNaming,
): Promise<ShipmentItem | undefined> {
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
    return item;
  }
  if (!storage.hasBucket(c.bucket)) return undefined;
  try {
    const record = await storage.bucket(c.bucket).read(c.entry, c.ts);
    if (record.meta.state !== 'finished') return undefined;
    item.payload = await record.buffer();
  } catch (e) {
    if (e instanceof FerryError && (e.status === 404 || e.status === 409)) return undefined;
    throw e;
  }
  item.contentType = c.contentType;
  item.digest = c.digest;
  return item;
}
