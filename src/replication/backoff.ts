/**
 * Capped exponential backoff with jitter (replication.md §3 `retry`). The delay after the n-th
 * consecutive failure is drawn from [d/2, d] with d = min(max, initial · 2^(n-1)), so that many
 * replications hitting one destination do not retry in lock step; a `Retry-After` from the
 * destination is honoured when it asks for longer.
 */
import type { RetrySettings } from './settings.js';

/** Longest `Retry-After` we accept (a hostile or broken server must not park us for days). */
const MAX_RETRY_AFTER_MS = 3_600_000;

/** Delay in ms before the next attempt after `failures` consecutive failures (>= 1). */
export function backoffDelay(
  retry: RetrySettings,
  failures: number,
  retryAfterMs?: number,
  random = Math.random,
): number {
  const exp = Math.min(retry.max_ms, retry.initial_ms * 2 ** Math.min(30, Math.max(0, failures - 1)));
  const jittered = Math.round(exp / 2 + random() * (exp / 2));
  if (retryAfterMs !== undefined && retryAfterMs > jittered)
    return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  return jittered;
}

/** Parses a `Retry-After` header (delta seconds or HTTP date) into ms from now. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const date = Date.parse(t);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
