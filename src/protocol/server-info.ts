/** Wire shape of `GET /api/v1/info` (api.md §6). */
import type { BucketSettings, U64 } from './buckets.js';

/** `instance_role` (`RS_INSTANCE_ROLE`); `REPLICA` refuses every mutation with 403. */
export type InstanceRole = 'STANDALONE' | 'PRIMARY' | 'SECONDARY' | 'REPLICA';

/** `GET /api/v1/info`. */
export interface ServerInfo<N extends U64 = bigint> {
  /** `1.<minor>.<patch>`: clients compare it as a string. */
  version: string;
  instance_name: string;
  instance_role: InstanceRole;
  bucket_count: N;
  usage: N;
  /** Seconds since start. */
  uptime: N;
  oldest_record: N;
  latest_record: N;
  defaults: { bucket: BucketSettings<N> };
  license: null;
  /** Ferry: storage health (a checkpoint failure the server has not recovered from yet). */
  storage?: StorageHealthInfo;
}

/** Ferry's `storage` field of `GET /api/v1/info`. */
export interface StorageHealthInfo {
  /** Message of the last failed checkpoint; null when none failed or a later one succeeded. */
  last_checkpoint_error: string | null;
  /** When it failed (ISO 8601), or null. */
  last_checkpoint_error_at: string | null;
}
