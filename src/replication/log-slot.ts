/**
 * The storage slot of a replication (replication.md §11): it pins the change log after the
 * replication's position and protects unshipped records from FIFO eviction within `log.max_bytes`.
 * Names, bounds and how a task restores it at start from its checkpoint's position.
 */
import type { ChangeLog } from '../storage/types.js';
import type { EffectiveSettings } from './settings.js';

/** Name of the change-log slot of a replication. */
export const slotName = (name: string): string => `replication/${name}`;

/** Storage slot bound for the log settings (`max_bytes: 0` = protect without bound). */
export const slotMaxBytes = (s: EffectiveSettings): number =>
  s.log.max_bytes === 0 ? Number.MAX_SAFE_INTEGER : s.log.max_bytes;

/** Storage overflow policy: `block` refuses source writes (503) past the bound. */
export const slotOverflow = (s: EffectiveSettings): 'evict' | 'block' =>
  s.log.on_overflow === 'block' ? 'block' : 'evict';

/**
 * Where a task resumes: its checkpoint's position, else its slot's, else the log's end. A position
 * past the log's end (the log was reset or lost its tail) moves back to the end, with the reason:
 * the positions after the end will be given to new writes, which must be shipped, and what was
 * shipped beyond it is unknown (verify).
 */
export function resumePosition(
  log: ChangeLog,
  name: string,
  saved: bigint | undefined,
): { lsn: bigint; lostTail: string | null } {
  const lsn = saved ?? log.getSlot(slotName(name))?.lsn ?? log.lastLsn();
  const last = log.lastLsn();
  if (lsn <= last) return { lsn, lostTail: null };
  return {
    lsn: last,
    lostTail: `The source's change log ends at LSN ${last}, before this replication's cursor ${lsn}; the cursor was moved back to the log's end; verify the destination`,
  };
}

/**
 * Makes the slot match the settings and `lsn` (created, replaced, or advanced). A group's
 * replication gives its `members`: the slot protects every one of them (a member added later
 * restarts the task, which comes here again).
 */
export async function restoreSlot(
  log: ChangeLog,
  name: string,
  s: EffectiveSettings,
  lsn: bigint,
  members?: readonly string[],
): Promise<void> {
  const slot = log.getSlot(slotName(name));
  const maxBytes = slotMaxBytes(s);
  const onOverflow = slotOverflow(s);
  const buckets = members === undefined ? undefined : [...members].sort();
  if (
    !slot ||
    slot.bucket !== s.src_bucket ||
    !sameBuckets(slot.buckets, buckets) ||
    slot.maxBytes !== maxBytes ||
    (slot.onOverflow ?? 'evict') !== onOverflow ||
    slot.lsn > lsn
  ) {
    await log.setSlot({
      name: slotName(name),
      bucket: s.src_bucket,
      ...(buckets !== undefined ? { buckets } : {}),
      lsn,
      maxBytes,
      onOverflow,
    });
  } else if (slot.lsn < lsn) {
    log.advanceSlot(slotName(name), lsn);
  }
}

function sameBuckets(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
