/**
 * Replication settings: the compatible object of api.md §17.2 plus the Ferry extensions of
 * replication.md §3 that are implemented. Parsing is synchronous and throws FerryError (422 naming
 * the field); the effective values (defaults filled in) are derived with `effectiveSettings`.
 */
import { Errors, FerryError } from '../protocol/errors.js';
import {
  MAX_DST_PREFIX_BYTES,
  MAX_DST_TOKEN_CHARS,
  MAX_GROUP_BATCH_BYTES,
  MAX_GROUP_BATCH_RECORDS,
  MAX_RATE_LIMIT_BYTES_PER_SEC,
  MAX_REMOTE_URL_CHARS,
  MAX_REPLICATION_DELAY_MS,
  MAX_REPLICATION_ENTRIES,
  MAX_SHIPMENT_BYTES,
  MAX_SHIPMENT_ITEMS,
} from '../protocol/limits.js';
import { jsonNumber, describeJsonValue } from '../protocol/json.js';
import { isValidBucketName, isValidEntryName, MAX_NAME_BYTES } from '../protocol/names.js';
import { BUCKET_SETTINGS_FIELDS, parseBucketSettings } from '../protocol/bucket-settings.js';
import type { BucketSettingsPatch } from '../storage/types.js';
import { parseSyncFields } from './sync-settings.js';
import { copySince, parseBaseField } from './base-settings.js';
import { rateLimitedBatchBytes } from './rate-limited-target.js';
import type {
  BatchSettings,
  Compression,
  LogSettings,
  OnOverflow,
  OnWriteFailure,
  ReplicationMode,
  ReplicationSettings,
  ReplicationSettingsJson,
  RetrySettings,
  TargetSettings,
} from '../protocol/replications.js';
import { isValidEntryPattern } from '../query/entry-pattern.js';
import { COMPATIBLE_SETTINGS_KEYS, type CompatibleSettingsJson } from '../protocol/replications.js';
import { invalidSetting, timestampField } from './setting-fields.js';

// The wire types live in protocol/ (shared with the SDK and the CLI); re-exported for this layer.
export type {
  BatchSettings,
  Compression,
  LogSettings,
  OnOverflow,
  OnWriteFailure,
  ReplicationMode,
  ReplicationSettings,
  RetrySettings,
  TargetSettings,
} from '../protocol/replications.js';

/** Settings with every default filled in. */
export interface EffectiveSettings extends ReplicationSettings {
  create_target: boolean;
  batch: BatchSettings;
  /**
   * Records per batch of an initial copy: `batch.max_records` when it was given, else
   * {@link COPY_BATCH_RECORDS} (`batch.max_bytes` bounds it all the same).
   */
  copy_max_records: number;
  retry: RetrySettings;
  on_write_failure: OnWriteFailure;
  log: LogSettings;
}

/**
 * Default records per copy batch. A copy's entry ships its next batch only once the previous one is
 * in a durable checkpoint (one batch per entry is re-shipped at most after a crash), so each batch
 * pays a round trip, an apply and a checkpoint write before the next: larger batches amortise them
 * (issue 9: 1 KiB records copied at ~24k rec/s with 1000, ~31k with 4000).
 */
export const COPY_BATCH_RECORDS = 4000;

/**
 * Defaults. Batches: 1000 records / 8 MiB amortise per-request overhead (ReductStore's 85 records
 * make small-record catch-up request-bound) while an 8 MiB body still streams in well under a second
 * on a modest link; 4 batches in flight hide the round-trip time. `max_delay_ms` only bounds how
 * long a partial batch waits while earlier ones are still in flight — an idle pipe ships at once.
 * Retry: 0.5 s doubling to 30 s; never suspend by default, because an edge device must recover by
 * itself after a long outage. Log: 1 GiB of protected pending payload, then the oldest pending data
 * may be evicted by FIFO quotas and the replication is visibly marked as needing verification.
 */
