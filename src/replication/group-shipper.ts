/**
 * Shipping for a consistency group (replication.md §8): the engine's windows of a group end at
 * commit boundaries, and each window goes to the destination as ONE shipment that it applies
 * atomically and idempotently (`GroupDestination.apply`), so a reader of the destination members
 * sees the source's state after some commit, never a later record without an earlier one.
 *
 * Shipments of the stream chain: each starts at the position of the one issued before it (the
 * destination refuses one that starts beyond what it applied, so a lost shipment cannot be
 * skipped over). Windows are issued in commit order and re-sent in that order after a failure;
 * a refusal for a gap is therefore temporary (the earlier window is re-sent first).
 *
 * Per-member figures (what each member shipped, and the last LSN of it delivered) are kept for
 * status and in the checkpoint (as the counters are); the task's counters get the totals.
 */
import type { GroupMemberStatus } from '../protocol/replication-status.js';
import { createHash } from 'node:crypto';
import type { Shipment, ShipmentItem, ShipmentOutcome, Storage } from '../storage/types.js';
import type { Counters } from './checkpoint-store.js';
import type { Diagnostics } from './diagnostics.js';
import { groupDestinationBucket, type GroupDestination } from './group-destination.js';
import { shipmentItemsOf } from './group-shipments.js';
import type { Shipper } from './shipper.js';
import { TargetError } from './target.js';
import type { Window } from './window.js';

/** What a member shipped (status `group.members[]`). */
export type GroupMemberFigures = GroupMemberStatus;

/** What a {@link GroupShipper} works with. */
export interface GroupShipperContext {
  storage: Pick<Storage, 'bucket' | 'hasBucket' | 'instanceId'>;
  destination: GroupDestination;
  /** The stream's key at the destination (`<source instance>:<replication>`). */
  key: string;
  dstPrefix: string;
  /** The member copy's own stream name (`GroupMemberCopy.stream`), when it has one. */
  copyStream?: string;
  diagnostics: Diagnostics;
  counters(): Counters;
  /**
   * The engine's shipper: its watchdog runs every destination call, and it knows up to where FIFO
   * quotas may have evicted changes before they were shipped (`overflowUpTo`).
   */
  watchdog: Pick<Shipper, 'guard' | 'overflowUpTo'>;
}

/** Whether `e` is the destination's refusal of a shipment that starts after its position. */
const isGap = (e: TargetError): boolean =>
  e.status === 409 && /Shipment of stream .* starts after/.test(e.message);

/** Delivers a group's windows as atomic shipments. */
export class GroupShipper {
  private issued: bigint | undefined;
  private readonly froms = new WeakMap<Window, bigint>();
  private readonly members = new Map<string, GroupMemberFigures>();
  /** Settles once the shipment launched last has been handed to the destination. */
  private readonly logChain: { handedOver: Promise<void> } = { handedOver: Promise.resolve() };
  /** Per member-copy stream: the batch launched last (handed over) and the position planned for it. */
  private readonly copyChains = new Map<string, { handedOver: Promise<void>; position: bigint }>();
  private readonly copyPlans = new WeakMap<Window, { key: string; from: bigint; position: bigint }>();

  constructor(private readonly ctx: GroupShipperContext) {}

  /** The engine's watchdog (the task calls it for `prepare`). */
  guard<T>(what: string, bytes: number, call: () => Promise<T>): Promise<T> {
    return this.ctx.watchdog.guard(what, bytes, call);
  }

  /** Delivers window `w` as one shipment; sets its status. */
  async ship(w: Window): Promise<void> {
    if (w.copy) return this.shipCopy(w);
    // Assigned before the first await: windows are launched in commit order.
    let from = this.froms.get(w);
    if (from === undefined) {
      from = this.issued ?? this.ctx.destination.appliedAtPrepare;
      this.froms.set(w, from);
      if (w.endLsn > from) this.issued = w.endLsn;
    }
    if (w.endLsn <= from) {
      // applied before a restart of the source (its cursor is persisted lazily): nothing to send
      this.ctx.counters().records_already_present += w.remaining.length;
      this.delivered([], w);
      w.remaining = [];
      w.status = 'done';
      return;
    }
    // Shipments reach the destination in launch order, whichever is read first.
    await this.shipInOrder(w, this.logChain, 'Shipment', (items) => ({
      key: this.ctx.key,
      from,
      position: w.endLsn,
      items,
    }));
  }

