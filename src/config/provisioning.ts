/**
 * Provisioned objects from the environment (api.md §5.8, §7.5, §20.5): `RS_TOKEN_<ID>_*`,
 * `RS_BUCKET_<ID>_*` and `RS_REPLICATION_<ID>_*`, grouped by an arbitrary `<ID>`.
 */
import { parseJson, parseU64 } from '../protocol/json.js';
import { MAX_TOKEN_NAME_BYTES } from '../protocol/limits.js';
import { parseBucketSettings } from '../protocol/bucket-settings.js';
import { isValidBucketName } from '../protocol/names.js';
import { QUOTA_TYPES } from '../storage/types.js';
import type { BucketSettings } from '../storage/types.js';
import type { ProvisionedBucket, ProvisionedReplication, ProvisionedToken } from './types.js';
import { nonEmpty, parseBool, parseList, parseSize } from './env-values.js';

const BUCKET_NAME = /^[A-Za-z0-9_-]+$/;

const byId = ([a]: [string, unknown], [b]: [string, unknown]): number => (a < b ? -1 : a > b ? 1 : 0);

/** Options of {@link collectGroups}. */
export interface GroupOptions {
  /** Keys that look like `<prefix><ID>_<SUFFIX>` but are something else. */
  skip?: RegExp;
  /** IDs that get a group even without any of the variables. */
  ids?: Iterable<string>;
}

/**
 * Groups `<prefix><ID>_<SUFFIX>` variables by ID, sorted by ID (`A` before `A_B`, which sorting
 * the keys alone would not give) so that warnings and objects come in a stable order.
 */
export function collectGroups(
  env: NodeJS.ProcessEnv,
  prefix: string,
  suffixes: readonly string[],
  opts: GroupOptions = {},
): Map<string, Map<string, string>> {
  const re = new RegExp(`^${prefix}(.+)_(${suffixes.join('|')})$`);
  const groups = new Map<string, Map<string, string>>();
  for (const key of Object.keys(env).sort()) {
    const m = re.exec(key);
    const value = env[key];
    if (!m || value === undefined || opts.skip?.test(key)) continue;
    const id = m[1] as string;
    let g = groups.get(id);
    if (!g) groups.set(id, (g = new Map()));
    g.set(m[2] as string, value);
  }
  for (const id of opts.ids ?? []) if (!groups.has(id)) groups.set(id, new Map());
  return new Map([...groups].sort(byId));
}

/**
 * Bucket settings from `<prefix>{QUOTA_TYPE,QUOTA_SIZE,MAX_BLOCK_SIZE,MAX_BLOCK_RECORDS}`, for
 * `RS_DEFAULTS_BUCKET_` and `RS_BUCKET_<ID>_`; `raw(suffix)` is the value of `<prefix><suffix>`.
 * Unset or blank variables leave their setting out. Sizes take units (`10GB`) and the quota type
 * any case; the values are then checked by the one bucket-settings parser, so a value the bucket
 * routes refuse stops the start with the same message, naming the variable.
 */
export function readBucketSettings(
  prefix: string,
  raw: (suffix: string) => string | undefined,
): Partial<BucketSettings> {
  const value = (suffix: string) => nonEmpty(raw(suffix));
  const wire: Record<string, unknown> = {};
  const qt = value('QUOTA_TYPE');
  if (qt) wire.quota_type = QUOTA_TYPES.find((t) => t === qt.toUpperCase()) ?? qt;
  const qs = value('QUOTA_SIZE');
  if (qs) wire.quota_size = parseSize(`${prefix}QUOTA_SIZE`, qs);
  const bs = value('MAX_BLOCK_SIZE');
  if (bs) wire.max_block_size = parseSize(`${prefix}MAX_BLOCK_SIZE`, bs);
  const br = value('MAX_BLOCK_RECORDS');
  if (br) {
    const n = parseU64(br);
    if (n === undefined) {
      throw new Error(`${prefix}MAX_BLOCK_RECORDS: invalid value '${br}' (allowed: an integer from 1)`);
    }
    wire.max_block_records = n;
  }
  return parseBucketSettings(wire, { name: (f) => `${prefix}${f.toUpperCase()}` }) as Partial<BucketSettings>;
}

/**
 * A provisioned object's `_WHEN` variable (JSON) into `settings.when`. False, with a warning that
 * the object (`what`, e.g. "replication 'r'") is dropped, when it is not valid JSON.
 */
