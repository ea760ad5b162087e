/**
 * The source side of a consistency group (replication.md §8, issue 12 item 2, first part): cuts
 * the one ordered change log into shipments of the member buckets' changes, in LSN order, and
 * only at commit boundaries (`Change.commitContinues`), so that every shipment ends at a state
 * the source held after some commit and a batch write is never split. Records are read when the
 * shipment is cut; destination buckets get the member names with `dstPrefix` prepended. The
 * engine (a group task) feeds `next` from its cursor and applies what it returns through a
 * `GroupTarget`.
 */
import { Errors, FerryError } from '../protocol/errors.js';
import { MAX_SHIPMENT_BYTES, MAX_SHIPMENT_ITEMS } from '../protocol/limits.js';
import type { Change, Shipment, ShipmentItem, Storage } from '../storage/types.js';

/** Options of a {@link GroupShipmentCutter}. */
export interface GroupCutOptions {
  /** The shipment stream's key at the destination (e.g. `<source instance>:<replication>`). */
  key: string;
  members: ReadonlySet<string>;
  /** Prepended to every member's name at the destination. */
  dstPrefix?: string;
  /** This instance's id: the origin of records its own clients wrote. */
  sourceInstance: string;
  /** Changes that came from the destination are not sent back (loop prevention, §4). */
  destinationInstance?: string;
  /** A shipment is closed at the first commit boundary at or past either bound. */
  maxRecords: number;
  maxBytes: number;
}

/** What {@link GroupShipmentCutter.next} found. */
export interface GroupCut {
  /** Changes to apply (undefined when the log held nothing of the members up to `position`). */
  shipment?: Shipment;
  /** Read cursor after the cut: a commit boundary (the next call reads after it). */
  position: bigint;
  /** Members' records removed at the source before they were read (nothing left to send). */
  vanished: number;
}

const READ_CHUNK = 2048;

export class GroupShipmentCutter {
  constructor(
    private readonly storage: Pick<Storage, 'changes' | 'bucket' | 'hasBucket'>,
    private readonly o: GroupCutOptions,
  ) {}

  /**
   * The next cut after `readFrom` (a commit boundary). `shipped` is the stream's position at the
   * destination (the previous shipment's `position`), the new shipment's `from`. Undefined when the
   * log has nothing complete after `readFrom`.
   */
  async next(readFrom: bigint, shipped: bigint): Promise<GroupCut | undefined> {
    const picked: Change[] = [];
    let bytes = 0;
    let after = readFrom;
    let boundary: bigint | undefined;
    let full = false;
    while (!full) {
      const changes = await this.storage.changes.read(after, READ_CHUNK);
      if (changes.length === 0) break;
      for (const c of changes) {
        after = c.lsn;
        if (this.wanted(c)) {
          picked.push(c);
          if (c.kind === 'write') bytes += c.size;
        }
        if (c.commitContinues) continue;
        boundary = c.lsn;
        if (picked.length >= this.o.maxRecords || bytes >= this.o.maxBytes) {
          full = true;
          break;
        }
      }
    }
    if (boundary === undefined) return undefined;
    const inShipment = picked.filter((c) => c.lsn <= boundary);
    if (inShipment.length > MAX_SHIPMENT_ITEMS)
      throw Errors.unprocessable(
        `A commit of the group's members holds ${inShipment.length} changes, more than a shipment may (${MAX_SHIPMENT_ITEMS})`,
      );
    const items: ShipmentItem[] = [];
    let vanished = 0;
    let payloadBytes = 0;
    for (const c of inShipment) {
      const item = await shipmentItemOf(this.storage, c, this.o);
      if (!item) {
        vanished++;
        continue;
      }
      payloadBytes += item.payload?.length ?? 0;
      items.push(item);
    }
    if (payloadBytes > MAX_SHIPMENT_BYTES)
      throw Errors.unprocessable(
        `A commit of the group's members holds ${payloadBytes} payload bytes, more than a shipment may (${MAX_SHIPMENT_BYTES})`,
      );
    const cut: GroupCut = { position: boundary, vanished };
    if (items.length > 0) cut.shipment = { key: this.o.key, from: shipped, position: boundary, items };
    return cut;
  }

  private wanted(c: Change): boolean {
    if (!this.o.members.has(c.bucket)) return false;
    const dst = this.o.destinationInstance;
    return !(dst && c.origin === dst);
  }
}

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