export const DEFAULTS = {
  batch: {
    max_records: 1000,
    max_bytes: 8 * 1024 * 1024,
    max_delay_ms: 50,
    max_in_flight: 4,
  } satisfies BatchSettings,
  retry: { initial_ms: 500, max_ms: 30_000, max_outage_ms: 0 } satisfies RetrySettings,
  log: { max_bytes: 1024 * 1024 * 1024, on_overflow: 'drop_oldest' } satisfies LogSettings,
  on_write_failure: 'stop' as OnWriteFailure,
  create_target: true,
};

const MODES: readonly ReplicationMode[] = ['enabled', 'paused', 'disabled'];
const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

/** Extension fields that are part of the design but not implemented yet: refused, never ignored. */
const NOT_YET = ['link'];

/** Legacy (≤ 1.20) filter fields, migrated into `when`. */
export interface LegacyFilter {
  include?: Record<string, string>;
  exclude?: Record<string, string>;
  each_n?: number;
  each_s?: number;
}

const invalid = invalidSetting;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function intField(
  obj: Record<string, unknown>,
  key: string,
  path: string,
  min: number,
  max?: number,
): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  const n = jsonNumber(v);
  const num = typeof n === 'bigint' ? Number(n) : n;
  const inRange = num !== undefined && num >= min && (max === undefined || num <= max);
  if (num === undefined || !Number.isSafeInteger(num) || !inRange) {
    const field = path === '' ? key : `${path}.${key}`;
    throw invalid(
      field,
      max === undefined ? `must be an integer >= ${min}` : `must be an integer between ${min} and ${max}`,
    );
  }
  return num;
}

/**
 * Why `dst_host` cannot be stored, or null: it is bounded like a remote's URL, and user info in it
 * would be a secret shown by every GET (nothing sends it: the token goes in `dst_token`). Whether
 * it is an http(s) URL is `parseDestinationHost`'s check.
 */
function dstHostProblem(host: string): string | null {
  if (host.length > MAX_REMOTE_URL_CHARS) return `must be at most ${MAX_REMOTE_URL_CHARS} characters`;
  if (host === '' || !URL.canParse(host)) return null;
  const url = new URL(host);
  if (url.username !== '' || url.password !== '')
    return "must not contain credentials (give the destination's token in 'dst_token')";
  return null;
}

function objectField(
  body: Record<string, unknown>,
  key: string,
  allowed: readonly string[],
): Record<string, unknown> | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(key, 'must be an object');
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw invalid(`${key}.${k}`, 'unknown field');
  return v;
}

function stringMap(v: unknown, field: string): Record<string, string> {
  if (!isObject(v)) throw invalid(field, 'must be an object of label values');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw invalid(`${field}.${k}`, 'must be a string');
    out[k] = val;
  }
  return out;
}

/** Reads the legacy filter fields of a body (undefined when none is present). */
export function readLegacyFilter(body: Record<string, unknown>): LegacyFilter | undefined {
  const legacy: LegacyFilter = {};
  let any = false;
  if (body.include !== undefined && body.include !== null) {
    legacy.include = stringMap(body.include, 'include');
    any = Object.keys(legacy.include).length > 0 || any;
  }
  if (body.exclude !== undefined && body.exclude !== null) {
    legacy.exclude = stringMap(body.exclude, 'exclude');
    any = Object.keys(legacy.exclude).length > 0 || any;
  }
  const n = intField(body, 'each_n', '', 1);
  if (n !== undefined) {
    legacy.each_n = n;
    any = true;
  }
  if (body.each_s !== undefined && body.each_s !== null) {
    const s = jsonNumber(body.each_s);
    const num = typeof s === 'bigint' ? Number(s) : s;
    if (num === undefined || !(num > 0)) throw invalid('each_s', 'must be a positive number');
    legacy.each_s = num;
    any = true;
  }
  return any ? legacy : undefined;
}

/** Parses `{"mode": ...}` (PATCH …/mode). */
export function parseMode(body: unknown): ReplicationMode {
  if (!isObject(body) || body.mode === undefined) throw Errors.invalidJson('missing field `mode`');
  return parseModeValue(body.mode);
}