export function readWhenVariable(
  what: string,
  variable: string,
  raw: string | undefined,
  settings: Record<string, unknown>,
  warnings: string[],
): boolean {
  if (raw === undefined) return true;
  try {
    settings['when'] = parseJson(raw);
    return true;
  } catch (e) {
    warnings.push(`Provisioned ${what} dropped: ${variable} is not valid JSON (${(e as Error).message})`);
    return false;
  }
}

/** `RS_TOKEN_<ID>_{NAME,VALUE,FULL_ACCESS,READ,WRITE,EXPIRES_AT}`. */
export function readProvisionedTokens(env: NodeJS.ProcessEnv, warnings: string[]): ProvisionedToken[] {
  const out: ProvisionedToken[] = [];
  const groups = collectGroups(env, 'RS_TOKEN_', [
    'NAME',
    'VALUE',
    'FULL_ACCESS',
    'READ',
    'WRITE',
    'EXPIRES_AT',
  ]);
  for (const [id, g] of groups) {
    const name = nonEmpty(g.get('NAME'));
    const value = nonEmpty(g.get('VALUE'));
    if (!name || !value) {
      warnings.push(
        `Provisioned token RS_TOKEN_${id}_* ignored: RS_TOKEN_${id}_NAME and RS_TOKEN_${id}_VALUE are required`,
      );
      continue;
    }
    // the same rule as names created over HTTP: such a token could never authenticate
    if (name.length > MAX_TOKEN_NAME_BYTES || !isValidBucketName(name)) {
      throw new Error(
        `RS_TOKEN_${id}_NAME: a token name has 1 to ${MAX_TOKEN_NAME_BYTES} letters, digits, '-' or '_' (got ${JSON.stringify(name.slice(0, 40))})`,
      );
    }
    if (out.some((t) => t.name === name)) {
      throw new Error(`RS_TOKEN_${id}_NAME: token '${name}' is provisioned twice`);
    }
    const token: ProvisionedToken = {
      name,
      value,
      fullAccess: g.has('FULL_ACCESS')
        ? parseBool(`RS_TOKEN_${id}_FULL_ACCESS`, g.get('FULL_ACCESS') as string)
        : false,
      read: parseList(g.get('READ') ?? ''),
      write: parseList(g.get('WRITE') ?? ''),
    };
    const expires = nonEmpty(g.get('EXPIRES_AT'));
    if (expires) {
      const ms = Date.parse(expires);
      if (Number.isNaN(ms)) {
        throw new Error(
          `RS_TOKEN_${id}_EXPIRES_AT: invalid date '${expires}' (allowed: RFC 3339, e.g. 2030-01-01T00:00:00Z)`,
        );
      }
      token.expiresAt = new Date(ms).toISOString();
    }
    out.push(token);
  }
  return out;
}

/** `RS_BUCKET_<ID>_{NAME,QUOTA_TYPE,QUOTA_SIZE,MAX_BLOCK_SIZE,MAX_BLOCK_RECORDS}`. */
export function readProvisionedBuckets(env: NodeJS.ProcessEnv, warnings: string[]): ProvisionedBucket[] {
  const out: ProvisionedBucket[] = [];
  const groups = collectGroups(env, 'RS_BUCKET_', [
    'NAME',
    'QUOTA_TYPE',
    'QUOTA_SIZE',
    'MAX_BLOCK_SIZE',
    'MAX_BLOCK_RECORDS',
  ]);
  for (const [id, g] of groups) {
    const name = nonEmpty(g.get('NAME'));
    if (!name) {
      warnings.push(`Provisioned bucket RS_BUCKET_${id}_* ignored: RS_BUCKET_${id}_NAME is required`);
      continue;
    }
    if (!BUCKET_NAME.test(name)) {
      throw new Error(
        `RS_BUCKET_${id}_NAME: invalid bucket name '${name}' (allowed: letters, digits, '-' and '_')`,
      );
    }
    if (out.some((b) => b.name === name))
      throw new Error(`RS_BUCKET_${id}_NAME: bucket '${name}' is provisioned twice`);
    out.push({ name, settings: readBucketSettings(`RS_BUCKET_${id}_`, (k) => g.get(k)) });
  }
  return out;
}

