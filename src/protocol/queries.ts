/** Wire shapes of queries (api.md §9, §11.3, §12). */
import type { U64 } from './buckets.js';

export type QueryType = 'QUERY' | 'REMOVE';

/** QueryEntry: body of `POST /io/{bucket}/q` and `POST /b/{bucket}/{entry}/q` (api.md §12). */
export interface QueryRequest {
  query_type: QueryType;
  /** Entry names or patterns (IO route only). */
  entries?: string[];
  /** Inclusive lower bound, µs. */
  start?: U64;
  /** Exclusive upper bound, µs. */
  stop?: U64;
  /** Idle timeout in seconds (default 60). */
  ttl?: number;
  only_metadata?: boolean;
  continuous?: boolean;
  /** Condition (api.md §13). */
  when?: unknown;
  strict?: boolean;
  ext?: Record<string, unknown>;
}

/** Answer of a QUERY. */
export interface QueryCreated<N extends U64 = bigint> {
  id: N;
}

/** Answer of a REMOVE query and of `DELETE …/q`. */
export interface RemovedRecords<N extends U64 = bigint> {
  removed_records: N;
}
