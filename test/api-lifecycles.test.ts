/**
 * Lifecycle API (api.md §16) through reduct-js (`getLifecycleList`, `getLifecycle`,
 * `createLifecycle`, `updateLifecycle`, `setLifecycleMode`, `deleteLifecycle`) and raw HTTP for
 * what 1.20.0 does not send (`processing_interval`), the exact validation messages, persistence
 * across restarts and provisioning from `RS_LIFECYCLE_<ID>_*`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'reduct-js';
import type { RunningFerry } from '../src/server.js';
import { call } from './helpers/ferry-api.js';
import { startFerryIn } from './helpers/test-server.js';

const TOKEN = 'api-lifecycles-token';
let dir: string;
let ferry: RunningFerry;
let client: Client;
let logs: string[] = [];
const node = () => ({ url: ferry.url, token: TOKEN });

async function start(env: Record<string, string> = {}): Promise<void> {
  logs = [];
  ferry = await startFerryIn(dir, TOKEN, env, (l) => logs.push(l));
  client = new Client(ferry.url, { apiToken: TOKEN });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-lifecycles-'));
  await start();
  await client.createBucket('b1');
  await client.createBucket('b2');
});

after(async () => {
  await ferry?.close();
  await rm(dir, { recursive: true, force: true });
});

const settings = {
  lifecycleType: 'delete' as const,
  bucket: 'b1',
  entries: [] as string[],
  olderThan: '1h',
  interval: '10m',
  mode: 'enabled' as const,
};

test('CRUD through reduct-js: create, list, get, update, set mode, delete', async () => {
  assert.deepEqual(await client.getLifecycleList(), []);
  await client.createLifecycle('crud', settings);
  const list = await client.getLifecycleList();
  assert.equal(list.length, 1);
  assert.deepEqual(list[0], {
    name: 'crud',
    mode: 'enabled',
    type: 'delete',
    lastRun: undefined,
    isProvisioned: false,
    isRunning: true,
  });
  const full = await client.getLifecycle('crud');
  assert.equal(full.info.isRunning, true);
  assert.deepEqual(
    { ...full.settings, when: full.settings.when ?? undefined },
    { ...settings, when: undefined },
  );

  const updated = {
    lifecycleType: 'delete' as const,
    bucket: 'b2',
    entries: ['entry-1', 'cam-*'],
    olderThan: '2h',
    interval: '20m',
    when: { '&label': { $eq: 'value' } },
    mode: 'enabled' as const,
  };
  await client.updateLifecycle('crud', updated);
  // json-bigint builds objects without a prototype: compare the plain JSON
  assert.deepEqual(JSON.parse(JSON.stringify((await client.getLifecycle('crud')).settings)), updated);

  await client.setLifecycleMode('crud', 'dry_run');
  const dry = await client.getLifecycle('crud');
  assert.equal(dry.info.mode, 'dry_run');
  assert.equal(dry.settings.mode, 'dry_run');
  assert.equal(dry.settings.olderThan, '2h');
  await client.setLifecycleMode('crud', 'disabled');
  assert.equal((await client.getLifecycle('crud')).info.isRunning, false);

  await client.deleteLifecycle('crud');
  assert.deepEqual(await client.getLifecycleList(), []);
});

test('raw HTTP: defaults, processing_interval echo, last_run after a run', async () => {
  let r = await call(node(), 'POST', '/lifecycles/raw', {
    type: 'delete',
    bucket: 'b1',
    older_than: '7d',
    processing_interval: '12h',
  });
  assert.equal(r.status, 200, r.error ?? '');
  r = await call(node(), 'GET', '/lifecycles/raw');
  const body = r.json as { info: Record<string, unknown>; settings: Record<string, unknown> };
  assert.deepEqual(body.settings, {
    type: 'delete',
    bucket: 'b1',
    entries: [],
    older_than: '7d',
    interval: '3600s',
    processing_interval: '12h',
    when: null,
    mode: 'enabled',
  });
  assert.equal(body.info['last_run'], null);
  assert.equal(body.info['is_running'], true);

  const run = await call(node(), 'POST', '/lifecycles/raw/run');
  assert.equal(run.status, 200, run.error ?? '');
  assert.equal((run.json as { status: string }).status, 'ok');
  const info = (await client.getLifecycle('raw')).info;
  assert.ok(info.lastRun instanceof Date && Math.abs(info.lastRun.getTime() - Date.now()) < 60_000);
  await client.deleteLifecycle('raw');
});

test('compress policies run like delete ones (an empty bucket: nothing to compress)', async () => {
  await client.createLifecycle('zip', { ...settings, lifecycleType: 'compress' });
  const r = await call(node(), 'GET', '/lifecycles/zip');
  const info = (r.json as { info: Record<string, unknown> }).info;
  assert.equal(info['type'], 'compress');
  assert.equal(info['is_running'], true);
  assert.equal(info['status_reason'], undefined);
  const run = await call(node(), 'POST', '/lifecycles/zip/run');
  const result = run.json as Record<string, unknown>;
  assert.equal(result['status'], 'ok');
  assert.equal(result['compressed_blocks'], 0);
  await client.deleteLifecycle('zip');
});

test('validation messages of §16', async () => {
  const base = { type: 'delete', bucket: 'b1', older_than: '1h' };
  const cases: Array<[string, unknown, number, string]> = [
    [
      'short',
      { ...base, older_than: '30m' },
      422,
      "Lifecycle older_than '30m' is shorter than minimum allowed value of 1h",
    ],
    [
      'bad-age',
      { ...base, older_than: 'old' },
      422,
      "Invalid lifecycle older_than 'old': expected a duration such as 30m, 12h or 7d",
    ],
    [
      'zip-when',
      { ...base, type: 'compress', when: { '&a': { $eq: 1 } } },
      422,
      "Lifecycle of type 'compress' cannot have a 'when' condition",
    ],
    ['ext', { ...base, when: { '#ext': { x: {} } } }, 422, "Lifecycle condition cannot use '#ext' directive"],
    [
      'bad-when',
      { ...base, when: { $nope: [] } },
      422,
      "Invalid lifecycle condition: Operator '$nope' not supported",
    ],
    [
      'pi-zero',
      { ...base, processing_interval: '0s' },
      422,
      "Lifecycle processing_interval '0s' must be positive",
    ],
    [
      'pi-neg',
      { ...base, processing_interval: '-1h' },
      422,
      "Lifecycle processing_interval '-1h' must be positive",
    ],
    [
      'iv',
      { ...base, interval: '0s' },
      422,
      "Lifecycle interval '0s' is shorter than minimum allowed value of 1s",
    ],
    [
      'type',
      { ...base, type: 'shred' },
      422,
      "Invalid lifecycle type 'shred': expected 'delete' or 'compress'",
    ],
    [
      'mode',
      { ...base, mode: 'on' },
      422,
      "Invalid lifecycle mode 'on': expected 'enabled', 'disabled' or 'dry_run'",
    ],
    ['nob', { type: 'delete', older_than: '1h' }, 422, 'Invalid JSON: missing field `bucket`'],
    ['noage', { type: 'delete', bucket: 'b1' }, 422, 'Invalid JSON: missing field `older_than`'],
    [
      'nobucket',
      { ...base, bucket: 'missing' },
      404,
      "Bucket 'missing' for lifecycle 'nobucket' does not exist",
    ],
    ['bad.name', base, 422, "Invalid lifecycle name 'bad.name': use letters, digits, '-' and '_' only"],
  ];
  for (const [name, body, status, message] of cases) {
    const r = await call(node(), 'POST', `/lifecycles/${name}`, body);
    assert.equal(r.status, status, `${name}: ${r.error}`);
    assert.equal(r.error, message, name);
  }

  assert.equal((await call(node(), 'POST', '/lifecycles/dup', base)).status, 200);
  const dup = await call(node(), 'POST', '/lifecycles/dup', base);
  assert.deepEqual([dup.status, dup.error], [409, "Lifecycle 'dup' already exists"]);
  const badMode = await call(node(), 'PATCH', '/lifecycles/dup/mode', { mode: 'paused' });
  assert.deepEqual(
    [badMode.status, badMode.error],
    [422, "Invalid lifecycle mode 'paused': expected 'enabled', 'disabled' or 'dry_run'"],
  );
  await call(node(), 'DELETE', '/lifecycles/dup');
  for (const [method, path] of [
    ['GET', '/lifecycles/none'],
    ['PUT', '/lifecycles/none'],
    ['DELETE', '/lifecycles/none'],
    ['PATCH', '/lifecycles/none/mode'],
  ] as const) {
    const r = await call(
      node(),
      method,
      path,
      method === 'PATCH' ? { mode: 'enabled' } : method === 'PUT' ? base : undefined,
    );
    assert.deepEqual([r.status, r.error], [404, "Lifecycle 'none' does not exist"], `${method} ${path}`);
  }

  const reader = await client.createToken('reader', { fullAccess: false, read: ['b1'] });
  const denied = await call({ url: ferry.url, token: reader }, 'GET', '/lifecycles');
  assert.deepEqual([denied.status, denied.error], [403, "Token 'reader' doesn't have full access"]);
});

test('policies and their mode survive a restart; the file is 0600', async () => {
  await client.createLifecycle('keep', { ...settings, interval: '1h' });
  await client.setLifecycleMode('keep', 'dry_run');
  await ferry.close();
  await start();
  const full = await client.getLifecycle('keep');
  assert.equal(full.info.mode, 'dry_run');
  assert.equal(full.settings.interval, '1h');
  assert.equal((await stat(join(dir, '.ferry', 'lifecycles.json'))).mode & 0o777, 0o600);
  await client.deleteLifecycle('keep');
});

test('provisioning from RS_LIFECYCLE_<ID>_*: read-only except the mode', async () => {
  await ferry.close();
  const env = {
    RS_LIFECYCLE_A_NAME: 'prov',
    RS_LIFECYCLE_A_BUCKET: 'b1',
    RS_LIFECYCLE_A_OLDER_THAN: '30d',
    RS_LIFECYCLE_A_ENTRIES: 'cam-*, logs',
    RS_LIFECYCLE_A_PROCESSING_INTERVAL: '1d',
    RS_LIFECYCLE_A_WHEN: '{"&kind": {"$eq": "tmp"}}',
    RS_LIFECYCLE_B_NAME: 'broken',
    RS_LIFECYCLE_B_BUCKET: 'b1',
    RS_LIFECYCLE_B_OLDER_THAN: '1m',
    RS_LIFECYCLE_C_NAME: 'incomplete',
  };
  await start(env);
  const r = await call(node(), 'GET', '/lifecycles/prov');
  assert.equal(r.status, 200, r.error ?? '');
  const body = r.json as { info: Record<string, unknown>; settings: Record<string, unknown> };
  assert.equal(body.info['is_provisioned'], true);
  assert.deepEqual(body.settings, {
    type: 'delete',
    bucket: 'b1',
    entries: ['cam-*', 'logs'],
    older_than: '30d',
    interval: '3600s',
    processing_interval: '1d',
    when: { '&kind': { $eq: 'tmp' } },
    mode: 'enabled',
  });
  assert.equal((await call(node(), 'GET', '/lifecycles/broken')).status, 404);
  assert.ok(
    logs.some((l) => l.includes("Provisioned lifecycle 'broken' ignored")),
    logs.join('\n'),
  );
  assert.ok(
    logs.some((l) => l.includes('RS_LIFECYCLE_C_* dropped')),
    logs.join('\n'),
  );

  const put = await call(node(), 'PUT', '/lifecycles/prov', { bucket: 'b1', older_than: '1h' });
  assert.deepEqual([put.status, put.error], [409, "Can't update provisioned lifecycle 'prov'"]);
  const del = await call(node(), 'DELETE', '/lifecycles/prov');
  assert.deepEqual([del.status, del.error], [409, "Can't remove provisioned lifecycle 'prov'"]);
  await client.setLifecycleMode('prov', 'disabled');
  await ferry.close();
  await start(env);
  assert.equal((await client.getLifecycle('prov')).info.mode, 'disabled', 'the PATCHed mode is kept');

  // no longer provisioned: becomes an ordinary policy
  await ferry.close();
  await start();
  assert.equal((await client.getLifecycle('prov')).info.isProvisioned, false);
  await client.deleteLifecycle('prov');
});
