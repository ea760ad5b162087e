/**
 * The copy of a run (replication.md §6: `since` initial copy, `continuous: false` one-shot): plans
 * or resumes the scan source, hands out its windows (one batch per entry out at a time, and not
 * before that entry's last position is durable, so that a crash re-ships at most one batch per
 * entry), moves its position when a window is delivered, and reports progress.
 *
 * What it shows (progress, entry cursors, `completed`) is the copy as the last durable
 * checkpoint holds it, never the state in memory: a crash resumes from the checkpoint, so a
 * figure shown before it is never more than what a restart shows (progress only grows).
 *
 * It touches the source storage (reads) and nothing else; the task persists {@link CopyRun.saved}.
 */
import type { CopyProgress, CopyStatus, EntryCursor } from '../protocol/replication-status.js';
import { compileEntryPatterns } from '../query/entry-pattern.js';
import type { Bucket, Change, Storage } from '../storage/types.js';
import type { Urgency } from './committer.js';
import { copyProgress, type CopyRunStart } from './copy-progress.js';
import { ScanSource, type CopyState } from './scan-source.js';
import { ScopeFilter } from './scope-filter.js';
import type { EffectiveSettings } from './settings.js';
import { groupKey, newWindow, type Window } from './window.js';

/** What a copy run asks its task. */
export interface CopyRunContext {
  storage: Storage;
  settings: EffectiveSettings;
  continuous: boolean;
  /** Start from the beginning (a PUT changed what the copy covers). */
  restart: boolean;
  /** Forget the persisted `when` state. */
  resetFilter: boolean;
  /** A member added to a replicated group: copied (from its bucket, up to its LSN) first. */
  memberCopy?: { member: string; lsn: bigint } | undefined;
  /** The checkpoint changed (`tag`: an entry that waits for it to be durable). */
  dirty(urgency: Urgency, tag?: string): void;
  /** Figures changed (the total was counted). */
  changed(): void;
  /** Loop prevention and `when` for a copied record: adds it to `w` when it passes. */
  admit(c: Change, w: Window, key: string, filter: ScopeFilter): void;
  now(): number;
}

/** The copy of one run, or none. */
export class CopyRun {
  private scan: ScanSource | null = null;
  private filter: ScopeFilter | null = null;
  /** Entries with a batch out, or delivered but not in a durable checkpoint yet. */
  private readonly busy = new Set<string>();
  private run: CopyRunStart = { at: 0, records: 0, bytes: 0 };
  /** A one-shot delivered everything (in memory: shipping stops). */
  private finishedRun = false;
  /** The copy and completion of the last durable checkpoint: what status shows. */
  private durable: { copy: CopyState | null; completed: boolean } = { copy: null, completed: false };

  constructor(private readonly ctx: CopyRunContext) {}

  /**
   * Resumes the persisted copy (`saved`, `completed`), or plans a new one over what the source
   * holds now when the run has one and has none yet.
   */
  start(saved: CopyState | null, completed: boolean): void {
    const { settings: s, continuous, restart, memberCopy } = this.ctx;
    const srcBucket = this.bucketName;
    const wanted = s.since !== undefined || !continuous || memberCopy !== undefined;
    this.finishedRun = wanted && !continuous && completed && !restart;
    let state = wanted && !restart ? saved : null;
    if (wanted && !state && !this.finishedRun) {
      let bucket: Bucket | null = null;
      try {
        bucket = this.ctx.storage.bucket(srcBucket);
      } catch {
        // source bucket gone: nothing to copy
      }
      const since = s.since === undefined ? 0n : BigInt(s.since);
      const until = s.until === undefined ? null : BigInt(s.until);
      // a one-shot copies what was committed before it started (§6.2); a continuous copy takes
      // later writes from the log, as it always did (also after a disabled spell)
      const lsn = memberCopy?.lsn ?? (continuous ? undefined : this.ctx.storage.changes.lastLsn());
      const match = compileEntryPatterns(s.entries);
      state = ScanSource.plan(bucket, match, since, until, this.ctx.now(), lsn);
      this.ctx.dirty('soon');
    }
    // a new plan is not durable yet: it shows nothing done and no total, as a restart would
    this.durable = { copy: state ? ScanSource.restore(state) : null, completed: this.finishedRun };
    if (!state) return;
    const scan = new ScanSource(() => this.ctx.storage.bucket(srcBucket), state);
    this.scan = scan;
    const restored = this.ctx.resetFilter ? undefined : state.filter;
    this.filter = new ScopeFilter(srcBucket, s.entries, s.when, restored);
    this.run = { at: this.ctx.now(), records: state.done.records, bytes: state.done.bytes };
    if (!state.total && !this.finishedRun) {
      void scan.count().then(
        (total) => {
          if (this.scan !== scan || scan.state.total) return;
          scan.state.total = total;
          // shown once durable (a restart must not lose a total that was shown)
          this.ctx.dirty('soon');
          this.ctx.changed();
        },
        () => undefined, // progress stays without a total; the copy itself goes on
      );
    }
    // a plan with nothing to read (no entries, or `since` past every record) ships no window, so
    // no commit would ever finish it: it is finished now (shown once durable)
    if (scan.finished && state.completed_at === null && !this.finishedRun) {
      state.completed_at = new Date(this.ctx.now()).toISOString();
      if (!continuous) this.finishedRun = true;
      this.ctx.dirty('soon');
    }
  }

