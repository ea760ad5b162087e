/**
 * Consistency group API (replication.md §8): CRUD, membership rules (a bucket in at most one
 * group, unknown buckets, bounds, malformed bodies), persistence across restarts and provisioning
 * from `FERRY_GROUP_<ID>_*`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import type { RunningFerry } from '../src/server.js';
import { call } from './helpers/ferry-api.js';
import { startFerryIn } from './helpers/test-server.js';

const TOKEN = 'api-groups-token';
let dir: string;
let ferry: RunningFerry;
let logs: string[] = [];
const node = () => ({ url: ferry.url, token: TOKEN });

async function start(env: Record<string, string> = {}): Promise<void> {
  logs = [];
  ferry = await startFerryIn(dir, TOKEN, env, (l) => logs.push(l));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-groups-'));
  await start();
  for (const b of ['cam', 'lidar', 'pose', 'other'])
    assert.equal((await call(node(), 'POST', `/b/${b}`)).status, 200);
});

after(async () => {
  await ferry?.close();
  await rm(dir, { recursive: true, force: true });
});

test('CRUD: create, get, list, update, delete', async () => {
  assert.deepEqual((await call(node(), 'GET', '/groups')).json, { groups: [] });
  assert.equal((await call(node(), 'POST', '/groups/robot', { buckets: ['cam', 'lidar'] })).status, 200);
  const got = await call(node(), 'GET', '/groups/robot');
  assert.deepEqual(got.json, { name: 'robot', buckets: ['cam', 'lidar'], is_provisioned: false });
  const again = await call(node(), 'POST', '/groups/robot', { buckets: ['pose'] });
  assert.deepEqual([again.status, again.error], [409, "Group 'robot' already exists"]);

  assert.equal(
    (await call(node(), 'PUT', '/groups/robot', { buckets: ['cam', 'lidar', 'pose'] })).status,
    200,
  );
  assert.deepEqual((await call(node(), 'GET', '/groups')).json, {
    groups: [{ name: 'robot', buckets: ['cam', 'lidar', 'pose'], is_provisioned: false }],
  });
  assert.equal((await call(node(), 'DELETE', '/groups/robot')).status, 200);
  for (const [m, body] of [['GET'], ['PUT', { buckets: [] }], ['DELETE']] as const) {
    const r = await call(node(), m, '/groups/robot', body);
    assert.deepEqual([m, r.status, r.error], [m, 404, "Group 'robot' does not exist"]);
  }
});

test('membership: a bucket belongs to at most one group; unknown buckets are 404', async () => {
  assert.equal((await call(node(), 'POST', '/groups/g1', { buckets: ['cam'] })).status, 200);
  const taken = await call(node(), 'POST', '/groups/g2', { buckets: ['lidar', 'cam'] });
  assert.deepEqual(
    [taken.status, taken.error],
    [409, "Bucket 'cam' is already a member of group 'g1' (a bucket belongs to at most one group)"],
  );
  // nothing of the refused group remains
  assert.equal((await call(node(), 'GET', '/groups/g2')).status, 404);
  assert.equal((await call(node(), 'POST', '/groups/g2', { buckets: ['lidar'] })).status, 200);
  const moved = await call(node(), 'PUT', '/groups/g2', { buckets: ['lidar', 'cam'] });
  assert.equal(moved.status, 409);
  assert.deepEqual((await call(node(), 'GET', '/groups/g2')).json, {
    name: 'g2',
    buckets: ['lidar'],
    is_provisioned: false,
  });
  // a group may keep its own members on update
  assert.equal((await call(node(), 'PUT', '/groups/g1', { buckets: ['cam', 'pose'] })).status, 200);
  const unknown = await call(node(), 'POST', '/groups/g3', { buckets: ['nope'] });
  assert.deepEqual([unknown.status, unknown.error], [404, "Bucket 'nope' for group 'g3' does not exist"]);
  // once removed from a group, a bucket is free again
  assert.equal((await call(node(), 'DELETE', '/groups/g1')).status, 200);
  assert.equal((await call(node(), 'POST', '/groups/g3', { buckets: ['cam'] })).status, 200);
  for (const g of ['g2', 'g3']) assert.equal((await call(node(), 'DELETE', `/groups/${g}`)).status, 200);
});

test('malformed bodies and names are 422 naming the problem', async () => {
  const cases: Array<[unknown, string]> = [
    ['[1]', 'Invalid group settings: expected a JSON object {"buckets": [...]}'],
    [{}, "Invalid group settings: 'buckets' must be an array of bucket names"],
    [{ buckets: 'cam' }, "Invalid group settings: 'buckets' must be an array of bucket names"],
    [{ buckets: ['cam'], mode: 'x' }, "Invalid group settings: unknown field 'mode'"],
    [{ buckets: ['cam', 7] }, "Invalid group settings: 'buckets[1]' is not a bucket name"],
    [{ buckets: ['a/b'] }, "Invalid group settings: 'buckets[0]' is not a bucket name"],
    [{ buckets: ['cam', 'cam'] }, "Invalid group settings: bucket 'cam' is listed twice"],
    [
      { buckets: Array.from({ length: 65 }, (_, i) => `b${i}`) },
      'Invalid group settings: a group has at most 64 buckets (got 65)',
    ],
  ];
  for (const [body, message] of cases) {
    const r = await call(node(), 'POST', '/groups/bad', body, {
      headers: { 'content-type': 'application/json' },
    });
    assert.deepEqual([r.status, r.error], [422, message], JSON.stringify(body));
  }
  const name = await call(node(), 'POST', '/groups/b%C3%A4d', { buckets: [] });
  assert.equal(name.status, 422);
  assert.equal((await call(node(), 'GET', '/groups')).text, '{"groups":[]}');
});

test('groups need full access', async () => {
  const r = await call({ url: ferry.url, token: 'wrong' }, 'GET', '/groups');
  assert.equal(r.status, 401);
});

test('groups survive a restart', async () => {
  assert.equal((await call(node(), 'POST', '/groups/kept', { buckets: ['pose', 'lidar'] })).status, 200);
  await ferry.close();
  await start();
  assert.deepEqual((await call(node(), 'GET', '/groups/kept')).json, {
    name: 'kept',
    buckets: ['pose', 'lidar'],
    is_provisioned: false,
  });
  assert.equal((await call(node(), 'DELETE', '/groups/kept')).status, 200);
});

test('provisioning from FERRY_GROUP_<ID>_*: read-only, authoritative for its members', async () => {
  assert.equal((await call(node(), 'POST', '/groups/manual', { buckets: ['other', 'cam'] })).status, 200);
  await ferry.close();
  await start({
    RS_BUCKET_P_NAME: 'prov-bucket',
    FERRY_GROUP_A_NAME: 'fleet',
    FERRY_GROUP_A_BUCKETS: 'prov-bucket, cam',
    FERRY_GROUP_B_NAME: 'broken',
    FERRY_GROUP_B_BUCKETS: 'missing',
  });
  assert.deepEqual((await call(node(), 'GET', '/groups/fleet')).json, {
    name: 'fleet',
    buckets: ['prov-bucket', 'cam'],
    is_provisioned: true,
  });
  // the environment wins: 'cam' left the group made over HTTP, with a warning
  assert.deepEqual((await call(node(), 'GET', '/groups/manual')).json, {
    name: 'manual',
    buckets: ['other'],
    is_provisioned: false,
  });
  assert.ok(
    logs.some((l) => l.includes("Bucket 'cam' left group 'manual' for provisioned group 'fleet'")),
    logs.join('\n'),
  );
  assert.ok(
    logs.some((l) =>
      l.includes("Provisioned group 'broken' ignored: Bucket 'missing' for group 'broken' does not exist"),
    ),
    logs.join('\n'),
  );
  assert.equal((await call(node(), 'GET', '/groups/broken')).status, 404);
  const put = await call(node(), 'PUT', '/groups/fleet', { buckets: [] });
  assert.deepEqual([put.status, put.error], [409, "Can't update provisioned group 'fleet'"]);
  const del = await call(node(), 'DELETE', '/groups/fleet');
  assert.deepEqual([del.status, del.error], [409, "Can't remove provisioned group 'fleet'"]);
  const take = await call(node(), 'PUT', '/groups/manual', { buckets: ['other', 'cam'] });
  assert.equal(take.status, 409);

  // without the variables the group stays, as an ordinary one
  await ferry.close();
  await start();
  assert.deepEqual((await call(node(), 'GET', '/groups/fleet')).json, {
    name: 'fleet',
    buckets: ['prov-bucket', 'cam'],
    is_provisioned: false,
  });
  assert.equal((await call(node(), 'DELETE', '/groups/fleet')).status, 200);
});

test('FERRY_GROUP_<ID>_*: a bucket or name provisioned twice stops the start, a group without a name is dropped', () => {
  const base = { RS_DATA_PATH: dir };
  assert.throws(
    () =>
      loadConfig({
        ...base,
        FERRY_GROUP_A_NAME: 'a',
        FERRY_GROUP_A_BUCKETS: 'x,y',
        FERRY_GROUP_B_NAME: 'b',
        FERRY_GROUP_B_BUCKETS: 'y',
      }),
    /FERRY_GROUP_B_BUCKETS: bucket 'y' is also in provisioned group 'a'/,
  );
  assert.throws(
    () => loadConfig({ ...base, FERRY_GROUP_A_NAME: 'a', FERRY_GROUP_B_NAME: 'a' }),
    /FERRY_GROUP_B_NAME: group 'a' is provisioned twice/,
  );
  const c = loadConfig({
    ...base,
    FERRY_GROUP_X_BUCKETS: 'a',
    FERRY_GROUP_Y_NAME: 'y',
    FERRY_GROUP_Y_BUCKETS: ' a , b ,',
  });
  assert.deepEqual(c.groups, [{ name: 'y', buckets: ['a', 'b'] }]);
  assert.ok(c.warnings.some((w) => w.includes('FERRY_GROUP_X_NAME is required')));
});