function parseModeValue(v: unknown): ReplicationMode {
  if (typeof v === 'string') {
    const m = v.toLowerCase();
    if ((MODES as readonly string[]).includes(m)) return m as ReplicationMode;
  }
  throw Errors.invalidJson(
    `unknown variant \`${describeJsonValue(v)}\`, expected one of \`enabled\`, \`paused\`, \`disabled\``,
  );
}

/** Options of `parseSettings`. */
export interface ParseSettingsOptions {
  /** Migrates legacy filters into a `when` object (from the condition module). */
  legacyToWhen(legacy: LegacyFilter, when: unknown): unknown;
  /** Compiles `when` to check it; throws FerryError with the parser message. */
  checkWhen(when: unknown): void;
  /** Previously stored token (PUT keeps it when the body omits it or sends null). */
  previousToken?: string | null;
}

/**
 * Validates a settings body (POST/PUT, provisioning). Required fields missing → 422 `Invalid JSON: …`;
 * every other problem → 422 naming the field. Does not check buckets or hosts against the world.
 */
export function parseSettings(body: unknown, opts: ParseSettingsOptions): ReplicationSettings {
  if (!isObject(body)) throw Errors.invalidJson('expected a settings object');
  const remote = parseRemoteField(body);
  const group = parseGroupField(body);
  const required = group === undefined ? ['src_bucket', 'dst_bucket'] : [];
  for (const key of remote === undefined ? [...required, 'dst_host'] : required) {
    if (body[key] === undefined || body[key] === null) throw Errors.invalidJson(`missing field \`${key}\``);
    if (typeof body[key] !== 'string')
      throw Errors.invalidJson(`invalid type for \`${key}\`, expected a string`);
  }
  for (const key of NOT_YET) {
    if (body[key] !== undefined && body[key] !== null) {
      throw Errors.unprocessable(`Replication setting '${key}' is not supported yet`);
    }
  }

  if (remote === undefined) {
    const problem = dstHostProblem(body.dst_host as string);
    if (problem) throw invalid('dst_host', problem);
  }
  if (group === undefined && !isValidBucketName(body.dst_bucket as string))
    throw invalid('dst_bucket', `must be a bucket name (1 to ${MAX_NAME_BYTES} letters, digits, - and _)`);
  const dstToken = body.dst_token;
  if (dstToken !== undefined && dstToken !== null && typeof dstToken !== 'string') {
    throw Errors.invalidJson('invalid type for `dst_token`, expected a string');
  }
  if (typeof dstToken === 'string') {
    const problem = headerValueProblem(dstToken);
    if (problem) throw invalid('dst_token', problem);
  }
  let entries: string[] = [];
  if (body.entries !== undefined && body.entries !== null) {
    if (!Array.isArray(body.entries) || body.entries.some((e) => typeof e !== 'string')) {
      throw Errors.invalidJson('invalid type for `entries`, expected a sequence of strings');
    }
    entries = [...(body.entries as string[])];
    if (entries.length > MAX_REPLICATION_ENTRIES)
      throw invalid('entries', `must list at most ${MAX_REPLICATION_ENTRIES} entries`);
    const bad = entries.findIndex((e) => !isValidEntryPattern(e));
    if (bad >= 0)
      throw invalid(
        `entries[${bad}]`,
        "must be an entry name or pattern ('/'-separated letters, digits, -, _ and *, a leading ! excludes)",
      );
  }
  const prefix = body.dst_prefix ?? '';
  if (typeof prefix !== 'string')
    throw Errors.invalidJson('invalid type for `dst_prefix`, expected a string');
  if (group === undefined) {
    // prepended to every destination entry name (`destinationEntry`): it must keep them valid
    const p = trimPrefix(prefix);
    if (p.length > MAX_DST_PREFIX_BYTES)
      throw invalid('dst_prefix', `must be at most ${MAX_DST_PREFIX_BYTES} characters`);
    if (p !== '' && !isValidEntryName(p))
      throw invalid('dst_prefix', "must be an entry name prefix ('/'-separated letters, digits, - and _)");
  }
  const mode = body.mode === undefined || body.mode === null ? 'enabled' : parseModeValue(body.mode);
  let compression: Compression = 'none';
  if (body.compression !== undefined && body.compression !== null) {
    const c = typeof body.compression === 'string' ? body.compression.toLowerCase() : body.compression;
    if (!(COMPRESSIONS as readonly unknown[]).includes(c)) {
      throw Errors.invalidJson(
        `unknown variant \`${describeJsonValue(body.compression)}\`, expected one of \`none\`, \`gzip\`, \`zstd\``,
      );
    }
    compression = c as Compression;
  }

  let when: unknown = body.when ?? null;
  const legacy = readLegacyFilter(body);
  if (legacy) when = opts.legacyToWhen(legacy, when);
  if (when !== null) {
    if (!isObject(when))
      throw Errors.unprocessable('Invalid replication condition: condition must be an object');
    try {
      opts.checkWhen(when);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw Errors.unprocessable(`Invalid replication condition: ${msg}`);
    }
  }

  const settings: ReplicationSettings = {
    src_bucket: group === undefined ? (body.src_bucket as string) : '',
    dst_bucket: group === undefined ? (body.dst_bucket as string) : '',
    dst_host: remote === undefined ? (body.dst_host as string) : '',
    dst_token:
      remote !== undefined ? null : typeof dstToken === 'string' ? dstToken : (opts.previousToken ?? null),
    entries,
    dst_prefix: prefix,
    when,
    mode,
    compression,
  };
  const filter = parseFilterFields(body, when);
  if (filter) Object.assign(settings, filter);
  if (remote !== undefined) settings.remote = remote;
  const rate = objectField(body, 'rate_limit', ['bytes_per_sec']);
  if (rate) {
    const bps = intField(rate, 'bytes_per_sec', 'rate_limit', 1);
    if (bps === undefined || bps > MAX_RATE_LIMIT_BYTES_PER_SEC)
      throw invalid(
        'rate_limit.bytes_per_sec',
        `must be an integer between 1 and ${MAX_RATE_LIMIT_BYTES_PER_SEC}`,
      );
    settings.rate_limit = { bytes_per_sec: bps };
  }

  if (body.create_target !== undefined && body.create_target !== null) {
    if (typeof body.create_target !== 'boolean') throw invalid('create_target', 'must be a boolean');
    settings.create_target = body.create_target;
  }
  const ts = objectField(body, 'target_settings', BUCKET_SETTINGS_FIELDS);
  if (ts) {
    // the bucket routes' own parser, so that a destination never refuses what was accepted here
    parseBucketSettings(ts, { name: (f) => `target_settings.${f}` });
    const out: TargetSettings = {};
    for (const k of BUCKET_SETTINGS_FIELDS) if (ts[k] !== undefined && ts[k] !== null) out[k] = ts[k];
    settings.target_settings = out;
  }
  const batch = objectField(body, 'batch', ['max_records', 'max_bytes', 'max_delay_ms', 'max_in_flight']);
  if (batch) {
    const b: Partial<BatchSettings> = {};
    const r = intField(batch, 'max_records', 'batch', 1);
    if (r !== undefined) b.max_records = r;
    const by = intField(batch, 'max_bytes', 'batch', 1);
    if (by !== undefined) b.max_bytes = by;
    const d = intField(batch, 'max_delay_ms', 'batch', 0, MAX_REPLICATION_DELAY_MS);
    if (d !== undefined) b.max_delay_ms = d;
    const f = intField(batch, 'max_in_flight', 'batch', 1);
    if (f !== undefined) {
      if (f > 64) throw invalid('batch.max_in_flight', 'must be an integer between 1 and 64');
      b.max_in_flight = f;
    }
    settings.batch = b;
  }
  const retry = objectField(body, 'retry', ['initial_ms', 'max_ms', 'max_outage_ms']);
  if (retry) {
    const r: Partial<RetrySettings> = {};
    const i = intField(retry, 'initial_ms', 'retry', 1, MAX_REPLICATION_DELAY_MS);
    if (i !== undefined) r.initial_ms = i;
    const m = intField(retry, 'max_ms', 'retry', 1, MAX_REPLICATION_DELAY_MS);
    if (m !== undefined) r.max_ms = m;
    const o = intField(retry, 'max_outage_ms', 'retry', 0);
    if (o !== undefined) r.max_outage_ms = o;
    if ((r.initial_ms ?? DEFAULTS.retry.initial_ms) > (r.max_ms ?? DEFAULTS.retry.max_ms)) {
      throw invalid('retry.initial_ms', 'must not exceed retry.max_ms');
    }
    settings.retry = r;
  }
  if (body.on_write_failure !== undefined && body.on_write_failure !== null) {
    if (body.on_write_failure !== 'stop' && body.on_write_failure !== 'skip') {
      throw invalid('on_write_failure', "must be 'stop' or 'skip'");
    }
    settings.on_write_failure = body.on_write_failure;
  }
  Object.assign(settings, parseRunFields(body));
  const base = parseBaseField(body, settings); // base seeding (base-settings.ts)
  if (base) settings.base = base;
  Object.assign(settings, parseSyncFields(body)); // replication_type, sync (sync-settings.ts)
  const log = objectField(body, 'log', ['max_bytes', 'on_overflow']);
  if (log) {
    const l: Partial<LogSettings> = {};
    const mb = intField(log, 'max_bytes', 'log', 0);
    if (mb !== undefined) l.max_bytes = mb;
    if (log.on_overflow !== undefined && log.on_overflow !== null) {
      if (!['block', 'drop_oldest', 'suspend'].includes(log.on_overflow as string)) {
        throw invalid('log.on_overflow', "must be 'block', 'drop_oldest' or 'suspend'");
      }
      l.on_overflow = log.on_overflow as OnOverflow;
    }
    settings.log = l;
  }
  if (group !== undefined) {
    settings.src_group = group;
    checkGroupRun(settings);
  }
  return settings;
}

