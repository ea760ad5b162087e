/**
 * How the replication manager sets up a `src_group` replication (replication.md §8): checks of
 * the definition (the group exists; on this instance the destination buckets differ from the
 * members; a remote destination can apply atomically), and the destination and group run its
 * task gets. Kept out of the manager so that the manager only asks "is it a group?".
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors, isFerryError } from '../protocol/errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { Storage } from '../storage/types.js';
import type { GroupService } from './group-service.js';
import { GroupDestination, groupDestinationBucket } from './group-destination.js';
import { GroupRun, type GroupMemberCopy } from './group-run.js';
import { checkAtomicDestination, LocalGroupTarget, RemoteGroupTarget } from './group-target.js';
import type { ReplicationSettings } from './settings.js';
import type { Target } from './target.js';

/** What the manager needs of the groups. */
export type GroupMembership = Pick<GroupService, 'has' | 'members' | 'subscribe'>;

/** A remote destination as the manager resolved it. */
export interface GroupRemote {
  url: URL;
  token: string | null;
  timeoutMs: number;
  verifyTls: boolean;
  ca?: string;
}

/** The stream key of replication `name` at its destination. */
export const groupStreamKey = (instanceId: string, name: string): string => `${instanceId}:${name}`;

/** Group replications of one manager. */
export class GroupWiring {
  constructor(
    private readonly groups: GroupMembership | undefined,
    private readonly storage: Storage,
  ) {}

  /** Members of group `group` (404 when unknown, also when the server has no groups). */
  members(group: string): readonly string[] {
    if (!this.groups?.has(group)) throw Errors.groupNotFound(group);
    return this.groups.members(group);
  }

  /** Synchronous checks of a definition (`remote` = null: this instance). */
  validate(s: ReplicationSettings & { src_group: string }, remote: GroupRemote | null): void {
    const members = this.members(s.src_group);
    if (remote !== null) return;
    for (const m of members) {
      const dst = groupDestinationBucket(s.dst_prefix, m);
      if (dst === m || members.includes(dst))
        throw Errors.unprocessable(
          `Source and destination buckets must be different: member '${m}' would be copied to bucket '${dst}' of this instance (give a dst_prefix)`,
        );
    }
  }

  /**
   * A remote destination must apply shipments atomically: a plain ReductStore (or an older Ferry)
   * is refused with 422 saying why. One that cannot be reached now is accepted: its task checks
   * again before it ships anything, and suspends with the reason if it cannot.
   */
  async checkDestination(remote: GroupRemote | null): Promise<void> {
    if (remote === null) return;
    try {
      await checkAtomicDestination(remote);
    } catch (e) {
      if (isFerryError(e) && e.status === 422) throw e;
    }
  }

  /**
   * The group run of replication `name` and its destination: `bucketTarget(bucket)` makes the
   * per-bucket target (of the same kind) that creates a member's destination bucket.
   */
  run(
    name: string,
    s: ReplicationSettings & { src_group: string },
    remote: GroupRemote | null,
    bucketTarget: (bucket: string) => Target,
    copy?: { copy: GroupMemberCopy; onCopied: (member: string) => void },
  ): GroupRun {
    const key = groupStreamKey(this.storage.instanceId, name);
    const common = { dstPrefix: s.dst_prefix, bucketTarget, key };
    return new GroupRun({
      group: s.src_group,
      members: this.members(s.src_group),
      key,
      dstPrefix: s.dst_prefix,
      ...(copy ?? {}),
      destination: (members) =>
        remote === null
          ? new GroupDestination({ ...common, members, group: new LocalGroupTarget(this.storage) })
          : new GroupDestination({
              ...common,
              members,
              group: new RemoteGroupTarget(remote),
              checkAtomic: () => checkAtomicDestination(remote),
            }),
    });
  }

  /** Calls `fn` with a group's name whenever it was created, changed or removed. */
  subscribe(fn: (group: string) => void): () => void {
    return this.groups?.subscribe(fn) ?? (() => undefined);
  }
}

/** A member copy waiting or running (persisted until it is delivered). */
export interface PendingMemberCopy {
  member: string;
  lsn: bigint;
  /** The task began it: a restart resumes it from the checkpoint instead of starting afresh. */
  started: boolean;
  /** Names this copy's shipment streams (see `GroupMemberCopy.stream`); absent in older files. */
  stream?: string;
}

/** A new member copy of `member`, up to `lsn`, with streams of its own at the destination. */
export const newMemberCopy = (member: string, lsn: bigint): PendingMemberCopy => ({
  member,
  lsn,
  started: false,
  stream: randomBytes(8).toString('hex'),
});

/**
 * Member copies of group replication `name`, in order (`<dir>/<name>.group-copies.json`): a member
 * added to its group is copied before the log goes on, one member at a time.
 */
export class PendingCopies {
  private readonly file: string;

  constructor(
    dir: string,
    name: string,
    private readonly sync: boolean,
  ) {
    this.file = join(dir, `${name}.group-copies.json`);
  }

  async load(): Promise<PendingMemberCopy[]> {
    try {
      const parsed = parseJson(await readFile(this.file, 'utf8')) as { copies?: PendingMemberCopy[] };
      return (parsed.copies ?? []).map((c) => ({
        member: c.member,
        lsn: BigInt(c.lsn),
        started: c.started,
        ...(typeof c.stream === 'string' ? { stream: c.stream } : {}),
      }));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  save(copies: readonly PendingMemberCopy[]): Promise<void> {
    if (copies.length === 0) return this.remove();
    return writeFileAtomic(this.file, stringifyJson({ version: 1, copies }), { noSync: !this.sync });
  }

  remove(): Promise<void> {
    return rm(this.file, { force: true });
  }
}
