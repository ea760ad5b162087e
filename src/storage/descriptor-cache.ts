/**
 * The descriptor cache: which blocks have their record descriptors in memory, loading them on
 * demand from `<id>.meta` and unloading clean, idle ones beyond a budget (least recently used first).
 * A block whose `.meta` a checkpoint is writing is not unloaded: it is clean, but the file on disk
 * is still the older one, and a reload from it would lose the newer descriptors for good.
 */
import { loadBlockMeta, type Block } from './block.js';
import type { Entry } from './entry.js';

/** Descriptor budget: clean blocks beyond it are unloaded (they reload from `<id>.meta`). */
export const MAX_LOADED_RECORDS = 50_000;
/** A block's descriptors stay loaded at least this long after their last use. */
const UNLOAD_IDLE_MS = 250;

export class DescriptorCache {
  private loaded = new Set<Block>();
  private loadedRecords = 0;
  private loading = new Map<Block, Promise<void>>();

  constructor(
    private readonly budget = MAX_LOADED_RECORDS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Loads a block's descriptors (once; concurrent callers share the load). */
  async load(entry: Entry, block: Block): Promise<void> {
    if (this.touch(block)) return;
    block.lastUse = this.now();
    let p = this.loading.get(block);
    if (!p) {
      p = (async () => {
        const recs = await loadBlockMeta(entry.metaPath(block), entry.name);
        // The read may have outlasted the idle bound: the caller has not used the block yet.
        block.lastUse = this.now();
        if (!block.records) {
          block.records = recs ?? [];
          this.track(block);
        }
      })().finally(() => this.loading.delete(block));
      this.loading.set(block, p);
    }
    await p;
  }

  /** `load` for a block whose descriptors are in memory: marks it used; false when they are not. */
  touch(block: Block): boolean {
    if (!block.records) return false;
    block.lastUse = this.now();
    return true;
  }

  /** Registers a block whose descriptors are in memory (loaded or newly created). */
  track(block: Block): void {
    if (this.loaded.has(block)) return;
    this.loaded.add(block);
    this.loadedRecords += block.records?.length ?? 0;
    // Enforced on every load, not only at checkpoints: read-only workloads never checkpoint.
    if (this.loadedRecords > this.budget) this.unloadCold();
  }

  /** Forgets a block that left its entry. */
  forget(block: Block): void {
    this.loaded.delete(block);
  }

  /** Drops descriptors of clean, idle blocks from memory, least recently used first. */
  unloadCold(): void {
    let total = 0;
    for (const b of this.loaded) total += b.records?.length ?? 0;
    this.loadedRecords = total;
    if (total <= this.budget) return;
    // Only blocks idle for a while: a caller that just awaited `load` uses the descriptors right
    // after, and must find them there.
    const idleBefore = this.now() - UNLOAD_IDLE_MS;
    const candidates = [...this.loaded]
      .filter(
        (b) => !b.dirty && b.inflight === 0 && b.persisting === 0 && b.records && b.lastUse < idleBefore,
      )
      .sort((a, b) => a.lastUse - b.lastUse);
    for (const b of candidates) {
      if (total <= this.budget / 2) break;
      total -= b.records!.length;
      b.records = undefined;
      this.loaded.delete(b);
    }
    this.loadedRecords = total;
  }

  /** Descriptors in memory (for tests and diagnostics). */
  get records(): number {
    return this.loadedRecords;
  }
}