/**
 * `src_group`: a consistency group instead of `src_bucket` (replication.md §8). Destination
 * buckets are named after the members, so `dst_bucket` is refused with it too.
 */
function parseGroupField(body: Record<string, unknown>): string | undefined {
  if (body.src_group === undefined || body.src_group === null) return undefined;
  if (typeof body.src_group !== 'string' || !isValidBucketName(body.src_group))
    throw invalid('src_group', 'must be the name of a consistency group');
  const given = (k: string): boolean => body[k] !== undefined && body[k] !== null;
  if (given('src_bucket'))
    throw invalid('src_group', "can't be combined with 'src_bucket': a replication has one source");
  if (given('dst_bucket'))
    throw invalid(
      'dst_bucket',
      "can't be given with 'src_group': each member goes to a destination bucket of its own name (with 'dst_prefix' prepended)",
    );
  return body.src_group;
}

/** Settings a group replication does not support (yet): refused, never ignored. */
function checkGroupRun(s: ReplicationSettings): void {
  const no = (field: string, why: string): FerryError =>
    invalid(field, `not supported with 'src_group' (${why})`);
  if (s.replication_type === 'sync') throw no('replication_type', 'a group replication is asynchronous');
  if (s.continuous === false) throw no('continuous', 'a group replication is continuous');
  if (s.since !== undefined || s.until !== undefined)
    throw no(s.since !== undefined ? 'since' : 'until', 'members added later are copied whole');
  if (s.rate_limit) throw no('rate_limit', 'shipments are applied whole');
  if (s.base !== undefined) throw no('base', 'verify compares one bucket');
  if (s.remote !== undefined) throw no('remote', 'give the destination as dst_host and dst_token');
  if (s.on_write_failure === 'skip')
    throw no('on_write_failure', 'a skipped record would break the order of the group');
  // a window is one shipment, which the destination refuses for good beyond its bounds
  if ((s.batch?.max_bytes ?? 0) > MAX_GROUP_BATCH_BYTES)
    throw invalid(
      'batch.max_bytes',
      `must be at most ${MAX_GROUP_BATCH_BYTES} with 'src_group' (a window is one shipment of at most ${MAX_SHIPMENT_BYTES} bytes)`,
    );
  if ((s.batch?.max_records ?? 0) > MAX_GROUP_BATCH_RECORDS)
    throw invalid(
      'batch.max_records',
      `must be at most ${MAX_GROUP_BATCH_RECORDS} with 'src_group' (a window is one shipment of at most ${MAX_SHIPMENT_ITEMS} changes)`,
    );
  if (s.dst_prefix !== '' && !isValidBucketName(`${s.dst_prefix}x`))
    throw invalid(
      'dst_prefix',
      'with src_group it is prepended to bucket names: use letters, digits, - and _',
    );
}

