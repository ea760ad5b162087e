/**
 * The `Target` of a consistency-group replication (replication.md §8): the one destination the
 * engine knows, for local and remote destinations alike. `prepare` checks that the destination
 * can apply shipments atomically (a plain ReductStore cannot: permanent, with the reason) and
 * creates each member's destination bucket through the per-bucket target of the same kind (so
 * `create_target` and `target_settings` mean what they mean for one bucket); shipments go through
 * a `GroupTarget`. Record-by-record writes are never used for a group: they would let readers see
 * a later record without an earlier one.
 */
import { Errors, isFerryError } from '../protocol/errors.js';
import type { Shipment, ShipmentOutcome } from '../storage/types.js';
import type { GroupTarget } from './group-target.js';
import { TargetError, type ItemOutcome, type Target } from './target.js';

/** Options of a {@link GroupDestination}. */
export interface GroupDestinationOptions {
  /** The members shipped now (live: a member added later is prepared at the next `prepare`). */
  members: () => readonly string[];
  /** Prepended to each member's name at the destination. */
  dstPrefix: string;
  /** The per-bucket target of destination bucket `bucket` (used for `prepare` only). */
  bucketTarget: (bucket: string) => Target;
  group: GroupTarget;
  /** The shipment stream's key (its applied position is read at every `prepare`). */
  key: string;
  /** Throws a 422 FerryError when the destination cannot apply atomically (remote only). */
  checkAtomic?: () => Promise<void>;
}

/** Destination bucket of member `member`. */
export const groupDestinationBucket = (prefix: string, member: string): string => `${prefix}${member}`;

/** A group replication's destination. */
export class GroupDestination implements Target {
  readonly description: string;
  private readonly buckets = new Map<string, Target>();
  private atomicChecked = false;
  private ok = false;
  /** The stream's applied position at the destination when `prepare` last succeeded. */
  appliedAtPrepare = 0n;
  /**
   * The highest position of the stream the destination confirmed (at `prepare` or applying a
   * shipment), persisted in the checkpoint: a destination position found below it later means the
   * destination lost applied shipments.
   */
  confirmed = 0n;

  constructor(private readonly o: GroupDestinationOptions) {
    this.description = o.group.description;
  }

  /** The destination's instance id, as its bucket targets learnt it at the last `prepare`. */
  private id = '';

  get instanceId(): string {
    return this.id;
  }

  get available(): boolean {
    return this.ok;
  }

  async prepare(): Promise<void> {
    this.ok = false;
    if (this.o.checkAtomic && !this.atomicChecked) {
      try {
        await this.o.checkAtomic();
      } catch (e) {
        // 422: no retry changes what the destination is
        if (isFerryError(e)) throw new TargetError(e.status, e.message, e.status !== 422);
        throw TargetError.from(e);
      }
      this.atomicChecked = true;
    }
    for (const member of this.o.members()) {
      const bucket = groupDestinationBucket(this.o.dstPrefix, member);
      let t = this.buckets.get(bucket);
      if (!t) this.buckets.set(bucket, (t = this.o.bucketTarget(bucket)));
      try {
        await t.prepare();
      } catch (e) {
        const err = TargetError.from(e);
        throw new TargetError(
          err.status,
          `Group member '${member}': ${err.message}`,
          err.temporary,
          err.retryAfterMs,
        );
      }
    }
    // taken before asking: an apply confirmed meanwhile is not one the answer must reflect
    const confirmed = this.confirmed;
    const position = await this.o.group.position(this.o.key);
    if (position < confirmed) {
      // shipping on from `confirmed` would leave a hole; from `position`, the log no longer has it all
      const e = Errors.groupDestinationWentBack(this.o.key, position, confirmed);
      throw new TargetError(e.status, e.message, false);
    }
    this.appliedAtPrepare = position;
    if (position > this.confirmed) this.confirmed = position;
    this.id = [...this.buckets.values()].find((t) => t.instanceId)?.instanceId ?? '';
    this.ok = true;
  }

  /** Applies one shipment atomically (see `GroupTarget.apply`). Throws TargetError. */
  async apply(shipment: Shipment): Promise<ShipmentOutcome> {
    try {
      const outcome = await this.o.group.apply(shipment);
      if (shipment.key === this.o.key && outcome.position > this.confirmed) this.confirmed = outcome.position;
      return outcome;
    } catch (e) {
      this.ok = false;
      throw e;
    }
  }

  write(): Promise<ItemOutcome[]> {
    return Promise.reject(new TargetError(-1, 'A group replication applies whole shipments only', false));
  }

  update(): Promise<ItemOutcome[]> {
    return this.write();
  }

  async reset(): Promise<void> {
    await this.o.group.reset();
    await Promise.all([...this.buckets.values()].map((t) => t.reset().catch(() => undefined)));
  }

  async close(): Promise<void> {
    await this.o.group.close().catch(() => undefined);
    await Promise.all([...this.buckets.values()].map((t) => t.close().catch(() => undefined)));
  }
}
