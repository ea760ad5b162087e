import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig, normalizeBasePath } from '../src/config/load-config.js';
import { parseHumanSize } from '../src/config/env-values.js';

/** An environment with a fresh data path (so that no token file from elsewhere is seen). */
function withData(extra: Record<string, string> = {}): { env: NodeJS.ProcessEnv; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-config-'));
  return { env: { RS_DATA_PATH: dir, ...extra }, dir };
}

function load(extra: Record<string, string> = {}) {
  const { env, dir } = withData(extra);
  try {
    return loadConfig(env);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('defaults without any variable', () => {
  const cwd = process.cwd();
  const c = loadConfig({});
  assert.equal(c.port, 8383);
  assert.equal(c.apiBasePath, '/');
  assert.equal(c.dataPath, resolve(cwd, 'data'));
  assert.deepEqual(c.corsAllowOrigin, []);
  assert.equal(c.instanceName, hostname());
  assert.equal(c.instanceRole, 'STANDALONE');
  assert.deepEqual(c.defaults, {
    quota_type: 'NONE',
    quota_size: 0n,
    max_block_size: 64_000_000n,
    max_block_records: 1024n,
  });
  assert.deepEqual(c.io, {
    operationTimeoutMs: 30_000,
    batchMaxMetadataSize: 512_000,
    batchMaxSize: 8_000_000,
    batchMaxRecords: 85,
    batchTimeoutMs: 5_000,
    batchRecordsTimeoutMs: 1_000,
  });
  assert.deepEqual(c.systemEvents, { enabled: true, quotaSize: 10_000_000_000n });
  assert.deepEqual(c.replication, { timeoutMs: 5_000, logSize: 1_000_000, verifySsl: true });
  assert.equal(c.storage.durability, 'fsync');
  assert.equal(c.certPath, undefined);
  assert.deepEqual(c.tokens, []);
  assert.deepEqual(c.buckets, []);
  assert.deepEqual(c.replications, []);
});

test('no authentication configured: auth disabled and loopback only, decision logged', () => {
  const c = load();
  assert.deepEqual(c.auth, { mode: 'disabled' });
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.allowOpen, false);
  assert.ok(c.warnings.some((w) => w.includes('127.0.0.1')));
  assert.equal(c.publicUrl, 'http://127.0.0.1:8383/');
});

test('auth disabled explicitly still listens on loopback unless opened', () => {
  assert.equal(load({ RS_DISABLE_AUTH: 'true' }).host, '127.0.0.1');
  const open = load({ RS_DISABLE_AUTH: 'true', FERRY_ALLOW_OPEN: 'true' });
  assert.equal(open.host, '0.0.0.0');
  assert.equal(open.allowOpen, true);
  assert.ok(open.warnings.some((w) => w.includes('without authentication')));
  const explicit = load({ RS_HOST: '0.0.0.0' });
  assert.equal(explicit.host, '0.0.0.0');
  assert.ok(explicit.warnings.some((w) => w.includes('RS_HOST')));
});

test('token modes', () => {
  const p = load({ RS_API_TOKEN: 'secret' });
  assert.deepEqual(p.auth, { mode: 'provisioned', token: 'secret' });
  assert.equal(p.host, '0.0.0.0');
  assert.deepEqual(load({ RS_INIT_API_TOKEN: 'x' }).auth, { mode: 'init', token: 'x' });
  assert.throws(
    () => load({ RS_API_TOKEN: 'a', RS_INIT_API_TOKEN: 'b' }),
    /RS_API_TOKEN and RS_INIT_API_TOKEN/,
  );
  assert.throws(() => load({ RS_API_TOKEN: 'a', RS_DISABLE_AUTH: 'true' }), /RS_DISABLE_AUTH/);
  assert.throws(() => load({ RS_DISABLE_AUTH: 'maybe' }), /RS_DISABLE_AUTH: invalid boolean 'maybe'/);
  // Provisioned tokens alone keep authentication on (no init token).
  const none = load({ RS_TOKEN_A_NAME: 'reader', RS_TOKEN_A_VALUE: 'v' });
  assert.deepEqual(none.auth, { mode: 'none' });
  assert.equal(none.host, '0.0.0.0');
});

test('an existing token file keeps authentication on', () => {
  const { env, dir } = withData();
  try {
    mkdirSync(join(dir, '.ferry'));
    writeFileSync(join(dir, '.ferry', 'tokens.json'), '{"version":1,"init_token_created":true,"tokens":[]}');
    assert.deepEqual(loadConfig(env).auth, { mode: 'none' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('listen address, base path, TLS, public URL, CORS, instance', () => {
  const c = load({
    RS_API_TOKEN: 't',
    RS_HOST: '192.168.1.2',
    RS_PORT: '9000',
    RS_API_BASE_PATH: 'ferry/api',
    RS_CERT_PATH: '/c.pem',
    RS_CERT_KEY_PATH: '/k.pem',
    RS_CORS_ALLOW_ORIGIN: 'https://a.example, https://b.example ,',
    RS_INSTANCE_NAME: 'edge-01',
    RS_INSTANCE_ROLE: 'replica',
  });
  assert.equal(c.host, '192.168.1.2');
  assert.equal(c.port, 9000);
  assert.equal(c.apiBasePath, '/ferry/api/');
  assert.equal(c.certPath, '/c.pem');
  assert.equal(c.certKeyPath, '/k.pem');
  assert.equal(c.publicUrl, 'https://192.168.1.2:9000/ferry/api/');
  assert.deepEqual(c.corsAllowOrigin, ['https://a.example', 'https://b.example']);
  assert.equal(c.instanceName, 'edge-01');
  assert.equal(c.instanceRole, 'REPLICA');
  assert.equal(load({ RS_PUBLIC_URL: 'https://x.example/' }).publicUrl, 'https://x.example/');
  assert.equal(load({ RS_API_TOKEN: 't', RS_PORT: '80' }).publicUrl, 'http://0.0.0.0/');
  assert.deepEqual(load({ RS_CORS_ALLOW_ORIGIN: '*' }).corsAllowOrigin, ['*']);
  assert.throws(() => load({ RS_CERT_PATH: '/c.pem' }), /RS_CERT_PATH and RS_CERT_KEY_PATH/);
  assert.throws(
    () => load({ RS_INSTANCE_ROLE: 'LEADER' }),
    /RS_INSTANCE_ROLE: invalid value 'LEADER' \(allowed: STANDALONE, PRIMARY, SECONDARY, REPLICA\)/,
  );
  assert.throws(() => load({ RS_PORT: '70000' }), /RS_PORT/);
  assert.throws(() => load({ RS_PORT: 'http' }), /RS_PORT/);
});

test('base path normalisation', () => {
  for (const [input, out] of [
    [undefined, '/'],
    ['', '/'],
    ['/', '/'],
    ['api', '/api/'],
    ['/api', '/api/'],
    ['api/', '/api/'],
    ['//a//b//', '/a/b/'],
  ] as const) {
    assert.equal(normalizeBasePath(input), out, String(input));
  }
});

test('human sizes: decimal KB/MB/GB, binary KiB/MiB/GiB', () => {
  assert.equal(parseHumanSize('1000'), 1000n);
  assert.equal(parseHumanSize('10GB'), 10_000_000_000n);
  assert.equal(parseHumanSize('512MB'), 512_000_000n);
  assert.equal(parseHumanSize('1KiB'), 1024n);
  assert.equal(parseHumanSize('4 GiB'), 4n * 1024n ** 3n);
  assert.equal(parseHumanSize('2mib'), 2n * 1024n ** 2n);
  assert.equal(parseHumanSize('1.5GB'), 1_500_000_000n);
  assert.equal(parseHumanSize('3k'), 3000n);
  assert.equal(parseHumanSize('7B'), 7n);
  assert.equal(parseHumanSize('1TB'), 10n ** 12n);
  assert.equal(parseHumanSize('ten GB'), undefined);
  assert.equal(parseHumanSize('10XB'), undefined);
  assert.equal(parseHumanSize('-1'), undefined);
});

test('bucket defaults, IO, system events, replication globals, durability', () => {
  const c = load({
    RS_DEFAULTS_BUCKET_QUOTA_TYPE: 'fifo',
    RS_DEFAULTS_BUCKET_QUOTA_SIZE: '1GB',
    RS_DEFAULTS_BUCKET_MAX_BLOCK_SIZE: '32MiB',
    RS_DEFAULTS_BUCKET_MAX_BLOCK_RECORDS: '256',
    RS_IO_OPERATION_TIMEOUT: '10',
    RS_IO_BATCH_MAX_METADATA_SIZE: '1MB',
    RS_IO_BATCH_MAX_SIZE: '16000000',
    RS_IO_BATCH_MAX_RECORDS: '20',
    RS_IO_BATCH_TIMEOUT: '500ms',
    RS_IO_BATCH_RECORDS_TIMEOUT: '0.25',
    RS_SYSTEM_EVENTS_ENABLED: 'false',
    RS_SYSTEM_EVENTS_QUOTA_SIZE: '100MB',
    RS_REPLICATION_TIMEOUT: '2',
    RS_REPLICATION_LOG_SIZE: '5000',
    RS_REPLICATION_VERIFY_SSL: 'false',
    RS_REPLICATION_CA_PATH: '/ca.pem',
    FERRY_DURABILITY: 'none',
    RS_AUDIT_ENABLED: 'true',
  });
  assert.deepEqual(c.defaults, {
    quota_type: 'FIFO',
    quota_size: 1_000_000_000n,
    max_block_size: 32n * 1024n * 1024n,
    max_block_records: 256n,
  });
  assert.deepEqual(c.io, {
    operationTimeoutMs: 10_000,
    batchMaxMetadataSize: 1_000_000,
    batchMaxSize: 16_000_000,
    batchMaxRecords: 20,
    batchTimeoutMs: 500,
    batchRecordsTimeoutMs: 250,
  });
  assert.deepEqual(c.systemEvents, { enabled: false, quotaSize: 100_000_000n });
  assert.deepEqual(c.replication, { timeoutMs: 2_000, logSize: 5000, verifySsl: false, caPath: '/ca.pem' });
  assert.equal(c.storage.durability, 'none');
  assert.ok(c.warnings.some((w) => w.includes('RS_AUDIT_ENABLED')));
  assert.ok(c.warnings.some((w) => w.includes('FERRY_DURABILITY=none')));
  assert.throws(
    () => load({ RS_DEFAULTS_BUCKET_QUOTA_TYPE: 'SOFT' }),
    /Invalid bucket setting 'RS_DEFAULTS_BUCKET_QUOTA_TYPE': unknown value 'SOFT', expected one of NONE, FIFO, HARD/,
  );
  assert.throws(
    () => load({ RS_DEFAULTS_BUCKET_QUOTA_SIZE: 'lots' }),
    /RS_DEFAULTS_BUCKET_QUOTA_SIZE: invalid size 'lots'/,
  );
  assert.throws(() => load({ RS_IO_BATCH_MAX_RECORDS: '0' }), /RS_IO_BATCH_MAX_RECORDS/);
  assert.throws(() => load({ RS_IO_BATCH_TIMEOUT: 'soon' }), /RS_IO_BATCH_TIMEOUT: invalid duration/);
  assert.throws(
    () => load({ FERRY_DURABILITY: 'sometimes' }),
    /FERRY_DURABILITY: invalid value 'sometimes' \(allowed: fsync, none\)/,
  );
  assert.throws(() => load({ RS_SYSTEM_EVENTS_ENABLED: 'nah' }), /RS_SYSTEM_EVENTS_ENABLED/);
});

test('provisioned tokens', () => {
  const c = load({
    RS_TOKEN_1_NAME: 'reader',
    RS_TOKEN_1_VALUE: 'reader-secret',
    RS_TOKEN_1_READ: 'a, b-*',
    RS_TOKEN_1_EXPIRES_AT: '2030-01-01T00:00:00Z',
    RS_TOKEN_ADMIN_X_NAME: 'admin',
    RS_TOKEN_ADMIN_X_VALUE: 'admin-secret',
    RS_TOKEN_ADMIN_X_FULL_ACCESS: 'true',
    RS_TOKEN_ADMIN_X_WRITE: 'c',
    RS_TOKEN_BROKEN_NAME: 'no-value',
  });
  assert.deepEqual(c.tokens, [
    {
      name: 'reader',
      value: 'reader-secret',
      fullAccess: false,
      read: ['a', 'b-*'],
      write: [],
      expiresAt: '2030-01-01T00:00:00.000Z',
    },
    { name: 'admin', value: 'admin-secret', fullAccess: true, read: [], write: ['c'] },
  ]);
  assert.ok(c.warnings.some((w) => w.includes('RS_TOKEN_BROKEN_')));
  assert.throws(
    () => load({ RS_TOKEN_1_NAME: 'x', RS_TOKEN_1_VALUE: 'v', RS_TOKEN_1_EXPIRES_AT: 'tomorrow' }),
    /RS_TOKEN_1_EXPIRES_AT: invalid date/,
  );
  assert.throws(
    () => load({ RS_TOKEN_1_NAME: 'x', RS_TOKEN_1_VALUE: 'v', RS_TOKEN_1_FULL_ACCESS: 'sure' }),
    /RS_TOKEN_1_FULL_ACCESS/,
  );
  // token names follow the rule of names created over HTTP (newline, ✓, 300 characters refused)
  for (const bad of ['a\nb', 'ok✓', 'x'.repeat(300)]) {
    assert.throws(
      () => load({ RS_TOKEN_1_NAME: bad, RS_TOKEN_1_VALUE: 'v' }),
      /RS_TOKEN_1_NAME: a token name has 1 to 255 letters, digits/,
    );
  }
  assert.equal(
    load({ RS_TOKEN_1_NAME: 'edge-device_7', RS_TOKEN_1_VALUE: 'v' }).tokens[0]!.name,
    'edge-device_7',
  );
  // Ignored (with a warning) when authentication is disabled explicitly.
  const disabled = load({ RS_DISABLE_AUTH: 'true', RS_TOKEN_1_NAME: 'x', RS_TOKEN_1_VALUE: 'v' });
  assert.deepEqual(disabled.tokens, []);
  assert.ok(disabled.warnings.some((w) => w.includes('RS_TOKEN_')));
});

test('provisioned buckets with human sizes', () => {
  const c = load({
    RS_BUCKET_1_NAME: 'cams',
    RS_BUCKET_1_QUOTA_TYPE: 'FIFO',
    RS_BUCKET_1_QUOTA_SIZE: '10GB',
    RS_BUCKET_1_MAX_BLOCK_SIZE: '1MiB',
    RS_BUCKET_1_MAX_BLOCK_RECORDS: '100',
    RS_BUCKET_2_NAME: 'plain',
    RS_BUCKET_3_QUOTA_TYPE: 'HARD',
  });
  assert.deepEqual(c.buckets, [
    {
      name: 'cams',
      settings: {
        quota_type: 'FIFO',
        quota_size: 10_000_000_000n,
        max_block_size: 1_048_576n,
        max_block_records: 100n,
      },
    },
    { name: 'plain', settings: {} },
  ]);
  assert.ok(c.warnings.some((w) => w.includes('RS_BUCKET_3_NAME')));
  assert.throws(
    () => load({ RS_BUCKET_1_NAME: 'bad name' }),
    /RS_BUCKET_1_NAME: invalid bucket name 'bad name'/,
  );
  assert.throws(
    () => load({ RS_BUCKET_1_NAME: 'b', RS_BUCKET_1_QUOTA_SIZE: '10 parsecs' }),
    /RS_BUCKET_1_QUOTA_SIZE: invalid size/,
  );
  assert.throws(
    () => load({ RS_BUCKET_1_NAME: 'b', RS_BUCKET_1_QUOTA_TYPE: 'LIFO' }),
    /RS_BUCKET_1_QUOTA_TYPE/,
  );
});

test('provisioned objects come sorted by ID', () => {
  // Sorting the variable names alone puts RS_BUCKET_A_B_NAME before RS_BUCKET_A_NAME.
  const c = load({ RS_BUCKET_A_B_NAME: 'second', RS_BUCKET_A_NAME: 'first' });
  assert.deepEqual(
    c.buckets.map((b) => b.name),
    ['first', 'second'],
  );
});

test('a label filter named like a replication setting is only a filter', () => {
  const c = load({
    RS_REPLICATION_R1_NAME: 'r1',
    RS_REPLICATION_R1_SRC_BUCKET: 'a',
    RS_REPLICATION_R1_DST_BUCKET: 'b',
    RS_REPLICATION_R1_DST_HOST: 'http://127.0.0.1:8383',
    RS_REPLICATION_R1_INCLUDE_MODE: 'fast',
    RS_REPLICATION_R1_EXCLUDE_NAME: 'draft',
  });
  assert.deepEqual(c.replications, [
    {
      name: 'r1',
      settings: {
        src_bucket: 'a',
        dst_bucket: 'b',
        dst_host: 'http://127.0.0.1:8383',
        include: { MODE: 'fast' },
        exclude: { NAME: 'draft' },
      },
    },
  ]);
  // No bogus `R1_INCLUDE` / `R1_EXCLUDE` replication reported as incomplete.
  assert.deepEqual(
    c.warnings.filter((w) => w.includes('RS_REPLICATION_')),
    [],
  );
});

test('provisioned replications in the wire shape', () => {
  const c = load({
    RS_REPLICATION_TIMEOUT: '3',
    RS_REPLICATION_LOG_SIZE: '10',
    RS_REPLICATION_1_NAME: 'to-cloud',
    RS_REPLICATION_1_SRC_BUCKET: 'src',
    RS_REPLICATION_1_DST_BUCKET: 'dst',
    RS_REPLICATION_1_DST_HOST: 'https://cloud:8383',
    RS_REPLICATION_1_DST_TOKEN: 'dst-secret-123',
    RS_REPLICATION_1_ENTRIES: 'cam-*, sensors/**',
    RS_REPLICATION_1_DST_PREFIX: 'robot-1',
    RS_REPLICATION_1_WHEN: '{"&quality": {"$eq": "ok"}, "$limit": 18446744073709551615}',
    RS_REPLICATION_1_MODE: 'Paused',
    RS_REPLICATION_1_COMPRESSION: 'zstd',
    RS_REPLICATION_LEGACY_NAME: 'legacy',
    RS_REPLICATION_LEGACY_SRC_BUCKET: 'a',
    RS_REPLICATION_LEGACY_DST_BUCKET: 'b',
    RS_REPLICATION_LEGACY_DST_HOST: 'http://127.0.0.1:8383',
    RS_REPLICATION_LEGACY_EACH_S: '0.5',
    RS_REPLICATION_LEGACY_EACH_N: '10',
    RS_REPLICATION_LEGACY_INCLUDE_camera: 'front',
    RS_REPLICATION_LEGACY_EXCLUDE_quality: 'bad',
    RS_REPLICATION_X_NAME: 'incomplete',
    RS_REPLICATION_X_SRC_BUCKET: 'a',
  });
  assert.deepEqual(c.replications, [
    {
      name: 'to-cloud',
      settings: {
        src_bucket: 'src',
        dst_bucket: 'dst',
        dst_host: 'https://cloud:8383',
        dst_token: 'dst-secret-123',
        entries: ['cam-*', 'sensors/**'],
        dst_prefix: 'robot-1',
        when: { '&quality': { $eq: 'ok' }, $limit: 18446744073709551615n },
        mode: 'paused',
        compression: 'zstd',
      },
    },
    {
      name: 'legacy',
      settings: {
        src_bucket: 'a',
        dst_bucket: 'b',
        dst_host: 'http://127.0.0.1:8383',
        each_s: 0.5,
        each_n: 10,
        include: { camera: 'front' },
        exclude: { quality: 'bad' },
      },
    },
  ]);
  // Mode is absent when not set, so the persisted mode wins.
  assert.ok(!('mode' in (c.replications[1]?.settings ?? {})));
  assert.ok(
    c.warnings.some(
      (w) => w.includes('RS_REPLICATION_X_DST_BUCKET') && w.includes('RS_REPLICATION_X_DST_HOST'),
    ),
  );
  assert.equal(c.replication.timeoutMs, 3000);
  assert.equal(c.replication.logSize, 10);
  const badWhen = load({
    RS_REPLICATION_1_NAME: 'r',
    RS_REPLICATION_1_SRC_BUCKET: 'a',
    RS_REPLICATION_1_DST_BUCKET: 'b',
    RS_REPLICATION_1_DST_HOST: 'http://h',
    RS_REPLICATION_1_WHEN: '{nope',
  });
  assert.deepEqual(badWhen.replications, []);
  assert.ok(badWhen.warnings.some((w) => w.includes('RS_REPLICATION_1_WHEN')));
  // Warnings never contain the destination token.
  assert.ok(!c.warnings.some((w) => w.includes('dst-secret-123')));
});

test('connection bounds: defaults, human durations, 0 refused (it would switch a bound off)', () => {
  assert.deepEqual(load().http, { headersTimeoutMs: 20_000, keepAliveTimeoutMs: 5_000, maxConnections: 512 });
  assert.deepEqual(
    load({ FERRY_HEADERS_TIMEOUT: '2.5', FERRY_KEEP_ALIVE_TIMEOUT: '500ms', FERRY_MAX_CONNECTIONS: '64' })
      .http,
    { headersTimeoutMs: 2_500, keepAliveTimeoutMs: 500, maxConnections: 64 },
  );
  assert.throws(() => load({ FERRY_HEADERS_TIMEOUT: '0' }), /FERRY_HEADERS_TIMEOUT: must be greater than 0/);
  assert.throws(() => load({ FERRY_KEEP_ALIVE_TIMEOUT: '0s' }), /FERRY_KEEP_ALIVE_TIMEOUT/);
  assert.throws(() => load({ FERRY_MAX_CONNECTIONS: '0' }), /FERRY_MAX_CONNECTIONS: invalid value/);
});

test('query bounds: defaults, TTL as a duration in seconds', () => {
  assert.deepEqual(load().queries, { maxOpen: 10_000, maxOpenPerToken: 1_000, maxTtlSeconds: 3_600 });
  assert.deepEqual(
    load({ FERRY_MAX_QUERIES: '50', FERRY_MAX_QUERIES_PER_TOKEN: '5', FERRY_MAX_QUERY_TTL: '2m' }).queries,
    { maxOpen: 50, maxOpenPerToken: 5, maxTtlSeconds: 120 },
  );
  assert.throws(
    () => load({ FERRY_MAX_QUERIES_PER_TOKEN: '0' }),
    /FERRY_MAX_QUERIES_PER_TOKEN: invalid value/,
  );
});
