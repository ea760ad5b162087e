/**
 * Services as the routes see them, with record counting for `/metrics`: every record write and
 * read of the HTTP API goes through `storage.bucket(name).write / writeMany / read` or
 * `queries.next`, so wrapping those counts per bucket without touching any route. Replication's
 * own reads of the source are not HTTP reads and are not counted here (they are in its status).
 */
import type { Bucket, Storage } from '../storage/types.js';
import type { RecordCounters } from './metrics.js';
import type { HttpServices, QueryService } from './services.js';

/** A view of `services` whose storage and queries count records; other fields stay live. */
export function instrumentServices(services: HttpServices, counters: RecordCounters): HttpServices {
  const view = Object.create(services) as HttpServices;
  view.storage = countingStorage(services.storage, counters);
  view.queries = countingQueries(services.queries, counters);
  return view;
}

/** Forwards every member to `target`, methods bound to it (classes with private fields), except `overrides`. */
export function forward<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (Object.prototype.hasOwnProperty.call(overrides, prop)) return overrides[prop as keyof T];
      const v: unknown = Reflect.get(t, prop, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

function countingStorage(storage: Storage, counters: RecordCounters): Storage {
  const wrapped = new WeakMap<Bucket, Bucket>();
  const wrap = (b: Bucket): Bucket => {
    let w = wrapped.get(b);
    if (!w) {
      w = countingBucket(b, counters);
      wrapped.set(b, w);
    }
    return w;
  };
  return forward(storage, { bucket: (name: string) => wrap(storage.bucket(name)) });
}

function countingBucket(bucket: Bucket, counters: RecordCounters): Bucket {
  return forward(bucket, {
    write: async (entry, ts, opts, payload) => {
      const outcome = await bucket.write(entry, ts, opts, payload);
      counters.written(bucket.name, 1, opts.size);
      return outcome;
    },
    writeMany: async (items) => {
      const results = await bucket.writeMany(items);
      let records = 0;
      let bytes = 0;
      results.forEach((r, i) => {
        if (typeof r !== 'string') return; // refused: a FerryError
        records++;
        bytes += items[i]!.opts.size;
      });
      counters.written(bucket.name, records, bytes);
      return results;
    },
    read: async (entry, ts) => {
      const record = await bucket.read(entry, ts);
      counters.read(bucket.name, 1, record.meta.size);
      return record;
    },
  });
}

function countingQueries(queries: QueryService, counters: RecordCounters): QueryService {
  return forward(queries, {
    next: async (bucket, id, opts) => {
      const batch = await queries.next(bucket, id, opts);
      let bytes = 0;
      if (!batch.onlyMetadata && !opts.head) for (const r of batch.records) bytes += r.record.meta.size;
      counters.read(bucket, batch.records.length, bytes);
      return batch;
    },
  });
}
