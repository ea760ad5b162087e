/**
 * Every sync gate of this instance and the scopes they guard (replication.md §7): which gates a
 * record's write must pass. Writes outside every sync scope never wait (one map lookup by bucket);
 * src/http/sync-writes.ts makes client writes pass them.
 */
import { compileCondition, type CompiledCondition } from '../query/condition/index.js';
import { compileEntryPatterns, isMetaEntry, matchesWithMeta } from '../query/entry-pattern.js';
import type { ReplicationSettings } from '../protocol/replications.js';
import type { Labels } from '../storage/types.js';
import { SyncGate, nodeSyncClock, type SyncClock } from './sync-gate.js';
import { effectiveSync } from './sync-settings.js';

/** Bucket, entries and (stateless) `when` of one sync replication. */
interface Scope {
  gate: SyncGate;
  bucket: string;
  match: (entry: string) => boolean;
  /** null: no `when`, or a stateful one (then every record of the entries counts as in scope). */
  when: CompiledCondition | null;
}

const NONE: readonly SyncGate[] = [];

/** The sync gates, by replication name. */
export class SyncGates {
  private readonly scopes = new Map<string, Scope>();
  private readonly byBucket = new Map<string, Scope[]>();
  private starting: Promise<void> | null;
  private started: () => void = () => undefined;

  constructor(private readonly clock: SyncClock = nodeSyncClock) {
    this.starting = new Promise((resolve) => (this.started = resolve));
  }

  /**
   * Pending while the replications are loaded at start-up (until `markReady`): a write that
   * arrives then cannot know yet whether it is in a sync scope, so it waits for this first.
   */
  startup(): Promise<void> | null {
    return this.starting;
  }

  /** Every sync replication is bound: writes need not wait for start-up any more. */
  markReady(): void {
    this.starting = null;
    this.started();
  }

  /**
   * The gate of replication `name` for these (resolved) settings, kept across a task restart so
   * that waiting writers keep waiting; undefined (and any old gate released) when it is async.
   */
  bind(name: string, settings: ReplicationSettings): SyncGate | undefined {
    const sync = effectiveSync(settings);
    const old = this.scopes.get(name);
    if (!sync) {
      if (old) this.drop(name, true);
      return undefined;
    }
    const gate = old?.gate ?? new SyncGate(name, sync, this.clock);
    gate.configure(sync);
    let when: CompiledCondition | null = null;
    if (settings.when !== null && settings.when !== undefined) {
      const c = compileCondition(settings.when);
      when = c.stateful ? null : c;
    }
    this.scopes.set(name, {
      gate,
      bucket: settings.src_bucket,
      match: compileEntryPatterns(settings.entries),
      when,
    });
    this.index();
    return gate;
  }

  /** Replication `name` was removed: its waiting writers get 503 (outcome unknown). */
  remove(name: string): void {
    if (this.scopes.has(name)) this.drop(name, false);
  }

  /** The gate of `name`, if it is a sync replication. */
  get(name: string): SyncGate | undefined {
    return this.scopes.get(name)?.gate;
  }

  /** Gates whose scope holds a record; `labels` undefined = match on bucket and entry only. */
  matching(
    bucket: string,
    entry: string,
    labels: Labels | undefined,
    ts: bigint,
    origin?: string,
  ): readonly SyncGate[] {
    const list = this.byBucket.get(bucket);
    if (!list) return NONE;
    let out: SyncGate[] | null = null;
    for (const s of list) {
      if (!matchesWithMeta(s.match, entry)) continue;
      // never shipped back where it came from (loop prevention), so nothing to wait for
      if (origin && origin === s.gate.destinationInstance()) continue;
      if (s.when && labels && !isMetaEntry(entry) && !passes(s.when, ts, labels)) continue;
      (out ??= []).push(s.gate);
    }
    return out ?? NONE;
  }

  private drop(name: string, release: boolean): void {
    this.scopes.get(name)?.gate.close(release);
    this.scopes.delete(name);
    this.index();
  }

  private index(): void {
    this.byBucket.clear();
    for (const s of this.scopes.values()) {
      const list = this.byBucket.get(s.bucket) ?? [];
      list.push(s);
      this.byBucket.set(s.bucket, list);
    }
  }
}

function passes(when: CompiledCondition, ts: bigint, labels: Labels): boolean {
  try {
    return when.evaluate({ ts, labels });
  } catch {
    return false; // strict mode: the replication does not ship it either
  }
}
