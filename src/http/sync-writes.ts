/**
 * Client writes through sync replications (replication.md §7): a view of the storage whose
 * `write`, `writeMany` and `updateLabels` (every write route goes through them) pass the sync
 * gates of their scope. A write in the scope of a blocked sync replication is refused (503) before
 * anything is stored; any other write in a sync scope is answered once its commit position is
 * delivered to the destination. Writes outside every sync scope go straight to storage.
 *
 * The position a write waits for is the change log's last committed LSN right after the write is
 * durable: the group commit publishes a group's position before it answers the group's writers,
 * so that is the write's own position or a later one of its group, never an earlier one. Waiting
 * for the rest of its group costs nothing, because a group is read and shipped as a whole.
 */
import { isFerryError } from '../protocol/errors.js';
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
  const run = async <T>(scopeOf: () => readonly SyncGate[], write: () => Promise<T>): Promise<T> => {
    const startup = gates.startup();
    if (startup) await startup;
    const scope = scopeOf();
    if (scope.length === 0) return write();
    for (const g of scope) g.admit();
    let result: T;
    try {
      result = await write();
    } catch (e) {
      // a retry of a write stored already: its 409 then also says it is at the destination
      if (isFerryError(e) && e.status === 409) await waitAll(scope, lastLsn());
      throw e;
    }
    await waitAll(scope, lastLsn());
    return result;
  };
  return forward(bucket, {
    write: (entry, ts, opts, payload) =>
      run(
        () => gates.matching(bucket.name, entry, opts.labels ?? {}, ts, opts.origin),
        () => bucket.write(entry, ts, opts, payload),
      ),
    writeMany: (items) => {
      const scopeOf = (): SyncGate[] => {
        const scope = new Set<SyncGate>();
        for (const it of items) {
          for (const g of gates.matching(bucket.name, it.entry, it.opts.labels ?? {}, it.ts, it.opts.origin))
            scope.add(g);
        }
        return [...scope];
      };
      return run(scopeOf, () => bucket.writeMany(items));
    },
    // the labels after an update are not known before it: bucket and entry decide
    updateLabels: (entry, ts, changes, opts) =>
      run(
        () => gates.matching(bucket.name, entry, undefined, ts, opts?.origin),
        () => bucket.updateLabels(entry, ts, changes, opts),
      ),
  });
}

function waitAll(scope: readonly SyncGate[], lsn: bigint): Promise<unknown> {
  return scope.length === 1 ? scope[0]!.wait(lsn) : Promise.all(scope.map((g) => g.wait(lsn)));
}
