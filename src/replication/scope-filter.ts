/**
 * What a replication ships (replication.md §4): changes of its source bucket whose entry matches the
 * patterns (`$meta` children follow their parent), that did not originate at the destination (loop
 * prevention), and that pass `when` in strict mode with one stateful filter per source entry.
 */
import type { Change } from '../storage/types.js';
import { compileCondition, type CompiledCondition } from '../query/condition/index.js';
import { compileEntryPatterns, matchesWithMeta, isMetaEntry } from '../query/entry-pattern.js';

/** Verdict for one in-scope change. */
export type FilterVerdict = 'loop' | 'filtered' | 'pass';

/** The scope filter of one replication task. */
export class ScopeFilter {
  private readonly match: (entry: string) => boolean;
  /** Whether a bucket is in scope; a consistency group's members are live (they may change). */
  private readonly inBucket: (bucket: string) => boolean;
  /** Key of a source entry's filter state: the entry, or `bucket/entry` for a group's members. */
  private readonly stateKey: (c: Change) => string;
  private readonly base: CompiledCondition | null;
  private readonly perEntry = new Map<string, CompiledCondition>();
  private readonly dirty = new Set<string>();
  private snapshot: Record<string, unknown> = {};

  /** `bucket`: the source bucket, or the live member set of a consistency group. */
  constructor(
    bucket: string | ReadonlySet<string>,
    entries: string[],
    when: unknown,
    restored: Record<string, unknown> | undefined,
  ) {
    this.match = compileEntryPatterns(entries);
    if (typeof bucket === 'string') {
      this.inBucket = (b) => b === bucket;
      this.stateKey = (c) => c.entry;
    } else {
      this.inBucket = (b) => bucket.has(b);
      this.stateKey = (c) => `${c.bucket}/${c.entry}`;
    }
    this.base = when === null || when === undefined ? null : compileCondition(when);
    if (this.base?.stateful && restored) this.snapshot = { ...restored };
  }

  /** `#batch_records` / `#batch_size` directives of `when`. */
  get directives(): { batchRecords?: number; batchSize?: number } {
    return this.base?.directives ?? {};
  }

  /** Bucket and entry patterns only: what pending counts are based on. */
  inScope(c: Change): boolean {
    return this.inBucket(c.bucket) && matchesWithMeta(this.match, c.entry);
  }

  /**
   * Verdict for a change the caller found `inScope` (not tested again here); mutates the per-entry
   * filter state of stateful conditions.
   */
  check(c: Change, destinationInstance: string): FilterVerdict {
    if (c.origin !== '' && c.origin === destinationInstance) return 'loop';
    // attachments bypass `when` (api.md §14.1)
    if (!this.base || isMetaEntry(c.entry)) return 'pass';
    const key = this.stateKey(c);
    const cond = this.condition(key);
    try {
      return cond.evaluate({ ts: c.ts, labels: c.labels }) ? 'pass' : 'filtered';
    } catch {
      // strict mode: a record whose evaluation errors (e.g. a missing label) is not replicated
      return 'filtered';
    } finally {
      if (this.base.stateful) this.dirty.add(key);
    }
  }

  private condition(entry: string): CompiledCondition {
    let cond = this.perEntry.get(entry);
    if (!cond) {
      cond = this.base!.clone();
      const saved = this.snapshot[entry];
      if (saved !== undefined) {
        try {
          cond.restoreState(saved);
        } catch {
          // state of a different condition: start fresh
        }
      }
      this.perEntry.set(entry, cond);
    }
    return cond;
  }

  /**
   * Snapshot of all per-entry state as of the last `check` (null when the condition is stateless).
   * Only entries evaluated since the previous snapshot are serialised again.
   */
  takeSnapshot(): Record<string, unknown> | null {
    if (!this.base?.stateful) return null;
    if (this.dirty.size > 0) {
      const next = { ...this.snapshot };
      for (const e of this.dirty) next[e] = this.perEntry.get(e)!.saveState();
      this.dirty.clear();
      this.snapshot = next;
    }
    return this.snapshot;
  }
}
