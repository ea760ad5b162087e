/**
 * Parses the body of `POST /tokens/{name}` (api.md §5.4): the envelope shape
 * `{permissions: {...}, expires_at?, ttl?, ip_allowlist?}` and the flat shape
 * `{full_access?, read?, write?, ip_allowlist?}`. Unknown fields are rejected with 422 in both.
 * Value checks that have their own messages (§5.6) are left to the token store.
 */
import { Errors, type FerryError } from '../protocol/errors.js';
import { jsonNumber } from '../protocol/json.js';

/** A syntactically valid create request. */
export interface TokenCreateRequest {
  fullAccess: boolean;
  read: string[];
  write: string[];
  /** Raw RFC 3339 text (validated by the store). */
  expiresAt: string | null;
  ttl: number | null;
  ipAllowlist: string[];
}

const ENVELOPE_KEYS = new Set(['permissions', 'expires_at', 'ttl', 'ip_allowlist']);
// The keys of the flat shape and of `permissions` in the envelope shape. Some ReductStore versions
// carried ip_allowlist inside `permissions`; it is accepted there too.
const PERMISSION_KEYS = new Set(['full_access', 'read', 'write', 'ip_allowlist']);

const invalid = (details: string): FerryError => Errors.invalidJson(details);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rejectUnknown(obj: Record<string, unknown>, allowed: Set<string>): void {
  for (const k of Object.keys(obj)) if (!allowed.has(k)) throw invalid(`unknown field '${k}'`);
}

function bool(v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(`'${field}' must be a boolean`);
  return v;
}

function strings(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw invalid(`'${field}' must be an array of strings`);
  return [...(v as string[])];
}

function ttlOf(v: unknown): number | null {
  if (v === undefined || v === null) return null;
  const n = jsonNumber(v);
  if (n === undefined || (typeof n === 'number' && !Number.isInteger(n)) || n < 0) {
    throw invalid("'ttl' must be a non-negative integer (seconds)");
  }
  if (typeof n === 'bigint' || n > Number.MAX_SAFE_INTEGER) throw invalid("'ttl' is too large");
  return n;
}

/** Parses a create body (already JSON-parsed; `undefined` = empty body = `{}`). Throws 422. */
export function parseTokenCreateRequest(body: unknown): TokenCreateRequest {
  if (body === undefined || body === null) body = {};
  if (!isObject(body)) throw invalid('token request must be a JSON object');
  let perms: Record<string, unknown>;
  let ipSource: unknown = body['ip_allowlist'];
  let expiresAt: string | null = null;
  let ttl: number | null = null;
  if ('permissions' in body) {
    rejectUnknown(body, ENVELOPE_KEYS);
    const p = body['permissions'] ?? {};
    if (!isObject(p)) throw invalid("'permissions' must be an object");
    rejectUnknown(p, PERMISSION_KEYS);
    perms = p;
    if (ipSource === undefined || ipSource === null) ipSource = p['ip_allowlist'];
    const e = body['expires_at'];
    if (e !== undefined && e !== null) {
      if (typeof e !== 'string') throw invalid("'expires_at' must be an RFC 3339 date string");
      expiresAt = e;
    }
    ttl = ttlOf(body['ttl']);
  } else {
    rejectUnknown(body, PERMISSION_KEYS);
    perms = body;
  }
  return {
    fullAccess: bool(perms['full_access'], 'full_access'),
    read: strings(perms['read'], 'read'),
    write: strings(perms['write'], 'write'),
    expiresAt,
    ttl,
    ipAllowlist: strings(ipSource, 'ip_allowlist'),
  };
}
