/**
 * The one parser of bucket settings (api.md §7.2), shared by every path that takes them: the bucket
 * routes (`POST`/`PUT /b/{bucket}`), storage (which checks again whatever a caller hands it), the
 * `RS_DEFAULTS_BUCKET_*` and `RS_BUCKET_<ID>_*` variables, and a replication's `target_settings`.
 * So the same malformed value is refused everywhere with the same 422 message, which names the
 * field the way its path spells it (`max_block_records`, `target_settings.max_block_records`,
 * `RS_BUCKET_A_MAX_BLOCK_RECORDS`). Before there was one, `target_settings` accepted
 * `max_block_records: 0`, which the destination then refused at every retry.
 */
import { QUOTA_TYPES, type BucketSettingsPatch, type QuotaType } from './buckets.js';
import { Errors } from './errors.js';
import { U64_MAX, describeJsonValue, jsonNumber } from './json.js';

/** The u64 fields of bucket settings. */
export const BUCKET_SIZE_FIELDS = ['quota_size', 'max_block_size', 'max_block_records'] as const;

/** Every field of bucket settings, in the order of api.md §7.2. */
export const BUCKET_SETTINGS_FIELDS = ['quota_type', ...BUCKET_SIZE_FIELDS] as const;

export type BucketSettingsField = (typeof BUCKET_SETTINGS_FIELDS)[number];

/** Smallest value of each u64 field: a block holds at least one record and one byte. */
const MIN: Record<(typeof BUCKET_SIZE_FIELDS)[number], bigint> = {
  quota_size: 0n,
  max_block_size: 1n,
  max_block_records: 1n,
};

/** Options of {@link parseBucketSettings}. */
export interface ParseBucketSettingsOptions {
  /** How messages name a field (default: the field itself). */
  name?: (field: BucketSettingsField) => string;
}

/**
 * Validates bucket settings in wire shape: every field may be missing or `null` (default on
 * create, keep on update); unknown fields are ignored, as in ReductStore. u64 values may be JSON
 * numbers or bigints (the bigint-safe parser gives either). Throws a 422 naming the field.
 */
export function parseBucketSettings(
  body: unknown,
  opts: ParseBucketSettingsOptions = {},
): BucketSettingsPatch {
  const name = opts.name ?? ((f: BucketSettingsField) => f);
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body) || jsonNumber(body) !== undefined) {
    throw Errors.bucketSettingsNotObject();
  }
  const raw = body as Record<string, unknown>;
  const patch: BucketSettingsPatch = {};
  const qt = raw.quota_type;
  if (qt !== undefined && qt !== null) {
    if (typeof qt !== 'string' || !(QUOTA_TYPES as readonly string[]).includes(qt)) {
      throw Errors.bucketSettingInvalid(
        name('quota_type'),
        `unknown value '${describeJsonValue(qt)}', expected one of ${QUOTA_TYPES.join(', ')}`,
      );
    }
    patch.quota_type = qt as QuotaType;
  }
  for (const key of BUCKET_SIZE_FIELDS) {
    const v = raw[key];
    if (v === undefined || v === null) continue;
    const n =
      typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
    if (n === undefined || n < MIN[key] || n > U64_MAX) {
      throw Errors.bucketSettingInvalid(name(key), `must be an integer from ${MIN[key]} to ${U64_MAX}`);
    }
    patch[key] = n;
  }
  return patch;
}