/** `continuous`, `since`, `until` (replication.md §6). */
function parseRunFields(
  body: Record<string, unknown>,
): Pick<ReplicationSettings, 'continuous' | 'since' | 'until'> {
  const out: Pick<ReplicationSettings, 'continuous' | 'since' | 'until'> = {};
  if (body.continuous !== undefined && body.continuous !== null) {
    if (typeof body.continuous !== 'boolean') throw invalid('continuous', 'must be a boolean');
    out.continuous = body.continuous;
  }
  const since = timestampField(body, 'since');
  const until = timestampField(body, 'until');
  if (since !== undefined && until !== undefined && until <= since) {
    throw invalid('until', "must be greater than 'since'");
  }
  if (since !== undefined) out.since = since;
  if (until !== undefined) out.until = until;
  return out;
}

/**
 * Why `value` cannot be sent as an HTTP header value such as `Authorization: Bearer <value>`
 * (undici refuses it, and a token is printable ASCII anyway), or null when it can.
 */
export function headerValueProblem(value: string): string | null {
  if (value.length > MAX_DST_TOKEN_CHARS) return `must be at most ${MAX_DST_TOKEN_CHARS} characters`;
  if (!/^[\x21-\x7e]*$/.test(value)) {
    return 'must be printable ASCII without spaces or control characters (it is sent in an HTTP header)';
  }
  return null;
}

