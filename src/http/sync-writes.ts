/**
 * Client writes through sync replications (replication.md §7): a view of the storage whose
 * `write`, `writeMany` and `updateLabels` (every write route goes through them) pass the sync
 * gates of their scope. A write in the scope of a blocked sync replication is refused (503) before
 * anything is stored; any other write in a sync scope is answered once its commit position is
 * delivered to the destination. Writes outside every sync scope go straight to storage.
 *
 * A written record waits for its own commit LSN (`WriteOptions.commit`), never for later writes:
 * a group commit that holds many writers' records may be shipped in several windows, and a writer
 * whose record is in the first one is answered once that one is delivered. Where the storage gives
 * no LSN (a label update, an idempotent repeat or a 409, a `$meta` write that also removes older
 * attachments) the writer waits for the log's last LSN after it, which covers whatever it did.
 */
import { isFerryError } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';
import type { SyncGate } from '../replication/sync-gate.js';
import type { SyncGates } from '../replication/sync-gates.js';
import type { Bucket, Storage } from '../storage/types.js';
import { forward } from './instrument.js';

/** A view of `storage` whose client writes honour `gates`. */
export function syncWrites(storage: Storage, gates: SyncGates): Storage {
  const wrapped = new WeakMap<Bucket, Bucket>();
  return forward(storage, {
    bucket: (name: string) => {
      const b = storage.bucket(name);
      let w = wrapped.get(b);
      if (!w) wrapped.set(b, (w = syncBucket(b, gates, () => storage.changes.lastLsn())));
      return w;
    },
  });
}

function syncBucket(bucket: Bucket, gates: SyncGates, lastLsn: () => bigint): Bucket {
  /**
   * `position` gives the LSN to wait for once `write` resolved (undefined: the log's last);
   * `single`: that LSN is the write's one record, whose own delivery answers it.
   */
  const run = async <T>(
    scopeOf: () => readonly SyncGate[],
    write: (inScope: boolean) => Promise<T>,
    position: (result: T) => bigint | undefined = () => undefined,
    single = false,
  ): Promise<T> => {
    const startup = gates.startup();
    if (startup) await startup;
    const scope = scopeOf();
    if (scope.length === 0) return write(false);
    for (const g of scope) g.admit();
    let result: T;
    try {
      result = await write(true);
    } catch (e) {
      // a retry of a write stored already: its 409 then also says it is at the destination
      if (isFerryError(e) && e.status === 409) await waitAll(scope, lastLsn(), false);
      throw e;
    }
    const own = position(result);
    await waitAll(scope, own ?? lastLsn(), single && own !== undefined);
    return result;
  };
  return forward(bucket, {
    write: (entry, ts, opts, payload) => {
      // the storage fills in the commit's LSN; `$meta` writes commit removals after it
      const commit = isMetaEntry(entry) ? undefined : { lsn: 0n };
      return run(
        () => gates.matching(bucket.name, entry, opts.labels ?? {}, ts, opts.origin),
        (inScope) => bucket.write(entry, ts, inScope && commit ? { ...opts, commit } : opts, payload),
        (outcome) => (outcome === 'written' && commit && commit.lsn > 0n ? commit.lsn : undefined),
        true,
      );
    },
    writeMany: (items) => {
      const scopeOf = (): SyncGate[] => {
        const scope = new Set<SyncGate>();
        for (const it of items) {
          for (const g of gates.matching(bucket.name, it.entry, it.opts.labels ?? {}, it.ts, it.opts.origin))
            scope.add(g);
        }
        return [...scope];
      };
      let commits: Array<{ lsn: bigint } | undefined> = [];
      const write = (inScope: boolean): ReturnType<Bucket['writeMany']> => {
        if (!inScope) return bucket.writeMany(items);
        commits = items.map((it) => (isMetaEntry(it.entry) ? undefined : { lsn: 0n }));
        return bucket.writeMany(
          items.map((it, i) => (commits[i] ? { ...it, opts: { ...it.opts, commit: commits[i] } } : it)),
        );
      };
      // the highest LSN among the records written; anything else (a repeat, `$meta`): the log's last
      const position = (results: Awaited<ReturnType<Bucket['writeMany']>>): bigint | undefined => {
        let max = 0n;
        for (let i = 0; i < results.length; i++) {
          if (results[i] === 'already_present') return undefined;
          if (results[i] !== 'written') continue;
          const c = commits[i];
          if (!c || c.lsn === 0n) return undefined;
          if (c.lsn > max) max = c.lsn;
        }
        return max > 0n ? max : undefined;
      };
      return run(scopeOf, write, position);
    },
    // the labels after an update are not known before it: bucket and entry decide
    updateLabels: (entry, ts, changes, opts) =>
      run(
        () => gates.matching(bucket.name, entry, undefined, ts, opts?.origin),
        () => bucket.updateLabels(entry, ts, changes, opts),
      ),
  });
}

function waitAll(scope: readonly SyncGate[], lsn: bigint, single: boolean): Promise<unknown> {
  return scope.length === 1
    ? scope[0]!.wait(lsn, single)
    : Promise.all(scope.map((g) => g.wait(lsn, single)));
}
