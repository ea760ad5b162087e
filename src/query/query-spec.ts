/**
 * QueryEntry validation (api.md §9, §12): the JSON body of `POST /io/{b}/q` and
 * `POST /b/{b}/{e}/q`, and the query-string form of the legacy `GET|DELETE /b/{b}/{e}/q`.
 */
import { Errors } from '../protocol/errors.js';
import { toU64, describeJsonValue } from '../protocol/json.js';

export type QueryType = 'QUERY' | 'REMOVE';

/** A validated QueryEntry. Optional bounds stay undefined so that defaults can be applied later. */
export interface QuerySpec {
  queryType: QueryType;
  /** Entry patterns (bucket-level route only); undefined = all entries except `$meta`. */
  entries: string[] | undefined;
  start: bigint | undefined;
  stop: bigint | undefined;
  /** Idle timeout in seconds. */
  ttl: bigint;
  onlyMetadata: boolean;
  continuous: boolean;
  /** Raw `when` object (compiled by the condition module), undefined when absent. */
  when: Record<string, unknown> | undefined;
  strict: boolean;
  /** Names of the extensions requested in `ext` (always rejected: we have none). */
  extensions: string[];
}

/** Default query TTL in seconds (api.md §12). */
export const DEFAULT_TTL = 60n;

/** Fields accepted up to API 1.20 and silently ignored since 1.21. */
const REMOVED_FIELDS = new Set(['include', 'exclude', 'each_s', 'each_n', 'limit']);
const KNOWN_FIELDS = new Set([
  'query_type',
  'entries',
  'start',
  'stop',
  'ttl',
  'only_metadata',
  'continuous',
  'when',
  'strict',
  'ext',
]);

function u64Field(obj: Record<string, unknown>, key: string): bigint | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  const n = toU64(typeof v === 'string' ? undefined : v);
  if (n === undefined) throw Errors.queryInvalidField(`'${key}' must be an unsigned integer`);
  return n;
}

function boolField(obj: Record<string, unknown>, key: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw Errors.queryInvalidField(`'${key}' must be a boolean`);
  return v;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/** Reads `query_type` only (so that HTTP can choose the permission before full validation). */
export function queryTypeOf(body: unknown): QueryType {
  if (!isPlainObject(body)) throw Errors.queryInvalidField('the body must be a JSON object');
  const t = body['query_type'];
  if (t === undefined || t === null) throw Errors.queryInvalidField("missing field 'query_type'");
  if (t !== 'QUERY' && t !== 'REMOVE') {
    throw Errors.queryInvalidField(
      `unknown query_type '${describeJsonValue(t)}', expected 'QUERY' or 'REMOVE'`,
    );
  }
  return t;
}

/**
 * Validates a QueryEntry JSON body (already parsed with `parseJson`). Unknown fields and wrongly
 * typed values → 422; the fields removed in 1.21 are ignored.
 */
export function parseQuerySpec(body: unknown): QuerySpec {
  const queryType = queryTypeOf(body);
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KNOWN_FIELDS.has(key) && !REMOVED_FIELDS.has(key))
      throw Errors.queryInvalidField(`unknown field '${key}'`);
  }

  let entries: string[] | undefined;
  const rawEntries = obj['entries'];
  if (rawEntries !== undefined && rawEntries !== null) {
    if (!Array.isArray(rawEntries) || rawEntries.some((e) => typeof e !== 'string')) {
      throw Errors.queryInvalidField("'entries' must be a list of strings");
    }
    entries = rawEntries as string[];
  }

  let when: Record<string, unknown> | undefined;
  const rawWhen = obj['when'];
  if (rawWhen !== undefined && rawWhen !== null) {
    if (!isPlainObject(rawWhen)) throw Errors.queryInvalidField("'when' must be an object");
    when = rawWhen;
  }

  const extensions: string[] = [];
  const ext = obj['ext'];
  if (ext !== undefined && ext !== null) {
    if (!isPlainObject(ext)) throw Errors.queryInvalidField("'ext' must be an object");
    extensions.push(...Object.keys(ext));
  }

  return {
    queryType,
    entries,
    start: u64Field(obj, 'start'),
    stop: u64Field(obj, 'stop'),
    ttl: u64Field(obj, 'ttl') ?? DEFAULT_TTL,
    onlyMetadata: boolField(obj, 'only_metadata'),
    continuous: boolField(obj, 'continuous'),
    when,
    strict: boolField(obj, 'strict'),
    extensions,
  };
}

function u64Param(params: URLSearchParams, key: string): bigint | undefined {
  const v = params.get(key);
  if (v === null) return undefined;
  const n = toU64(v);
  if (n === undefined) throw Errors.unprocessable(`'${key}' must be an unsigned integer`);
  return n;
}

/**
 * Validates the query string of the legacy `GET /b/{b}/{e}/q?start&stop&ttl&continuous` (QUERY) or
 * `DELETE /b/{b}/{e}/q?start&stop` (REMOVE). The 1.20 parameters (`include-*`, `exclude-*`,
 * `each_s`, `each_n`, `limit`) are ignored.
 */
export function parseQueryParams(params: URLSearchParams, queryType: QueryType): QuerySpec {
  const continuousRaw = params.get('continuous');
  if (continuousRaw !== null && continuousRaw !== 'true' && continuousRaw !== 'false') {
    throw Errors.unprocessable("'continuous' must be 'true' or 'false'");
  }
  return {
    queryType,
    entries: undefined,
    start: u64Param(params, 'start'),
    stop: u64Param(params, 'stop'),
    ttl: u64Param(params, 'ttl') ?? DEFAULT_TTL,
    onlyMetadata: false,
    continuous: continuousRaw === 'true',
    when: undefined,
    strict: false,
    extensions: [],
  };
}

/** `start > stop` on a non-continuous query → 422 `Start time must be before stop time`. */
export function checkTimeRange(spec: QuerySpec): void {
  if (!spec.continuous && spec.start !== undefined && spec.stop !== undefined && spec.start > spec.stop) {
    throw Errors.queryStartAfterStop();
  }
}
