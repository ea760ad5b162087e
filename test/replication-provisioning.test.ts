/**
 * Provisioned replications (api.md §17.6, §18, §20.5): declared by RS_REPLICATION_<ID>_* variables,
 * read-only over HTTP except their mode, which is persisted; `_MODE` overrides it only when set.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { startFerry, type RunningFerry } from '../src/server.js';
import { call, type ApiNode } from './helpers/ferry-api.js';

const TOKEN = 'provisioning-test-token';
let dir = '';
let ferry: RunningFerry | undefined;

after(async () => {
  await ferry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(extra: Record<string, string> = {}): Promise<RunningFerry> {
  await ferry?.close();
  ferry = await startFerry(
    loadConfig({
      RS_DATA_PATH: dir,
      RS_API_TOKEN: TOKEN,
      RS_HOST: '127.0.0.1',
      RS_PORT: '0',
      RS_SYSTEM_EVENTS_ENABLED: 'false',
      RS_BUCKET_1_NAME: 'src',
      RS_REPLICATION_1_NAME: 'prov',
      RS_REPLICATION_1_SRC_BUCKET: 'src',
      RS_REPLICATION_1_DST_BUCKET: 'dst',
      RS_REPLICATION_1_DST_HOST: 'http://127.0.0.1:9',
      RS_REPLICATION_1_DST_TOKEN: 'secret-destination-token',
      RS_REPLICATION_1_ENTRIES: 'cam-*,logs',
      ...extra,
    }),
    { log: () => undefined },
  );
  return ferry;
}

/** The running server, for the helpers of ferry-api.ts. */
const node = (): ApiNode => ({ url: ferry!.url, token: TOKEN });

test('provisioned replications are read-only except their persisted mode', async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-provisioning-'));
  await start();

  const got = await call(node(), 'GET', '/replications/prov');
  assert.equal(got.status, 200);
  const { info, settings } = got.json as { info: Record<string, unknown>; settings: Record<string, unknown> };
  assert.equal(info.is_provisioned, true);
  assert.equal(info.mode, 'enabled');
  assert.deepEqual(
    { ...settings },
    {
      src_bucket: 'src',
      dst_bucket: 'dst',
      dst_host: 'http://127.0.0.1:9',
      dst_prefix: '',
      dst_token: null,
      entries: ['cam-*', 'logs'],
      when: null,
      mode: 'enabled',
      compression: 'none',
    },
    'the token is masked',
  );
  const list = (await call(node(), 'GET', '/replications')).json as {
    replications: Array<Record<string, unknown>>;
  };
  assert.ok(list.replications.some((r) => r.name === 'prov' && r.is_provisioned === true));

  const put = await call(node(), 'PUT', '/replications/prov', {
    src_bucket: 'src',
    dst_bucket: 'x',
    dst_host: 'http://127.0.0.1:9',
  });
  assert.deepEqual([put.status, put.error], [409, "Can't update provisioned replication 'prov'"]);
  const del = await call(node(), 'DELETE', '/replications/prov');
  assert.deepEqual([del.status, del.error], [409, "Can't remove provisioned replication 'prov'"]);

  assert.equal((await call(node(), 'PATCH', '/replications/prov/mode', { mode: 'paused' })).status, 200);
  assert.equal(
    ((await call(node(), 'GET', '/replications/prov')).json as { info: { mode: string } }).info.mode,
    'paused',
  );

  // Restart without _MODE: the persisted mode wins.
  await start();
  assert.equal(
    ((await call(node(), 'GET', '/replications/prov')).json as { info: { mode: string } }).info.mode,
    'paused',
  );

  // Restart with _MODE: it overrides.
  await start({ RS_REPLICATION_1_MODE: 'Disabled' });
  const after = (await call(node(), 'GET', '/replications/prov')).json as {
    info: { mode: string; is_provisioned: boolean };
  };
  assert.deepEqual([after.info.mode, after.info.is_provisioned], ['disabled', true]);
  // The provisioned source bucket survived three starts and is still provisioned.
  const bucket = (await call(node(), 'GET', '/b/src')).json as { info: { is_provisioned: boolean } };
  assert.equal(bucket.info.is_provisioned, true);
});