  /** The bucket copied: the source bucket, or a group member being added. */
  private get bucketName(): string {
    return this.ctx.memberCopy?.member ?? this.ctx.settings.src_bucket;
  }

  /** A one-shot delivered everything (in memory): nothing more is shipped. */
  get finished(): boolean {
    return this.finishedRun;
  }

  /** The run has a copy that is not finished (in memory). */
  get active(): boolean {
    return this.scan !== null && this.scan.state.completed_at === null && !this.finishedRun;
  }

  /**
   * The next window: one batch of one entry that has no batch out; null when none is ready.
   * `endLsn` is 0: a copy window moves no log position.
   */
  async next(maxRecords: number, maxBytes: number): Promise<Window | null> {
    const scan = this.scan;
    if (!scan || !this.active) return null;
    const batch = await scan.next(maxRecords, maxBytes, this.busy);
    if (!batch) return null;
    this.busy.add(batch.entry);
    const at = this.ctx.now();
    const w = newWindow(0n, at);
    const bucket = this.bucketName;
    // one request group per origin: its key is made once per run of records of one origin
    let keyOrigin: string | undefined;
    let key = '';
    for (const m of batch.records) {
      const c: Change = {
        lsn: 0n,
        kind: 'write',
        bucket,
        entry: m.entry,
        ts: m.ts,
        size: m.size,
        contentType: m.contentType,
        labels: m.labels,
        digest: m.digest,
        origin: m.origin,
        commitTime: at,
      };
      w.scopeRecords++;
      w.scopeBytes += c.size;
      if (c.origin !== keyOrigin) {
        keyOrigin = c.origin;
        key = groupKey(c);
      }
      this.ctx.admit(c, w, key, this.filter!);
    }
    w.copy = { batch, filter: this.filter!.takeSnapshot() };
    w.remaining = w.items;
    return w;
  }

  /** A delivered copy window: its entry's position moves; true when the copy just finished. */
  commit(w: Window): boolean {
    const scan = this.scan;
    if (!scan || !w.copy) return false;
    const { batch, filter } = w.copy;
    scan.commit(batch, { records: w.scopeRecords, bytes: w.scopeBytes });
    if (filter) scan.state.filter = filter;
    this.ctx.dirty('now', batch.entry);
    if (!scan.finished || scan.state.completed_at !== null) return false;
    scan.state.completed_at = new Date(this.ctx.now()).toISOString();
    if (!this.ctx.continuous) this.finishedRun = true;
    return true;
  }

  /** A checkpoint is durable: what it holds is shown; `entries` may ship their next batch. */
  saved(
    copy: CopyState | null | undefined,
    completed: boolean | undefined,
    entries: readonly string[],
  ): void {
    this.durable = { copy: copy ?? null, completed: completed ?? false };
    for (const e of entries) this.busy.delete(e);
  }

  /** The copy for a checkpoint (a snapshot: the state goes on changing while it is written). */
  snapshot(): { copy: CopyState | null; completed: boolean } {
    return { copy: this.scan ? ScanSource.restore(this.scan.state) : null, completed: this.finishedRun };
  }

  /** Records and bytes the copy has not read yet (as far as its total tells), minus `inFlight`. */
  unread(inFlight: readonly Window[]): { records: number; bytes: number } {
    const st = this.scan?.state;
    if (!st?.total || st.completed_at !== null) return { records: 0, bytes: 0 };
    let records = st.total.records - st.done.records;
    let bytes = st.total.bytes - st.done.bytes;
    for (const w of inFlight) {
      if (!w.copy) continue;
      records -= w.scopeRecords;
      bytes -= w.scopeBytes;
    }
    return { records: Math.max(0, records), bytes: Math.max(0, bytes) };
  }

  /** Durable: a one-shot delivered everything. */
  get completed(): boolean {
    return this.durable.completed;
  }

  /** Durable: what the copy is doing (null = no copy running). */
  get doing(): string | null {
    const copy = this.durable.copy;
    if (!copy || copy.completed_at !== null) return null;
    const done = copy.entries.filter((e) => e.done).length;
    return `initial copy: ${done} of ${copy.entries.length} entries done`;
  }

  /** Durable figures that a `changed` event compares. */
  get figures(): string {
    const c = this.durable.copy;
    return c ? `${c.done.records}/${c.total?.records}/${this.durable.completed}` : '';
  }

  /** `progress`, `entry_cursors` and `copy` of the status (nothing without a copy). */
  status(now: number): { progress?: CopyProgress; entry_cursors?: EntryCursor[]; copy?: CopyStatus } {
    const st = this.durable.copy;
    if (!st) return {};
    return {
      progress: copyProgress(st, this.run, now),
      entry_cursors: st.entries.map((e) => ({
        entry: e.name,
        ts: e.done || e.next > st.since ? e.next : null,
        done: e.done,
        stop: e.stop,
      })),
      copy: { since: st.since, until: st.until, started_at: st.started_at, completed_at: st.completed_at },
    };
  }
}
