/**
 * Shipping (replication.md §1): delivers the items of a window through the one `Target` interface
 * (local or remote alike), one request per destination request group, up to `max_in_flight`
 * requests at once; reads each source record when its delivery starts, applies the targets'
 * per-record outcomes (written, already present, missing, temporary, permanent) to the counters,
 * the failure log and the window's status, and runs every target call under a watchdog.
 *
 * It may touch: the source storage (reads), the target, the counters, diagnostics and failure
 * log it is given. It never moves a cursor or changes a state: the committer and the task do.
 */
import { isFerryError } from '../protocol/errors.js';
import { stringifyJson } from '../protocol/json.js';
import type { Bucket, Change, Storage, StoredRecord } from '../storage/types.js';
import type { Counters } from './checkpoint-store.js';
import type { Diagnostics } from './diagnostics.js';
import type { FailureEntry, FailureLog } from './failure-log.js';
import { mapLimit } from './map-limit.js';
import { destinationEntry, type EffectiveSettings } from './settings.js';
import {
  boundMessage,
  joinable,
  TargetError,
  type ItemOutcome,
  type ShipRecord,
  type Target,
  type TargetFailure,
} from './target.js';
import { groupKey, rangesMeet, recordKey, tsRanges, type Item, type Window } from './window.js';

/** What a shipper works with (getters: the task may replace them, e.g. counters at start). */
export interface ShipperContext {
  storage: Storage;
  target: Target;
  diagnostics: Diagnostics;
  failureLog: FailureLog;
  /** `RS_REPLICATION_TIMEOUT` (ms), the watchdog's unit. */
  timeoutMs: number;
  settings(): EffectiveSettings;
  counters(): Counters;
  /** Windows in flight, in commit order (a window waits for earlier ones that ship its records). */
  inflight(): readonly Window[];
  /** Changes up to this LSN may have been evicted by FIFO quotas before they were shipped. */
  overflowUpTo(): bigint;
  /**
   * Writes the destination answered as durably written (their LSNs), reported as each request is
   * answered, before the window is complete (sync replication answers their writers).
   */
  recordsDelivered?(lsns: bigint[]): void;
  /**
   * Groups (entries) of one window delivered at once; `batch.max_in_flight` when absent. A sync
   * replication ships every entry with waiting writers in one round instead of `max_in_flight`
   * entries per round trip.
   */
  groupConcurrency?(): number;
  /**
   * Small write groups delivered at once when the target joins writes (`Target.joinsWrites`): they
   * share few requests, so they need not wait for a connection each. Absent: `groupConcurrency`.
   */
  joinedGroupConcurrency?(): number;
}

/** Result of one attempt to deliver a group of items. */
export interface Attempt {
  remaining: Item[];
  temp?: TargetFailure;
  perm?: { status: number; message: string };
  /** Writes the destination answered as already present (their labels were not applied). */
  present?: Item[];
}

/** Slowest transfer a call is given time for before the watchdog abandons it (bytes per second). */
const WATCHDOG_MIN_RATE = 64 * 1024;
/** Timeouts a call may take in all (connect, headers, a read-back) before the watchdog fires. */
const WATCHDOG_TIMEOUTS = 4;

/** Marks a call abandoned by the watchdog. */
class WatchdogTimeout extends TargetError {}

/** An outcome as the engine knows them; anything else a target returns is a temporary failure. */
function validOutcome(o: unknown): ItemOutcome {
  const kind = (o as { kind?: unknown } | null | undefined)?.kind;
  if (kind === 'written' || kind === 'present' || kind === 'missing') return o as ItemOutcome;
  if (
    (kind === 'temporary' || kind === 'permanent') &&
    typeof (o as { status?: unknown }).status === 'number'
  )
    return o as ItemOutcome;
  return {
    kind: 'temporary',
    status: -1,
    message: `Malformed answer: outcome ${stringifyJson(o) ?? String(o)}`,
  };
}

/** The items' timestamps strictly ascend (a copy window's always do): nothing to merge or sort. */
function ascending(group: readonly Item[]): boolean {
  for (let i = 1; i < group.length; i++) if (group[i - 1]!.change.ts >= group[i]!.change.ts) return false;
  return true;
}

/**
 * Newest change per timestamp, in timestamp order: the record is read in its current state anyway.
 * Labels removed by a dropped earlier update are removed by the kept one too (the targets skip
 * those set again); kept on the item, so that a retry still removes them.
 */