const REPLICATION_SUFFIXES = [
  'NAME',
  'SRC_BUCKET',
  'DST_BUCKET',
  'DST_HOST',
  'DST_TOKEN',
  'ENTRIES',
  'DST_PREFIX',
  'WHEN',
  'MODE',
  'COMPRESSION',
  'EACH_S',
  'EACH_N',
] as const;
const LABEL_FILTER = /^RS_REPLICATION_(.+?)_(INCLUDE|EXCLUDE)_(.+)$/;

/**
 * `RS_REPLICATION_<ID>_*` into raw settings in the wire shape of api.md §17.2. Validation of the
 * values is the replication module's job; here a task without one of its four required variables
 * (or with an unparsable `_WHEN`) is dropped with a warning, as ReductStore does.
 */
export function readProvisionedReplications(
  env: NodeJS.ProcessEnv,
  warnings: string[],
): ProvisionedReplication[] {
  // Legacy label filters: RS_REPLICATION_<ID>_INCLUDE_<label>=<value> / _EXCLUDE_<label>. A label
  // may be named like a suffix (`_INCLUDE_MODE`): such keys are filters, never settings of an ID.
  const labelFilters = new Map<
    string,
    { include: Record<string, string>; exclude: Record<string, string> }
  >();
  for (const key of Object.keys(env).sort()) {
    const m = LABEL_FILTER.exec(key);
    const value = env[key];
    if (!m || value === undefined) continue;
    const id = m[1] as string;
    let f = labelFilters.get(id);
    if (!f) labelFilters.set(id, (f = { include: {}, exclude: {} }));
    (m[2] === 'INCLUDE' ? f.include : f.exclude)[m[3] as string] = value;
  }
  // An ID with label filters only still gets a group, so that its missing variables are reported.
  const groups = collectGroups(env, 'RS_REPLICATION_', REPLICATION_SUFFIXES, {
    skip: LABEL_FILTER,
    ids: labelFilters.keys(),
  });

  const out: ProvisionedReplication[] = [];
  for (const [id, g] of groups) {
    const v = (k: string) => nonEmpty(g.get(k));
    const missing = ['NAME', 'SRC_BUCKET', 'DST_BUCKET', 'DST_HOST'].filter((k) => v(k) === undefined);
    if (missing.length > 0) {
      warnings.push(
        `Provisioned replication RS_REPLICATION_${id}_* dropped: missing ${missing.map((k) => `RS_REPLICATION_${id}_${k}`).join(', ')}`,
      );
      continue;
    }
    const name = v('NAME') as string;
    const settings: Record<string, unknown> = {
      src_bucket: v('SRC_BUCKET'),
      dst_bucket: v('DST_BUCKET'),
      dst_host: v('DST_HOST'),
    };
    // The token is kept verbatim (it may legitimately be an empty string = no auth).
    if (g.has('DST_TOKEN')) settings['dst_token'] = (g.get('DST_TOKEN') as string).trim();
    if (g.has('ENTRIES')) settings['entries'] = parseList(g.get('ENTRIES') as string);
    if (g.has('DST_PREFIX')) settings['dst_prefix'] = (g.get('DST_PREFIX') as string).trim();
    if (
      !readWhenVariable(`replication '${name}'`, `RS_REPLICATION_${id}_WHEN`, v('WHEN'), settings, warnings)
    )
      continue;
    const mode = v('MODE');
    if (mode !== undefined) settings['mode'] = mode.toLowerCase();
    const compression = v('COMPRESSION');
    if (compression !== undefined) settings['compression'] = compression.toLowerCase();
    const eachS = v('EACH_S');
    if (eachS !== undefined) {
      const n = Number(eachS);
      if (Number.isFinite(n) && n >= 0) settings['each_s'] = n;
      else warnings.push(`RS_REPLICATION_${id}_EACH_S ignored: '${eachS}' is not a non-negative number`);
    }
    const eachN = v('EACH_N');
    if (eachN !== undefined) {
      const n = parseU64(eachN);
      if (n !== undefined) settings['each_n'] = n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      else warnings.push(`RS_REPLICATION_${id}_EACH_N ignored: '${eachN}' is not a non-negative integer`);
    }
    const f = labelFilters.get(id);
    if (f && Object.keys(f.include).length > 0) settings['include'] = f.include;
    if (f && Object.keys(f.exclude).length > 0) settings['exclude'] = f.exclude;
    if (out.some((r) => r.name === name)) {
      warnings.push(
        `Provisioned replication '${name}' (RS_REPLICATION_${id}_*) dropped: the name is provisioned twice`,
      );
      continue;
    }
    out.push({ name, settings });
  }
  return out;
}
