/**
 * Wire shapes of the server, bucket and entry API (api.md §6, §7.2). Declared once here and used by
 * storage (which returns them), the HTTP routes (which send them) and the SDK (which reads them).
 * u64 values are `bigint` on the server side; the SDK parses JSON with `parseJson`, which gives a
 * `number` when the value is exact and a `bigint` beyond 2^53, hence {@link U64}.
 */

/** A JSON u64 as the bigint-safe parser (protocol/json.ts) returns it. */
export type U64 = number | bigint;

export type QuotaType = 'NONE' | 'FIFO' | 'HARD';
/** Every `quota_type` value, in the order error messages list them (api.md §7.2). */
export const QUOTA_TYPES: readonly QuotaType[] = ['NONE', 'FIFO', 'HARD'];

/** Bucket settings in wire shape (api.md §7.2); all fields filled in when returned. */
export interface BucketSettings<N extends U64 = bigint> {
  quota_type: QuotaType;
  quota_size: N;
  max_block_size: N;
  max_block_records: N;
}

/** Partial settings as accepted by create/update (missing or null = default/keep). */
export type BucketSettingsPatch<N extends U64 = bigint> = {
  [K in keyof BucketSettings<N>]?: BucketSettings<N>[K] | null;
};

/** `status` of a bucket or entry: `DELETING` while an asynchronous removal runs. */
export type Status = 'READY' | 'DELETING';

/** api.md §7.2 BucketInfo. */
export interface BucketInfo<N extends U64 = bigint> {
  name: string;
  entry_count: N;
  size: N;
  oldest_record: N;
  latest_record: N;
  is_provisioned: boolean;
  status: Status;
}

/** api.md §7.2 EntryInfo. */
export interface EntryInfo<N extends U64 = bigint> {
  name: string;
  size: N;
  record_count: N;
  block_count: N;
  oldest_record: N;
  latest_record: N;
  status: Status;
}

/** `GET /api/v1/b/{bucket}`. */
export interface BucketDetail<N extends U64 = bigint> {
  info: BucketInfo<N>;
  settings: BucketSettings<N>;
  entries: EntryInfo<N>[];
}

/** `GET /api/v1/list`. */
export interface BucketList<N extends U64 = bigint> {
  buckets: BucketInfo<N>[];
}

/** `PUT /api/v1/b/{bucket}/rename` and `PUT /api/v1/b/{bucket}/{entry}/rename` request body. */
export interface RenameRequest {
  new_name: string;
}