/**
 * `remote`: the name of a remote that holds the destination URL and token, so `dst_host` and
 * `dst_token` may not be given with it (whether it exists is the manager's check).
 */
function parseRemoteField(body: Record<string, unknown>): string | undefined {
  if (body.remote === undefined || body.remote === null) return undefined;
  if (typeof body.remote !== 'string' || !isValidBucketName(body.remote))
    throw invalid('remote', 'must be the name of a remote');
  const given = (k: string): boolean => body[k] !== undefined && body[k] !== null;
  if (given('dst_host') || given('dst_token')) throw Errors.replicationRemoteWithHost();
  return body.remote;
}

/**
 * `filter` (a stored filter's name) and `query_params` (its parameter values, checked against the
 * filter by the manager). A filter replaces `when`: both together are refused.
 */
function parseFilterFields(
  body: Record<string, unknown>,
  when: unknown,
): Pick<ReplicationSettings, 'filter' | 'query_params'> | undefined {
  const has = (k: string): boolean => body[k] !== undefined && body[k] !== null;
  if (!has('filter')) {
    if (has('query_params')) throw invalid('query_params', "needs 'filter'");
    return undefined;
  }
  if (typeof body.filter !== 'string' || !isValidBucketName(body.filter)) {
    throw invalid('filter', 'must be the name of a stored filter');
  }
  if (when !== null) throw invalid('filter', "can't be combined with 'when' (or the legacy filter fields)");
  if (has('query_params') && !isObject(body.query_params)) throw invalid('query_params', 'must be an object');
  return {
    filter: body.filter,
    ...(has('query_params') ? { query_params: body.query_params as Record<string, unknown> } : {}),
  };
}

/**
 * Fills in defaults; `#batch_records` / `#batch_size` directives of `when` override batch limits; a
 * `base` makes its `up_to` the copy's `since`.
 */
