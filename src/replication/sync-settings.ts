/**
 * `replication_type` and `sync` settings of a replication (replication.md §3, §7): parsing (422
 * naming the field) and the effective values with defaults filled in.
 */
import { Errors, type FerryError } from '../protocol/errors.js';
import { jsonNumber } from '../protocol/json.js';
import { MAX_SYNC_RECOVER_MS, MAX_SYNC_TIMEOUT_MS } from '../protocol/limits.js';
import type { ReplicationSettings, SyncSettings } from '../protocol/replications.js';

/** Defaults: 2 s before a write gives up on its destination; 5 s of health before returning to sync. */
export const SYNC_DEFAULTS: SyncSettings = { timeout_ms: 2000, on_timeout: 'fail', recover_after_ms: 5000 };

/**
 * Connections to the destination of a sync replication, and entries of one window delivered at
 * once (at least `batch.max_in_flight`): writers spread over many entries wait for one round trip,
 * not one per `max_in_flight` entries.
 */
export const SYNC_CONNECTIONS = 16;

/**
 * Small write groups (entries) of one window a sync replication delivers at once to a target that
 * joins them into few requests (write-coalescer.ts); the others go `SYNC_CONNECTIONS` at a time.
 */
export const SYNC_GROUPS = 128;

const invalid = (field: string, why: string): FerryError =>
  Errors.unprocessable(`Invalid replication setting '${field}': ${why}`);

function boundedInt(v: unknown, field: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = jsonNumber(v);
  const num = typeof n === 'bigint' ? Number(n) : n;
  if (num === undefined || !Number.isInteger(num) || num < min || num > max) {
    throw invalid(field, `must be an integer between ${min} and ${max}`);
  }
  return num;
}

/**
 * Reads `replication_type` and `sync` from a settings body. `sync` without
 * `replication_type: "sync"` is refused: it would silently do nothing.
 */
export function parseSyncFields(
  body: Record<string, unknown>,
): Pick<ReplicationSettings, 'replication_type' | 'sync'> {
  const type = body.replication_type;
  if (type !== undefined && type !== null && type !== 'async' && type !== 'sync') {
    throw invalid('replication_type', "must be 'async' or 'sync'");
  }
  if (type === 'sync' && body.continuous === false) {
    throw invalid('replication_type', "'sync' needs a continuous replication (continuous: false ends)");
  }
  const raw = body.sync;
  if (raw === undefined || raw === null) return type === 'sync' ? { replication_type: 'sync' } : {};
  if (type !== 'sync') throw invalid('sync', "is only allowed with replication_type 'sync'");
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('sync', 'must be an object');
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!['timeout_ms', 'on_timeout', 'recover_after_ms'].includes(k))
      throw invalid(`sync.${k}`, 'unknown field');
  }
  const sync: Partial<SyncSettings> = {};
  const timeout = boundedInt(obj.timeout_ms, 'sync.timeout_ms', 1, MAX_SYNC_TIMEOUT_MS);
  if (timeout !== undefined) sync.timeout_ms = timeout;
  const recover = boundedInt(obj.recover_after_ms, 'sync.recover_after_ms', 0, MAX_SYNC_RECOVER_MS);
  if (recover !== undefined) sync.recover_after_ms = recover;
  if (obj.on_timeout !== undefined && obj.on_timeout !== null) {
    if (obj.on_timeout !== 'fail' && obj.on_timeout !== 'degrade') {
      throw invalid('sync.on_timeout', "must be 'fail' or 'degrade'");
    }
    sync.on_timeout = obj.on_timeout;
  }
  return { replication_type: 'sync', sync };
}

/** The sync settings of a sync replication with defaults filled in; undefined for an async one. */
export function effectiveSync(
  s: Pick<ReplicationSettings, 'replication_type' | 'sync'>,
): SyncSettings | undefined {
  if (s.replication_type !== 'sync') return undefined;
  return { ...SYNC_DEFAULTS, ...s.sync };
}
