/**
 * Reads the server configuration from `RS_*` / `FERRY_*` environment variables (api.md §18).
 *
 * Ferry defaults that differ from ReductStore, and why:
 * - `RS_DATA_PATH` defaults to `./data` (resolved against the working directory) instead of `/data`,
 *   so that a first start works without root permissions.
 * - Authentication. With `RS_API_TOKEN` or `RS_INIT_API_TOKEN` the server authenticates requests.
 *   `RS_DISABLE_AUTH=true` disables authentication explicitly. When none of them is set, ReductStore
 *   runs without authentication; Ferry does the same (auth mode `disabled`) only while there is
 *   nothing to protect: if tokens are provisioned (`RS_TOKEN_<ID>_*`) or a token file from an
 *   earlier run exists, authentication stays on (mode `none`: no init token).
 * - Listening address. A server without authentication listens on `127.0.0.1` unless the user says
 *   otherwise explicitly, with `RS_HOST` or `FERRY_ALLOW_OPEN=true`; with authentication the
 *   default is ReductStore's `0.0.0.0`. The decision is recorded in `warnings` so the server logs it.
 * - `FERRY_DURABILITY` (`fsync` default | `none`), `FERRY_MAX_JSON_BODY` (default 16 MB), the
 *   connection bounds `FERRY_HEADERS_TIMEOUT`, `FERRY_KEEP_ALIVE_TIMEOUT`, `FERRY_MAX_CONNECTIONS`
 *   and the query bounds `FERRY_MAX_QUERIES`, `FERRY_MAX_QUERIES_PER_TOKEN`, `FERRY_MAX_QUERY_TTL`
 *   are Ferry's own; `FERRY_DIGEST_ROUTE=false` turns the range-digest route (verify) off.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { BucketSettings } from '../storage/types.js';
import type { FerryConfig } from './types.js';
import {
  envValue,
  parseBool,
  parseDurationMs,
  parseEnum,
  parseIntIn,
  parseList,
  parseSize,
  parseSizeNumber,
} from './env-values.js';
import {
  readBucketSettings,
  readProvisionedBuckets,
  readProvisionedReplications,
  readProvisionedTokens,
} from './provisioning.js';
import { readProvisionedLifecycles } from './provisioned-lifecycles.js';
import { readProvisionedGroups } from './provisioned-groups.js';

/** Location of the persisted token store below the data path. */
export const TOKEN_FILE = join('.ferry', 'tokens.json');

const ROLES = ['STANDALONE', 'PRIMARY', 'SECONDARY', 'REPLICA'] as const;