function newestPerTs(group: readonly Item[]): Item[] {
  const byTs = new Map<bigint, Item>();
  for (const item of group) {
    const dropped = byTs.get(item.change.ts)?.change.removedLabels;
    if (dropped && dropped.length > 0) {
      const removed = new Set([...dropped, ...(item.change.removedLabels ?? [])]);
      item.change = { ...item.change, removedLabels: [...removed] };
    }
    byTs.set(item.change.ts, item);
  }
  return [...byTs.values()].sort((a, b) =>
    a.change.ts < b.change.ts ? -1 : a.change.ts > b.change.ts ? 1 : 0,
  );
}

/** Delivers windows through a target. */
export class Shipper {
  constructor(private readonly ctx: ShipperContext) {}

  /**
   * Runs one target call under a watchdog: whatever the target does (throw, reject with anything,
   * never settle), the caller gets a result or a TargetError within a bounded time, so that no
   * failure can stop the loop. An abandoned call is cut off by resetting the target.
   */
  async guard<T>(what: string, bytes: number, call: () => Promise<T>): Promise<T> {
    const ms = WATCHDOG_TIMEOUTS * this.ctx.timeoutMs + Math.ceil((bytes / WATCHDOG_MIN_RATE) * 1000);
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new WatchdogTimeout(-2, `Timeout: ${what} did not finish within ${ms} ms`, true)),
        ms,
      );
    });
    try {
      return await Promise.race([Promise.resolve().then(call), watchdog]);
    } catch (e) {
      if (e instanceof WatchdogTimeout) await this.ctx.target.reset().catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Changes up to this LSN may have been evicted by FIFO quotas before they were shipped. */
  overflowUpTo(): bigint {
    return this.ctx.overflowUpTo();
  }

  /** Delivers the remaining items of a window; sets its status. */
  async ship(w: Window): Promise<void> {
    // Each delivery carries the source record as it is when the delivery starts, and requests in
    // flight land in any order: two deliveries of one record must not overlap, or the older state
    // may land last (an update overwritten by a stale one, or an update that finds its record
    // missing, is re-sent as a write and then finds the older write present). So a window waits
    // for earlier windows that ship the same records, and its writes land before its updates of
    // the same records.
    await this.afterEarlierDeliveries(w);
    const writes = new Map<string, Item[]>();
    const updates = new Map<string, Item[]>();
    for (const item of w.remaining) {
      const groups = item.change.kind === 'write' ? writes : updates;
      let g = groups.get(item.key);
      if (!g) groups.set(item.key, (g = []));
      g.push(item);
    }
    const written = new Set<string>();
    if (writes.size > 0 && updates.size > 0)
      for (const g of writes.values()) for (const i of g) written.add(recordKey(i.change));
    const later: Item[][] = [];
    const now: Item[][] = [...writes.values()];
    for (const g of updates.values()) (g.some((i) => written.has(recordKey(i.change))) ? later : now).push(g);
    const attempts = await this.deliverAll(now);
    if (later.length > 0) attempts.push(...(await this.deliverAll(later)));
    const remaining: Item[] = [];
    let temp: Attempt['temp'];
    let perm: Attempt['perm'];
    for (const a of attempts) {
      remaining.push(...a.remaining);
      if (a.temp && (!temp || (a.temp.retryAfterMs ?? 0) > (temp.retryAfterMs ?? 0))) temp = a.temp;
      if (a.perm && !perm) perm = a.perm;
    }
    remaining.sort((a, b) => (a.change.lsn < b.change.lsn ? -1 : a.change.lsn > b.change.lsn ? 1 : 0));
    w.remaining = remaining;
    if (remaining.length === 0) {
      w.status = 'done';
    } else if (perm) {
      w.status = 'perm_failed';
      w.error = perm;
    } else {
      w.status = 'temp_failed';
      w.error = temp ?? { status: -1, message: 'delivery incomplete' };
    }
  }

  /**
   * Delivers groups `groupConcurrency` at a time; with a target that joins writes, its small write
   * groups first, `joinedGroupConcurrency` at a time (they travel in few shared requests), then the
   * others, so that no call waits for a connection while its watchdog runs.
   */
  private async deliverAll(groups: Item[][]): Promise<Attempt[]> {
    const limit = this.ctx.groupConcurrency?.() ?? this.ctx.settings().batch.max_in_flight;
    const wide = this.ctx.joinedGroupConcurrency?.();
    if (wide === undefined || this.ctx.target.joinsWrites !== true)
      return mapLimit(groups, limit, (g) => this.deliver(g));
    const small = (g: Item[]): boolean => g[0]!.change.kind === 'write' && joinable(g, (i) => i.change.size);
    const out = await mapLimit(groups.filter(small), wide, (g) => this.deliver(g));
    out.push(
      ...(await mapLimit(
        groups.filter((g) => !small(g)),
        limit,
        (g) => this.deliver(g),
      )),
    );
    return out;
  }

  /** Waits until no earlier window that ships one of `w`'s records is being sent. */
  private async afterEarlierDeliveries(w: Window): Promise<void> {
    for (;;) {
      const at = this.ctx.inflight().indexOf(w);
      const earlier = (at < 0 ? this.ctx.inflight() : this.ctx.inflight().slice(0, at)).filter(
        (o) => o.status === 'sending' && o.sending !== undefined && this.overlap(o, w),
      );
      if (earlier.length === 0) return;
      await Promise.all(earlier.map((o) => o.sending));
    }
  }

  private overlap(a: Window, b: Window): boolean {
    // copy windows hold one entry each: two of different entries share no record
    if (a.copy && b.copy && a.copy.batch.entry !== b.copy.batch.entry) return false;
    if (!rangesMeet((a.ranges ??= tsRanges(a.items)), (b.ranges ??= tsRanges(b.items)))) return false;
    const ra = (a.records ??= new Set(a.items.map((i) => recordKey(i.change))));
    const rb = (b.records ??= new Set(b.items.map((i) => recordKey(i.change))));
    const [small, large] = ra.size < rb.size ? [ra, rb] : [rb, ra];
    for (const k of small) if (large.has(k)) return true;
    return false;
  }

  /**
   * Reads the source records of one group (same kind, entry, origin) and applies them. `fallback`:
   * the group is a retry of label updates in another form (see `missingAtDest`); no further one.
   */
  private async deliver(group: Item[], fallback = false): Promise<Attempt> {
    const first = group[0]!.change;
    const destEntry = destinationEntry(this.ctx.settings().dst_prefix, first.entry);
    const bucketName = this.ctx.settings().src_bucket;
    // newest change per timestamp wins (a copy window's group has one per timestamp already)
    const unique = ascending(group) ? group : newestPerTs(group);

    // metadata only: payloads are read by the target, in timestamp order
    let bucket: Bucket | null = null;
    const read: Array<
      { item: Item; rec: StoredRecord } | { item: Item; missing: true } | { item: Item; error: unknown }
    > = [];
    for (const item of unique) {
      try {
        bucket ??= this.ctx.storage.bucket(bucketName);
        const rec = await bucket.read(first.entry, item.change.ts);
        read.push(rec.meta.state === 'finished' ? { item, rec } : { item, missing: true });
      } catch (e) {
        if (isFerryError(e) && (e.status === 404 || e.status === 409)) read.push({ item, missing: true });
        else read.push({ item, error: e });
      }
    }
    const toSend: Array<{ item: Item; ship: ShipRecord }> = [];
    const remaining: Item[] = [];
    let temp: Attempt['temp'];
    for (const r of read) {
      if ('missing' in r) {
        // (copy items have no LSN: a record gone before the copy reached it is simply missing)
        const lsn = r.item.change.lsn;
        if (lsn > 0n && lsn <= this.overflowUpTo()) this.ctx.counters().records_dropped_overflow++;
        else this.ctx.counters().records_missing_at_source++;
        continue;
      }
      if ('error' in r) {
        remaining.push(r.item);
        temp = {
          status: -1,
          message: `Source read failed: ${(r.error as Error)?.message ?? String(r.error)}`,
        };
        continue;
      }
      this.ctx.counters().records_read++;
      if (r.item.change.kind === 'write') this.ctx.counters().bytes_read += r.rec.meta.size;
      toSend.push({ item: r.item, ship: this.shipRecord(r.item.change, r.rec) });
    }
    if (toSend.length === 0) return temp ? { remaining, temp } : { remaining };

    let outcomes: ItemOutcome[];
    try {
      const records = toSend.map((t) => t.ship);
      const bytes = first.kind === 'write' ? records.reduce((n, r) => n + r.size, 0) : 0;
      outcomes = await this.guard(first.kind === 'write' ? 'Batch write' : 'Label update', bytes, () =>
        first.kind === 'write'
          ? this.ctx.target.write(destEntry, records)
          : this.ctx.target.update(destEntry, records),
      );
      if (!Array.isArray(outcomes) || outcomes.length !== records.length) {
        const got = Array.isArray(outcomes) ? `${outcomes.length} outcomes` : typeof outcomes;
        throw new TargetError(-1, `Malformed answer: ${got} for ${records.length} records`, true);
      }
    } catch (e) {
      const err = TargetError.from(e);
      this.ctx.diagnostics.addError(err.status, err.message, toSend.length);
      remaining.push(...toSend.map((t) => t.item));
      if (!err.temporary) {
        return { remaining, perm: { status: err.status, message: err.message } };
      }
      return { remaining, temp: err.toFailure() };
    }

    let perm: Attempt['perm'];
    const failed: FailureEntry[] = [];
    const missingAtDest: Array<{ item: Item; ship: ShipRecord }> = [];
    const present: Item[] = [];
    let ok = 0;
    toSend.forEach((t, i) => {
      const o = validOutcome(outcomes[i]);
      switch (o.kind) {
        case 'written':
          ok++;
          if (first.kind === 'write') {
            this.ctx.counters().records_written++;
            this.ctx.counters().bytes_written += t.ship.size;
          } else this.ctx.counters().label_updates_written++;
          break;
        case 'present':
          ok++;
          this.ctx.counters().records_already_present++;
          present.push(t.item);
          break;
        case 'missing':
          if (fallback) {
            remaining.push(t.item);
            temp ??= {
              status: 404,
              message: `Record ${t.item.change.ts} of entry '${destEntry}' is missing at the destination for its label update, though its write was answered as present`,
            };
          } else missingAtDest.push(t);
          break;
        case 'temporary':
          this.ctx.diagnostics.addError(o.status, o.message);
          remaining.push(t.item);
          if (!temp || (o.retryAfterMs ?? 0) > (temp.retryAfterMs ?? 0)) temp = o;
          break;
        case 'permanent':
          this.ctx.diagnostics.addError(o.status, o.message);
          if (this.ctx.settings().on_write_failure === 'skip') {
            failed.push(this.failureEntry(t.item, o.status, o.message));
          } else {
            remaining.push(t.item);
            perm ??= {
              status: o.status,
              message: `Destination refused record ${t.item.change.ts} of entry '${destEntry}' (${o.status}): ${o.message}`,
            };
          }
          break;
      }
    });
    this.ctx.diagnostics.addOk(ok);
    if (this.ctx.recordsDelivered && first.kind === 'write' && ok > 0) {
      const lsns: bigint[] = [];
      toSend.forEach((t, i) => {
        // (a record found present may still get its labels in a follow-up: not reported)
        const kind = (outcomes[i] as { kind?: unknown } | undefined)?.kind;
        if (kind === 'written' && t.item.change.lsn > 0n) lsns.push(t.item.change.lsn);
      });
      this.ctx.recordsDelivered(lsns);
    }
    if (failed.length > 0) {
      try {
        await this.ctx.failureLog.append(failed);
        // counted once the trace is durable, so that status never shows a failure the log lacks
        this.ctx.counters().records_failed += failed.length;
      } catch (e) {
        // cannot leave a trace: keep them pending instead of dropping them
        const keep = toSend.filter((t) => failed.some((f) => f.ts === t.item.change.ts)).map((t) => t.item);
        remaining.push(...keep);
        temp = { status: -1, message: `Failure log write failed: ${(e as Error).message}` };
      }
    }
    if (missingAtDest.length > 0 && !fallback) {
      // A label update for a record the destination lacks: send the whole record, with its
      // current labels, instead. If the record turns out to be there after all (its write landed
      // meanwhile, e.g. from a connection of before a crash), its labels may be older than ours:
      // the update is applied once more, now that the record exists.
      const asWrites = missingAtDest.map((t): Item => {
        const change: Change = { ...t.item.change, kind: 'write' };
        return { change, key: groupKey(change) };
      });
      const back = new Map(missingAtDest.map((t) => [t.item.change.ts, t.item]));
      const again = await this.deliver(asWrites, true);
      remaining.push(...again.remaining.map((i) => back.get(i.change.ts) ?? i));
      temp ??= again.temp;
      perm ??= again.perm;
      const relabel = (again.present ?? []).map((i) => back.get(i.change.ts)!);
      if (relabel.length > 0) {
        const third = await this.deliver(relabel, true);
        remaining.push(...third.remaining);
        temp ??= third.temp;
        perm ??= third.perm;
      }
    }
    const res: Attempt = { remaining };
    if (present.length > 0 && first.kind === 'write') res.present = present;
    if (temp) res.temp = temp;
    if (perm) res.perm = perm;
    return res;
  }

  private shipRecord(c: Change, rec: StoredRecord): ShipRecord {
    return {
      lsn: c.lsn,
      ts: c.ts,
      size: rec.meta.size,
      contentType: rec.meta.contentType,
      labels: rec.meta.labels,
      removedLabels: c.removedLabels ?? [],
      digest: rec.meta.digest,
      origin: c.origin,
      record: rec,
    };
  }

  private failureEntry(item: Item, status: number, message: string): FailureEntry {
    return {
      at: new Date().toISOString(),
      bucket: this.ctx.settings().src_bucket,
      entry: item.change.entry,
      ts: item.change.ts,
      kind: item.change.kind,
      lsn: item.change.lsn,
      status,
      message: boundMessage(message),
    };
  }
}
