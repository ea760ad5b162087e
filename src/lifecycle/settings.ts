/**
 * Lifecycle policy settings (api.md §16): the wire object, its validation with the exact 422
 * messages, and the durations in microseconds the jobs use.
 */
import { Errors } from '../protocol/errors.js';
import { describeJsonValue } from '../protocol/json.js';
import { compileCondition, parseDurationLiteral } from '../query/condition/index.js';

export type LifecycleType = 'delete' | 'compress';
export type LifecycleMode = 'enabled' | 'disabled' | 'dry_run';

const TYPES: readonly LifecycleType[] = ['delete', 'compress'];
const MODES: readonly LifecycleMode[] = ['enabled', 'disabled', 'dry_run'];

/** LifecycleSettings as stored and echoed (the durations keep the caller's spelling). */
export interface LifecycleSettings {
  type: LifecycleType;
  bucket: string;
  entries: string[];
  older_than: string;
  interval: string;
  /** Data time processed per run (1.21); null = everything up to the cut-off. */
  processing_interval: string | null;
  when: Record<string, unknown> | null;
  mode: LifecycleMode;
}

/** Durations of a policy in microseconds. */
export interface PolicyDurations {
  olderThanUs: bigint;
  intervalMs: number;
  processingIntervalUs: bigint | undefined;
}

/** `interval` when the body has none (api.md §16). */
export const DEFAULT_INTERVAL = '3600s';
const MIN_OLDER_THAN_US = 3_600_000_000;
const MIN_INTERVAL_US = 1_000_000;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function duration(field: string, value: string): number {
  const us = parseDurationLiteral(value);
  if (us === undefined) throw Errors.lifecycleInvalidDuration(field, value);
  return us;
}

function stringField(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw Errors.lifecycleInvalidField(field, 'expected a string');
  return v;
}

/** Parses a mode value (`enabled`, `disabled`, `dry_run`; case-insensitive). */
export function parseLifecycleMode(v: unknown): LifecycleMode {
  if (typeof v === 'string') {
    const m = v.toLowerCase();
    if ((MODES as readonly string[]).includes(m)) return m as LifecycleMode;
  }
  throw Errors.lifecycleInvalidMode(describeJsonValue(v));
}

/** `{"mode": …}` of `PATCH /lifecycles/{name}/mode`. */
export function parseModeBody(body: unknown): LifecycleMode {
  if (!isObject(body) || body['mode'] === undefined) throw Errors.invalidJson('missing field `mode`');
  return parseLifecycleMode(body['mode']);
}

/**
 * Validates a LifecycleSettings body (POST, PUT, provisioning). 422 with a message naming the
 * field; whether the bucket exists is checked by the manager.
 */
export function parseLifecycleSettings(body: unknown): LifecycleSettings {
  if (!isObject(body)) throw Errors.lifecycleInvalidField('body', 'expected a JSON object');
  const rawType = body['type'] ?? 'delete';
  if (typeof rawType !== 'string' || !(TYPES as readonly string[]).includes(rawType.toLowerCase())) {
    throw Errors.lifecycleInvalidType(describeJsonValue(rawType));
  }
  const type = rawType.toLowerCase() as LifecycleType;
  const bucket = stringField(body, 'bucket');
  if (bucket === undefined || bucket === '') throw Errors.lifecycleMissingField('bucket');

  const rawEntries = body['entries'] ?? [];
  if (!Array.isArray(rawEntries) || rawEntries.some((e) => typeof e !== 'string')) {
    throw Errors.lifecycleInvalidField('entries', 'expected a list of entry names or patterns');
  }

  const olderThan = stringField(body, 'older_than');
  if (olderThan === undefined) throw Errors.lifecycleMissingField('older_than');
  if (duration('older_than', olderThan) < MIN_OLDER_THAN_US)
    throw Errors.lifecycleOlderThanTooShort(olderThan);

  const interval = stringField(body, 'interval') ?? DEFAULT_INTERVAL;
  if (duration('interval', interval) < MIN_INTERVAL_US) throw Errors.lifecycleIntervalTooShort(interval);

  const processing = stringField(body, 'processing_interval') ?? null;
  if (processing !== null && duration('processing_interval', processing) <= 0) {
    throw Errors.lifecycleProcessingNotPositive(processing);
  }

  let when: Record<string, unknown> | null = null;
  const rawWhen = body['when'];
  if (rawWhen !== undefined && rawWhen !== null) {
    if (!isObject(rawWhen)) throw Errors.lifecycleInvalidField('when', 'expected an object');
    when = rawWhen;
  }
  if (when !== null && Object.keys(when).length > 0) {
    if (type === 'compress') throw Errors.lifecycleCompressWithWhen();
    if (Object.keys(when).some((k) => k === '#ext')) throw Errors.lifecycleWhenExt();
    try {
      compileCondition(when);
    } catch (e) {
      throw Errors.lifecycleInvalidCondition((e as Error).message);
    }
  }

  const mode =
    body['mode'] === undefined || body['mode'] === null ? 'enabled' : parseLifecycleMode(body['mode']);
  return {
    type,
    bucket,
    entries: rawEntries as string[],
    older_than: olderThan,
    interval,
    processing_interval: processing,
    when,
    mode,
  };
}

/** The durations of validated settings. */
export function policyDurations(s: LifecycleSettings): PolicyDurations {
  const pi = s.processing_interval === null ? undefined : parseDurationLiteral(s.processing_interval);
  return {
    olderThanUs: BigInt(parseDurationLiteral(s.older_than)!),
    intervalMs: Math.ceil(parseDurationLiteral(s.interval)! / 1000),
    processingIntervalUs: pi === undefined ? undefined : BigInt(pi),
  };
}

/** True when two settings select the same records (the job's cursor stays meaningful). */
export function sameScope(a: LifecycleSettings, b: LifecycleSettings): boolean {
  return (
    a.type === b.type &&
    a.bucket === b.bucket &&
    JSON.stringify(a.entries) === JSON.stringify(b.entries) &&
    JSON.stringify(a.when) === JSON.stringify(b.when)
  );
}
