/**
 * `base` of a replication (replication.md §3, §10; issue 11 item 5): parsing (422 naming the field)
 * and what it changes in the run. Source and destination claim to hold the same records before
 * `up_to`, so the initial copy starts at `up_to` (everything older is the base) and the log ships
 * writes after creation as usual. With `verify: "digest"` the claim is checked first (base-seed.ts).
 */
import type { BaseOnMismatch, BaseSettings, ReplicationSettings } from '../protocol/replications.js';
import { invalidSetting, timestampField } from './setting-fields.js';

const invalid = invalidSetting;

const FIELDS = ['up_to', 'verify', 'on_mismatch'];

/** `on_mismatch` when a `digest` base does not say: a false claim stops the replication. */
export const DEFAULT_ON_MISMATCH: BaseOnMismatch = 'stop';

/**
 * Reads `base` from a settings body (undefined when absent). `since` and `until` are the already
 * parsed run bounds: a `since` after `up_to` would leave `[up_to, since)` neither copied nor
 * claimed, and an `until` at or before `up_to` would leave nothing to copy, so both are refused.
 */
export function parseBaseField(
  body: Record<string, unknown>,
  run: Pick<ReplicationSettings, 'since' | 'until'>,
): BaseSettings | undefined {
  const raw = body.base;
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('base', 'must be an object');
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) if (!FIELDS.includes(k)) throw invalid(`base.${k}`, 'unknown field');
  const upTo = timestampField(obj, 'up_to', 'base.up_to');
  if (upTo === undefined) {
    throw invalid('base.up_to', 'must be a timestamp in microseconds (an integer between 0 and 2^64-1)');
  }
  const verify = obj.verify ?? 'digest';
  if (verify !== 'digest' && verify !== 'trust') throw invalid('base.verify', "must be 'digest' or 'trust'");
  const base: BaseSettings = { up_to: upTo, verify };
  if (obj.on_mismatch !== undefined && obj.on_mismatch !== null) {
    if (obj.on_mismatch !== 'repair' && obj.on_mismatch !== 'stop') {
      throw invalid('base.on_mismatch', "must be 'repair' or 'stop'");
    }
    // a trusted base is never compared: an on_mismatch would silently do nothing
    if (verify === 'trust') throw invalid('base.on_mismatch', "is only allowed with verify 'digest'");
    base.on_mismatch = obj.on_mismatch;
  }
  if (run.since !== undefined && BigInt(run.since) > upTo) {
    throw invalid(
      'since',
      "must not be after 'base.up_to' (the records between would be neither copied nor claimed)",
    );
  }
  if (run.until !== undefined && BigInt(run.until) <= upTo) {
    throw invalid('until', "must be after 'base.up_to'");
  }
  return base;
}

/** Where the run's copy starts: `up_to` with a base (nothing before it is copied), else `since`. */
export function copySince(s: Pick<ReplicationSettings, 'since' | 'base'>): ReplicationSettings['since'] {
  return s.base ? BigInt(s.base.up_to) : s.since;
}

/** The base as its status shows it before anything was checked (on_mismatch filled in). */
export function onMismatchOf(base: BaseSettings): BaseOnMismatch | null {
  return base.verify === 'digest' ? (base.on_mismatch ?? DEFAULT_ON_MISMATCH) : null;
}

/** Whether two bases claim the same (a PUT that keeps the base keeps its verification). */
export function sameBase(a: BaseSettings | undefined, b: BaseSettings | undefined): boolean {
  if (!a || !b) return a === b;
  return BigInt(a.up_to) === BigInt(b.up_to) && a.verify === b.verify && onMismatchOf(a) === onMismatchOf(b);
}