/** Normalises a base path so that it begins and ends with exactly one '/'. */
export function normalizeBasePath(text: string | undefined): string {
  const inner = (text ?? '')
    .split('/')
    .filter((s) => s !== '')
    .join('/');
  return inner === '' ? '/' : `/${inner}/`;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function defaultPublicUrl(tls: boolean, host: string, port: number, basePath: string): string {
  const proto = tls ? 'https' : 'http';
  const omitPort = (tls && port === 443) || (!tls && port === 80);
  const h = host.includes(':') ? `[${host}]` : host;
  return `${proto}://${h}${omitPort ? '' : `:${port}`}${basePath}`;
}

/**
 * Builds the configuration from an environment. Throws an Error naming the variable and the
 * allowed values when a setting is invalid; optional problems end up in `warnings`.
 */
export function loadConfig(env: NodeJS.ProcessEnv): FerryConfig {
  const warnings: string[] = [];
  const get = (name: string) => envValue(env, name);

  const port = get('RS_PORT') ? parseIntIn('RS_PORT', get('RS_PORT') as string, 0, 65535) : 8383;
  const apiBasePath = normalizeBasePath(get('RS_API_BASE_PATH'));
  const dataPath = resolve(get('RS_DATA_PATH') ?? './data');

  const certPath = get('RS_CERT_PATH');
  const certKeyPath = get('RS_CERT_KEY_PATH');
  if ((certPath === undefined) !== (certKeyPath === undefined)) {
    throw new Error(
      'RS_CERT_PATH and RS_CERT_KEY_PATH: HTTPS needs both the certificate and the key path (set both or neither)',
    );
  }

  const corsAllowOrigin = parseList(env['RS_CORS_ALLOW_ORIGIN'] ?? '');
  const instanceName = get('RS_INSTANCE_NAME') ?? hostname();
  const instanceRole = get('RS_INSTANCE_ROLE')
    ? parseEnum('RS_INSTANCE_ROLE', get('RS_INSTANCE_ROLE') as string, ROLES)
    : 'STANDALONE';

  // Authentication (§5.2).
  const apiToken = get('RS_API_TOKEN');
  const initToken = get('RS_INIT_API_TOKEN');
  const disableAuth = get('RS_DISABLE_AUTH')
    ? parseBool('RS_DISABLE_AUTH', get('RS_DISABLE_AUTH') as string)
    : false;
  if (apiToken && initToken) {
    throw new Error(
      'RS_API_TOKEN and RS_INIT_API_TOKEN: set only one of them (RS_API_TOKEN is re-applied at every start, RS_INIT_API_TOKEN creates the token once)',
    );
  }
  if (disableAuth && (apiToken || initToken)) {
    throw new Error(
      `RS_DISABLE_AUTH=true contradicts ${apiToken ? 'RS_API_TOKEN' : 'RS_INIT_API_TOKEN'}: remove one of them`,
    );
  }
  const tokens = readProvisionedTokens(env, warnings);
  let auth: FerryConfig['auth'];
  if (disableAuth) auth = { mode: 'disabled' };
  else if (apiToken) auth = { mode: 'provisioned', token: apiToken };
  else if (initToken) auth = { mode: 'init', token: initToken };
  else if (tokens.length > 0 || existsSync(join(dataPath, TOKEN_FILE))) {
    auth = { mode: 'none' };
    warnings.push(
      'Neither RS_API_TOKEN nor RS_INIT_API_TOKEN is set: authentication uses the provisioned and stored tokens only',
    );
  } else {
    auth = { mode: 'disabled' };
    warnings.push(
      'Authentication is disabled: no RS_API_TOKEN, RS_INIT_API_TOKEN or provisioned tokens are configured',
    );
  }
  if (auth.mode === 'disabled' && tokens.length > 0) {
    warnings.push('RS_TOKEN_<ID>_* are ignored because authentication is disabled');
  }

  const allowOpen = get('FERRY_ALLOW_OPEN')
    ? parseBool('FERRY_ALLOW_OPEN', get('FERRY_ALLOW_OPEN') as string)
    : false;
  const metricsOpen = get('FERRY_METRICS_OPEN')
    ? parseBool('FERRY_METRICS_OPEN', get('FERRY_METRICS_OPEN') as string)
    : false;
  // the range-digest route (verify, replication.md §10); off = answered 404 like a plain ReductStore
  const digestRoute = get('FERRY_DIGEST_ROUTE')
    ? parseBool('FERRY_DIGEST_ROUTE', get('FERRY_DIGEST_ROUTE') as string)
    : true;
  let host = get('RS_HOST');
  if (host === undefined) {
    if (auth.mode === 'disabled' && !allowOpen) {
      host = '127.0.0.1';
      warnings.push(
        'Listening on 127.0.0.1 only because authentication is disabled; set RS_HOST or FERRY_ALLOW_OPEN=true to listen on other interfaces',
      );
    } else {
      host = '0.0.0.0';
      if (auth.mode === 'disabled')
        warnings.push('Listening on 0.0.0.0 without authentication (FERRY_ALLOW_OPEN=true)');
    }
  } else if (auth.mode === 'disabled' && !isLoopbackHost(host)) {
    warnings.push(`Listening on ${host} without authentication (RS_HOST is set explicitly)`);
  }

  const publicUrl = get('RS_PUBLIC_URL') ?? defaultPublicUrl(certPath !== undefined, host, port, apiBasePath);

  const defaults: BucketSettings = {
    quota_type: 'NONE',
    quota_size: 0n,
    max_block_size: 64_000_000n,
    max_block_records: 1024n,
    ...readBucketSettings('RS_DEFAULTS_BUCKET_', (suffix) => env[`RS_DEFAULTS_BUCKET_${suffix}`]),
  };

  const duration = (name: string, defMs: number) =>
    get(name) ? parseDurationMs(name, get(name) as string) : defMs;
  /** A duration that must not be 0 (0 would switch the bound off). */
  const positiveDuration = (name: string, defMs: number): number => {
    const ms = duration(name, defMs);
    if (ms <= 0)
      throw new Error(`${name}: must be greater than 0 (allowed: seconds such as 5 or 0.5, or 500ms)`);
    return ms;
  };
  const sizeNum = (name: string, def: number) =>
    get(name) ? parseSizeNumber(name, get(name) as string) : def;
  const int = (name: string, def: number, min: number) =>
    get(name) ? parseIntIn(name, get(name) as string, min, Number.MAX_SAFE_INTEGER) : def;

  const io: FerryConfig['io'] = {
    operationTimeoutMs: duration('RS_IO_OPERATION_TIMEOUT', 30_000),
    batchMaxMetadataSize: sizeNum('RS_IO_BATCH_MAX_METADATA_SIZE', 512_000),
    batchMaxSize: sizeNum('RS_IO_BATCH_MAX_SIZE', 8_000_000),
    batchMaxRecords: int('RS_IO_BATCH_MAX_RECORDS', 85, 1),
    batchTimeoutMs: duration('RS_IO_BATCH_TIMEOUT', 5_000),
    batchRecordsTimeoutMs: duration('RS_IO_BATCH_RECORDS_TIMEOUT', 1_000),
  };

  const systemEvents: FerryConfig['systemEvents'] = {
    enabled: get('RS_SYSTEM_EVENTS_ENABLED')
      ? parseBool('RS_SYSTEM_EVENTS_ENABLED', get('RS_SYSTEM_EVENTS_ENABLED') as string)
      : true,
    quotaSize: get('RS_SYSTEM_EVENTS_QUOTA_SIZE')
      ? parseSize('RS_SYSTEM_EVENTS_QUOTA_SIZE', get('RS_SYSTEM_EVENTS_QUOTA_SIZE') as string)
      : 10_000_000_000n,
  };
  if (get('RS_AUDIT_ENABLED') !== undefined)
    warnings.push('RS_AUDIT_ENABLED is obsolete and ignored; use RS_SYSTEM_EVENTS_ENABLED');

  const replication: FerryConfig['replication'] = {
    timeoutMs: duration('RS_REPLICATION_TIMEOUT', 5_000),
    logSize: int('RS_REPLICATION_LOG_SIZE', 1_000_000, 1),
    verifySsl: get('RS_REPLICATION_VERIFY_SSL')
      ? parseBool('RS_REPLICATION_VERIFY_SSL', get('RS_REPLICATION_VERIFY_SSL') as string)
      : true,
  };
  const caPath = get('RS_REPLICATION_CA_PATH');
  if (caPath !== undefined) replication.caPath = caPath;

  const durability = get('FERRY_DURABILITY')
    ? parseEnum('FERRY_DURABILITY', get('FERRY_DURABILITY') as string, ['fsync', 'none'] as const)
    : 'fsync';
  if (durability === 'none')
    warnings.push('FERRY_DURABILITY=none: acknowledged writes may be lost on power failure');

  const config: FerryConfig = {
    host,
    port,
    apiBasePath,
    dataPath,
    publicUrl,
    corsAllowOrigin,
    instanceName,
    instanceRole,
    auth,
    allowOpen,
    metricsOpen,
    digestRoute,
    defaults,
    tokens: auth.mode === 'disabled' ? [] : tokens,
    buckets: readProvisionedBuckets(env, warnings),
    replications: readProvisionedReplications(env, warnings),
    lifecycles: readProvisionedLifecycles(env, warnings),
    groups: readProvisionedGroups(env, warnings),
    io,
    systemEvents,
    replication,
    storage: { durability },
    maxJsonBody: sizeNum('FERRY_MAX_JSON_BODY', 16_000_000),
    queries: {
      maxOpen: int('FERRY_MAX_QUERIES', 10_000, 1),
      maxOpenPerToken: int('FERRY_MAX_QUERIES_PER_TOKEN', 1_000, 1),
      maxTtlSeconds: Math.ceil(positiveDuration('FERRY_MAX_QUERY_TTL', 3_600_000) / 1000),
    },
    http: {
      headersTimeoutMs: positiveDuration('FERRY_HEADERS_TIMEOUT', 20_000),
      keepAliveTimeoutMs: positiveDuration('FERRY_KEEP_ALIVE_TIMEOUT', 5_000),
      maxConnections: int('FERRY_MAX_CONNECTIONS', 512, 1),
    },
    warnings,
  };
  if (certPath !== undefined) config.certPath = certPath;
  if (get('RS_PUBLIC_URL') !== undefined) config.publicUrlEnv = get('RS_PUBLIC_URL') as string;
  if (certKeyPath !== undefined) config.certKeyPath = certKeyPath;
  return config;
}
