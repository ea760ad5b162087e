/**
 * Batching (replication.md §3 `batch`): a window is a group of changes shipped and committed
 * together, from either source (log or scan). It seals when one destination request group reaches
 * `max_records`, when all its groups together reach `WINDOW_GROUPS` × `max_records`, or at
 * `max_bytes`; the task seals a partial window at once while the pipeline has room, and after
 * `max_delay_ms` when it is busy. Only data and rules: no I/O, no clock of its own.
 */
import type { Change } from '../storage/types.js';
import type { ScanBatch } from './scan-source.js';
import type { BatchSettings } from './settings.js';
import type { TargetFailure } from './target.js';

/** One change in a window. */
export interface Item {
  change: Change;
  /** Request group of the change (see `groupKey`). */
  key: string;
}

/** A batch of changes shipped and committed together. */
export interface Window {
  /** Commit point: every change with lsn <= endLsn is covered by this and earlier windows. */
  endLsn: bigint;
  items: Item[];
  /** In-scope changes covered (pending accounting): records, and payload bytes ({@link payloadBytes}). */
  scopeRecords: number;
  scopeBytes: number;
  /** `when` state after evaluating up to endLsn (null = stateless condition). */
  filter: Record<string, unknown> | null;
  openedAt: number;
  bytes: number;
  /** Items per destination request group (see `groupKey`) and the largest count. */
  groups: Map<string, number>;
  largestGroup: number;
  status: 'building' | 'sending' | 'done' | 'temp_failed' | 'perm_failed';
  /** Items not delivered yet (replaced, never changed in place). */
  remaining: Item[];
  error?: TargetFailure;
  /** Settles when the current send attempt is over. */
  sending?: Promise<void>;
  /** `recordKey`s of its items, built when an overlap with another window must be checked. */
  records?: Set<string>;
  /** Per entry, the timestamp range of its items, built on the first overlap check. */
  ranges?: TsRanges;
  /** A window of the scan source (initial copy): its batch and the copy's `when` state after it. */
  copy?: { batch: ScanBatch; filter: Record<string, unknown> | null };
}

/** The source record a change is about. */
export const recordKey = (c: Change): string => `${c.entry}\u0000${c.ts}`;

/** Per entry, the lowest and highest timestamp of some changes. */
export type TsRanges = Map<string, { min: bigint; max: bigint }>;

/** The per-entry timestamp ranges of `items`. */
export function tsRanges(items: readonly Item[]): TsRanges {
  const out: TsRanges = new Map();
  for (const { change: c } of items) {
    const r = out.get(c.entry);
    if (!r) out.set(c.entry, { min: c.ts, max: c.ts });
    else if (c.ts < r.min) r.min = c.ts;
    else if (c.ts > r.max) r.max = c.ts;
  }
  return out;
}

/**
 * Whether the timestamp ranges of some entry meet: only then can two windows hold changes of one
 * record (windows of a backlog hold ranges that follow each other, so a check is one comparison
 * per entry, not a key per record).
 */
export function rangesMeet(a: TsRanges, b: TsRanges): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const [entry, r] of small) {
    const o = large.get(entry);
    if (o && r.min <= o.max && o.min <= r.max) return true;
  }
  return false;
}

/** Payload bytes a change ships: a write's record size; a label update carries no payload. */
export const payloadBytes = (c: Change): number => (c.kind === 'write' ? c.size : 0);

/** Changes shipped in one request share kind, entry and origin. */
export const groupKey = (c: Change): string => `${c.kind}\u0000${c.entry}\u0000${c.origin}`;

/**
 * A window seals when one request group reaches `max_records`, or at this many times
 * `max_records` over all groups (many small entries), or at `max_bytes`.
 */
export const WINDOW_GROUPS = 4;

/** An empty window whose commit point is `endLsn`, opened at `now`. */
export function newWindow(endLsn: bigint, now: number): Window {
  return {
    endLsn,
    items: [],
    scopeRecords: 0,
    scopeBytes: 0,
    filter: null,
    openedAt: now,
    bytes: 0,
    groups: new Map(),
    largestGroup: 0,
    status: 'building',
    remaining: [],
  };
}

/** Adds a change that passed the scope filter (group `key`). */
export function addItem(w: Window, c: Change, key: string): void {
  w.items.push({ change: c, key });
  const n = (w.groups.get(key) ?? 0) + 1;
  w.groups.set(key, n);
  if (n > w.largestGroup) w.largestGroup = n;
  w.bytes += payloadBytes(c);
}

/** Whether adding change `c` of group `key` would pass a limit: the window must seal first. */
export function wouldOverflow(w: Window, c: Change, key: string, limits: BatchSettings): boolean {
  return (
    w.items.length > 0 &&
    ((w.groups.get(key) ?? 0) >= limits.max_records ||
      w.items.length >= limits.max_records * WINDOW_GROUPS ||
      w.bytes + payloadBytes(c) > limits.max_bytes)
  );
}

/** Whether the window reached a limit. */
export function isFull(w: Window, limits: BatchSettings): boolean {
  return (
    w.largestGroup >= limits.max_records ||
    w.items.length >= limits.max_records * WINDOW_GROUPS ||
    w.bytes >= limits.max_bytes
  );
}