  /**
   * A batch of a member copy (one entry, ascending timestamps): one shipment on a stream of its
   * own per member entry and copy, positioned by timestamp, so that a batch re-sent after a
   * restart is skipped and copies of several entries may be in flight together. A later copy of
   * the same member (removed and added again) has streams of its own: at the old ones' positions,
   * records written meanwhile with older timestamps would be skipped as applied. The batches of one entry
   * chain as the log's shipments do (each starts at the position planned for the one launched
   * before it, and reaches the destination after it): a later batch applied first would make the
   * destination skip an earlier one as applied already.
   */
  private async shipCopy(w: Window): Promise<void> {
    const plan = this.copyPlan(w);
    await this.shipInOrder(w, this.copyChains.get(plan.key)!, 'Member copy', (items) => {
      // positions of a copy stream are timestamps (+1: position 0 is "nothing applied")
      for (const it of items) it.lsn = it.ts + 1n;
      // sent even when every record is gone: the next batch starts at its position
      return { key: plan.key, from: plan.from, position: plan.position, items };
    });
  }

  /**
   * Reads `w` and applies it as the shipment `shipmentOf` makes, handed to the destination after
   * the one launched before it on `chain` (reads may finish in any order); sets `w`'s status.
   */
  private async shipInOrder(
    w: Window,
    chain: { handedOver: Promise<void> },
    what: string,
    shipmentOf: (items: ShipmentItem[]) => Shipment,
  ): Promise<void> {
    const previous = chain.handedOver;
    let handOver!: () => void;
    chain.handedOver = new Promise((resolve) => (handOver = resolve));
    try {
      const { items, bytes } = await this.read(w);
      const shipment = shipmentOf(items);
      await previous;
      const outcome = await this.guard(what, bytes, () => {
        const applying = this.ctx.destination.apply(shipment);
        handOver();
        return applying;
      });
      this.count(items, bytes, outcome);
      this.delivered(items, w);
      w.remaining = [];
      w.status = 'done';
    } catch (e) {
      handOver();
      this.failed(e, w);
    }
  }

  /** Key, start and position of a copy batch, fixed when it is first launched (in launch order). */
  private copyPlan(w: Window): { key: string; from: bigint; position: bigint } {
    let plan = this.copyPlans.get(w);
    if (plan) return plan;
    const first = w.remaining[0]!.change;
    const hash = createHash('sha256');
    if (this.ctx.copyStream !== undefined) hash.update(`${this.ctx.copyStream}\n`);
    const tag = hash.update(first.entry).digest('hex').slice(0, 16);
    const key = `${this.ctx.key}:copy:${first.bucket}:${tag}`;
    let last = first.ts;
    for (const i of w.remaining) if (i.change.ts > last) last = i.change.ts;
    let chain = this.copyChains.get(key);
    if (!chain) this.copyChains.set(key, (chain = { handedOver: Promise.resolve(), position: 0n }));
    plan = { key, from: chain.position, position: last + 1n };
    if (plan.position > chain.position) chain.position = plan.position;
    this.copyPlans.set(w, plan);
    return plan;
  }

  /** The shipment items of a window's changes, records read concurrently (gone ones counted). */
  private async read(w: Window): Promise<{ items: ShipmentItem[]; bytes: number }> {
    const naming = { dstPrefix: this.ctx.dstPrefix, sourceInstance: this.ctx.storage.instanceId };
    const read = await shipmentItemsOf(
      this.ctx.storage,
      w.remaining.map((i) => i.change),
      naming,
    );
    const items: ShipmentItem[] = [];
    let bytes = 0;
    const counters = this.ctx.counters();
    const overflowUpTo = this.ctx.watchdog.overflowUpTo();
    for (let k = 0; k < read.length; k++) {
      const item = read[k];
      if (!item) {
        // as the shipper counts them: evicted by a FIFO quota (copy changes have no LSN) or gone
        const lsn = w.remaining[k]!.change.lsn;
        if (lsn > 0n && lsn <= overflowUpTo) counters.records_dropped_overflow++;
        else counters.records_missing_at_source++;
        continue;
      }
      items.push(item);
      bytes += item.payload?.length ?? 0;
    }
    return { items, bytes };
  }

