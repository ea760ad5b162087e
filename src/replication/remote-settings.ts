/**
 * Settings of a remote (replication.md §5): validation of a `POST`/`PUT` body into
 * {@link RemoteSettings}. Every field is bounded and a bad one is refused with 422 naming it; the
 * messages never contain the token or proxy credentials.
 */
import { Errors } from '../protocol/errors.js';
import { jsonNumber } from '../protocol/json.js';
import { MAX_REMOTE_CA_CHARS, MAX_REMOTE_TIMEOUT_MS, MAX_REMOTE_URL_CHARS } from '../protocol/limits.js';
import { headerValueProblem } from './settings.js';

/** A remote's settings as stored (with its secrets). */
export interface RemoteSettings {
  url: string;
  /** Secret. */
  token: string | null;
  /** Secret when it carries credentials. */
  proxy: string | null;
  connect_timeout_ms: number;
  request_timeout_ms: number;
  verify_tls: boolean;
  ca: string | null;
}

/** Server-wide defaults of the optional fields (`RS_REPLICATION_TIMEOUT`, `RS_REPLICATION_VERIFY_SSL`). */
export interface RemoteDefaults {
  timeoutMs: number;
  verifyTls: boolean;
}

const FIELDS = ['url', 'token', 'proxy', 'connect_timeout_ms', 'request_timeout_ms', 'verify_tls', 'ca'];

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const has = (body: Record<string, unknown>, k: string): boolean => body[k] !== undefined && body[k] !== null;

/** Parses an `http(s)` URL field; `what` says which parts it may have. Never echoes the value. */
function urlField(value: unknown, field: string, allowCredentials: boolean, protocols: string[]): URL {
  if (typeof value !== 'string') throw Errors.remoteInvalid(field, 'must be a string');
  if (value.length > MAX_REMOTE_URL_CHARS)
    throw Errors.remoteInvalid(field, `must be at most ${MAX_REMOTE_URL_CHARS} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw Errors.remoteInvalid(field, 'must be an absolute URL');
  }
  if (!protocols.includes(url.protocol))
    throw Errors.remoteInvalid(field, `must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  if (!allowCredentials && (url.username !== '' || url.password !== ''))
    throw Errors.remoteInvalid(field, "must not contain credentials (give them in 'token')");
  if (url.search !== '' || url.hash !== '')
    throw Errors.remoteInvalid(field, 'must not have a query or a fragment');
  return url;
}

function timeoutField(body: Record<string, unknown>, field: string, fallback: number): number {
  if (!has(body, field)) return fallback;
  const n = jsonNumber(body[field]);
  const num = typeof n === 'bigint' ? Number(n) : n;
  if (num === undefined || !Number.isInteger(num) || num < 1 || num > MAX_REMOTE_TIMEOUT_MS)
    throw Errors.remoteInvalid(field, `must be an integer between 1 and ${MAX_REMOTE_TIMEOUT_MS}`);
  return num;
}

/**
 * Validates a remote body. On PUT (`previous` given) the body replaces the remote, except that
 * `token` omitted or `null` keeps the previous token (it is never returned, so a client cannot
 * send it back); `""` removes it.
 */
export function parseRemoteSettings(
  body: unknown,
  defaults: RemoteDefaults,
  previous?: RemoteSettings,
): RemoteSettings {
  if (!isObject(body)) throw Errors.invalidJson('expected a remote object');
  for (const k of Object.keys(body)) if (!FIELDS.includes(k)) throw Errors.remoteInvalid(k, 'unknown field');
  if (!has(body, 'url')) throw Errors.remoteInvalid('url', 'is required');
  const url = urlField(body.url, 'url', false, ['http:', 'https:']);
  let token: string | null = previous?.token ?? null;
  if (has(body, 'token')) {
    if (typeof body.token !== 'string') throw Errors.remoteInvalid('token', 'must be a string');
    const problem = headerValueProblem(body.token);
    if (problem) throw Errors.remoteInvalid('token', problem);
    token = body.token === '' ? null : body.token;
  }
  let proxy: string | null = null;
  if (has(body, 'proxy')) {
    const p = urlField(body.proxy, 'proxy', true, ['http:']);
    if (p.pathname !== '/' && p.pathname !== '')
      throw Errors.remoteInvalid('proxy', 'must be http://[user:password@]host:port without a path');
    proxy = p.href;
  }
  let verifyTls = defaults.verifyTls;
  if (has(body, 'verify_tls')) {
    if (typeof body.verify_tls !== 'boolean') throw Errors.remoteInvalid('verify_tls', 'must be a boolean');
    verifyTls = body.verify_tls;
  }
  let ca: string | null = null;
  if (has(body, 'ca')) {
    if (typeof body.ca !== 'string') throw Errors.remoteInvalid('ca', 'must be a string of PEM certificates');
    if (body.ca.length > MAX_REMOTE_CA_CHARS)
      throw Errors.remoteInvalid('ca', `must be at most ${MAX_REMOTE_CA_CHARS} characters`);
    if (!body.ca.includes('-----BEGIN CERTIFICATE-----'))
      throw Errors.remoteInvalid('ca', 'must contain PEM certificates (-----BEGIN CERTIFICATE-----)');
    ca = body.ca;
  }
  return {
    url: url.href.replace(/\/+$/, ''),
    token,
    proxy,
    connect_timeout_ms: timeoutField(body, 'connect_timeout_ms', defaults.timeoutMs),
    request_timeout_ms: timeoutField(body, 'request_timeout_ms', defaults.timeoutMs),
    verify_tls: verifyTls,
    ca,
  };
}

/** The proxy URL without its credentials, for answers and messages. */
export function publicProxy(proxy: string | null): string | null {
  if (proxy === null) return null;
  const u = new URL(proxy);
  return `${u.protocol}//${u.host}`;
}

/** True when the proxy URL carries credentials. */
export function proxyHasCredentials(proxy: string | null): boolean {
  if (proxy === null) return false;
  const u = new URL(proxy);
  return u.username !== '' || u.password !== '';
}
