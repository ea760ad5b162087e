/**
 * What a replication task needs to run a consistency group (replication.md §8) on the one engine:
 * the scope (the members, live), the shipper that turns each window into one atomic shipment, and
 * the group's part of the status. The task reads the one change log as for a bucket, with the
 * members as its scope, and seals windows only at commit boundaries (`Change.commitContinues`).
 */
import type { Storage } from '../storage/types.js';
import type { Counters } from './checkpoint-store.js';
import type { Diagnostics } from './diagnostics.js';
import type { GroupDestination } from './group-destination.js';
import { GroupShipper } from './group-shipper.js';
import type { GroupStatus } from '../protocol/replication-status.js';
import type { Shipper } from './shipper.js';

/** The `group` object of a group replication's status (and its events and active task). */
export type GroupRunStatus = GroupStatus;

/** Options of a {@link GroupRun}. */
export interface GroupRunOptions {
  /** Name of the consistency group. */
  group: string;
  members: readonly string[];
  /** Makes the destination, given the live member list. */
  destination: (members: () => readonly string[]) => GroupDestination;
  /** The stream's key at the destination. */
  key: string;
  dstPrefix: string;
  /** A member added while the group was replicated, copied before the log goes on. */
  copy?: GroupMemberCopy;
  /** Called once the member copy is delivered (the manager goes on with the next one). */
  onCopied?: (member: string) => void;
}

/**
 * The copy of a member added to a replicated group: its records committed up to `lsn` (the
 * replication's cursor when it was added; later ones come from the log, in order).
 */
export interface GroupMemberCopy {
  member: string;
  lsn: bigint;
  /**
   * Tells this copy's shipment streams from those of an earlier copy of the same member (one
   * removed from the group and added again): an old stream's position would skip its batches.
   */
  stream?: string;
}

/** A group replication's part of its checkpoint (survives restarts with the cursor). */
export interface GroupCheckpoint {
  /** Per-member figures as status shows them. */
  members: GroupRunStatus['members'];
  /** The destination `confirmed` belongs to (`local` or its URL): another one starts afresh. */
  destination: string;
  /** The stream position the destination confirmed last (see `GroupDestination.confirmed`). */
  confirmed: bigint;
}

/** The group side of one replication task. */
export class GroupRun {
  /** Members in scope (a live set: the task's scope filter reads it). */
  readonly members: Set<string>;
  /** The task's target. */
  readonly destination: GroupDestination;
  private shipper: GroupShipper | null = null;

  /** The member copy this run makes first, if any. */
  readonly copy: GroupMemberCopy | undefined;

  constructor(private readonly o: GroupRunOptions) {
    this.copy = o.copy;
    this.members = new Set(o.members);
    this.destination = o.destination(() => [...this.members]);
  }

  /** The task's shipper: windows as shipments, through the engine's watchdog. */
  makeShipper(ctx: {
    storage: Storage;
    watchdog: Pick<Shipper, 'guard' | 'overflowUpTo'>;
    diagnostics: Diagnostics;
    counters(): Counters;
  }): GroupShipper {
    this.shipper = new GroupShipper({
      ...ctx,
      destination: this.destination,
      key: this.o.key,
      dstPrefix: this.o.dstPrefix,
      ...(this.o.copy?.stream === undefined ? {} : { copyStream: this.o.copy.stream }),
    });
    return this.shipper;
  }

  /** What the checkpoint keeps of the group. */
  checkpoint(): GroupCheckpoint {
    return {
      members: this.shipper?.figures([...this.members].sort()) ?? [],
      destination: this.destination.description,
      confirmed: this.destination.confirmed,
    };
  }

  /** Takes back what a checkpoint kept (after `makeShipper`, before anything ships). */
  restore(cp: GroupCheckpoint): void {
    if (cp.destination === this.destination.description) this.destination.confirmed = BigInt(cp.confirmed);
    this.shipper?.restore(cp.members ?? []);
  }

  /** The task delivered the member copy. */
  copied(): void {
    if (this.copy) this.o.onCopied?.(this.copy.member);
  }

  /** The group's part of the task's status; `cursor` is the task's committed position. */
  status(cursor: bigint): { group: GroupRunStatus } {
    const members = [...this.members].sort();
    return {
      group: {
        name: this.o.group,
        delivered_lsn: cursor,
        stream: this.o.key,
        ...(this.copy ? { copying: this.copy.member } : {}),
        members: this.shipper?.figures(members) ?? [],
      },
    };
  }
}