  private count(items: readonly ShipmentItem[], bytes: number, outcome: ShipmentOutcome): void {
    const counters = this.ctx.counters();
    counters.records_read += items.length;
    counters.bytes_read += bytes;
    counters.records_written += outcome.written;
    counters.bytes_written += outcome.written > 0 ? this.writtenBytes(items, outcome.present) : 0;
    // changes the stream had applied already (a re-sent shipment) are present as well
    counters.records_already_present += outcome.present + outcome.skipped;
    counters.label_updates_written += outcome.updated;
    this.ctx.diagnostics.addOk(items.length);
  }

  private failed(e: unknown, w: Window): void {
    const err = TargetError.from(e);
    this.ctx.diagnostics.addError(err.status, err.message, w.remaining.length);
    const temporary = err.temporary || isGap(err);
    w.status = temporary ? 'temp_failed' : 'perm_failed';
    w.error = { ...err.toFailure(), message: this.describe(err, w) };
  }

  /** Payload bytes written (all but the present ones, which the outcome does not name: estimated). */
  private writtenBytes(items: readonly ShipmentItem[], present: number): number {
    let bytes = 0;
    let writes = 0;
    for (const it of items) {
      if (it.kind !== 'write') continue;
      writes++;
      bytes += it.payload?.length ?? 0;
    }
    return writes === 0 ? 0 : Math.round((bytes * (writes - present)) / writes);
  }

  private delivered(items: readonly ShipmentItem[], w: Window): void {
    for (const { change } of w.items) {
      const m = this.member(change.bucket);
      if (change.lsn > m.delivered_lsn) m.delivered_lsn = change.lsn;
    }
    for (const it of items) {
      const m = this.member(it.bucket.slice(this.ctx.dstPrefix.length));
      if (it.kind === 'write') {
        m.records_shipped++;
        m.bytes_shipped += it.payload?.length ?? 0;
      } else m.label_updates_shipped++;
    }
  }

  private member(bucket: string): GroupMemberFigures {
    let m = this.members.get(bucket);
    if (!m) {
      m = {
        bucket,
        destination_bucket: groupDestinationBucket(this.ctx.dstPrefix, bucket),
        records_shipped: 0,
        bytes_shipped: 0,
        label_updates_shipped: 0,
        delivered_lsn: 0n,
      };
      this.members.set(bucket, m);
    }
    return m;
  }

  /** A failure's message naming the member whose destination bucket refused (when one did). */
  private describe(err: TargetError, w: Window): string {
    const buckets = new Set(w.remaining.map((i) => i.change.bucket));
    for (const member of buckets) {
      const dst = groupDestinationBucket(this.ctx.dstPrefix, member);
      if (err.message.includes(`'${dst}'`))
        return `Group member '${member}' (destination bucket '${dst}'): ${err.message}`;
    }
    return err.message;
  }

  /** Takes back figures a checkpoint kept (u64 fields may come back as JSON numbers). */
  restore(figures: readonly GroupMemberFigures[]): void {
    for (const f of figures) {
      const m = this.member(f.bucket);
      m.records_shipped = f.records_shipped;
      m.bytes_shipped = f.bytes_shipped;
      m.label_updates_shipped = f.label_updates_shipped;
      m.delivered_lsn = BigInt(f.delivered_lsn);
    }
  }

  /** Figures of `members` (in that order), for status. */
  figures(members: readonly string[]): GroupMemberFigures[] {
    return members.map((b) => ({ ...this.member(b) }));
  }
}