export function effectiveSettings(
  s: ReplicationSettings,
  directives: { batchRecords?: number; batchSize?: number } = {},
): EffectiveSettings {
  const batch = { ...DEFAULTS.batch, ...s.batch };
  if (directives.batchRecords !== undefined && directives.batchRecords > 0)
    batch.max_records = directives.batchRecords;
  if (directives.batchSize !== undefined && directives.batchSize > 0) batch.max_bytes = directives.batchSize;
  if (s.rate_limit)
    batch.max_bytes = Math.min(batch.max_bytes, rateLimitedBatchBytes(s.rate_limit.bytes_per_sec));
  const since = copySince(s);
  const explicitRecords = s.batch?.max_records !== undefined || (directives.batchRecords ?? 0) > 0;
  return {
    ...s,
    ...(since !== undefined ? { since } : {}),
    create_target: s.create_target ?? DEFAULTS.create_target,
    batch,
    copy_max_records: explicitRecords ? batch.max_records : COPY_BATCH_RECORDS,
    retry: { ...DEFAULTS.retry, ...s.retry },
    on_write_failure: s.on_write_failure ?? DEFAULTS.on_write_failure,
    log: { ...DEFAULTS.log, ...s.log },
  };
}

/**
 * `dst_host` without user info, for answers: a definition stored before such hosts were refused
 * must not show its credentials.
 */
function withoutCredentials(host: string): string {
  if (host === '' || !URL.canParse(host)) return host;
  const url = new URL(host);
  if (url.username === '' && url.password === '') return host;
  url.username = '';
  url.password = '';
  return url.href.endsWith('/') && !host.endsWith('/') ? url.href.slice(0, -1) : url.href;
}

/** Settings as returned by GET: `dst_token` and credentials in `dst_host` masked, `mode` = current mode. */
export function settingsToWire(s: ReplicationSettings, mode: ReplicationMode): ReplicationSettingsJson {
  const out: Record<string, unknown> = {
    src_bucket: s.src_bucket,
    dst_bucket: s.dst_bucket,
    dst_host: withoutCredentials(s.dst_host),
    dst_prefix: s.dst_prefix,
    dst_token: null,
    entries: s.entries,
    when: s.when,
    mode,
    compression: s.compression,
  };
  for (const k of [
    'create_target',
    'target_settings',
    'batch',
    'retry',
    'on_write_failure',
    'log',
    'filter',
    'query_params',
    'continuous',
    'since',
    'until',
    'replication_type',
    'sync',
    'remote',
    'rate_limit',
    'base',
    'src_group',
  ] as const) {
    if (s[k] !== undefined) out[k] = s[k];
  }
  return out as ReplicationSettingsJson;
}

/** Settings as the compatible GET answers them: ReductStore's keys only (api.md §17.5). */
export function compatibleSettingsToWire(
  s: ReplicationSettings,
  mode: ReplicationMode,
): CompatibleSettingsJson {
  const all = settingsToWire(s, mode);
  return Object.fromEntries(COMPATIBLE_SETTINGS_KEYS.map((k) => [k, all[k]])) as CompatibleSettingsJson;
}

/** Converts wire target settings into a storage patch (u64 → bigint). */
export function targetSettingsPatch(t: TargetSettings | undefined): BucketSettingsPatch {
  return parseBucketSettings(t, { name: (f) => `target_settings.${f}` });
}

/** `dst_prefix` without its surrounding slashes. */
const trimPrefix = (prefix: string): string => prefix.replace(/^\/+|\/+$/g, '');

/** Destination entry name: `dst_prefix` (surrounding slashes trimmed) + '/' + entry. */
export function destinationEntry(prefix: string, entry: string): string {
  const p = trimPrefix(prefix);
  return p === '' ? entry : `${p}/${entry}`;
}

/** Loopback host names used by the compatible self-loop check (api.md §17.6). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '127.0.0.1' || h === '0.0.0.0' || h === '::1';
}

/** Parses `dst_host`; '' = this instance. Throws 422 `Invalid destination host '<h>'`. */
export function parseDestinationHost(host: string): URL | null {
  if (host === '') return null;
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    throw Errors.unprocessable(`Invalid destination host '${host}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw Errors.unprocessable(`Invalid destination host '${host}'`);
  return url;
}

/** Port of a destination URL, with the scheme's default. */
export function urlPort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}
