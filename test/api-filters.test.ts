/**
 * Stored filters on a real server process (replication.md §3 `filter` + `query_params`): the
 * `/api/v1/filters` routes, replications that name a filter (only matching records arrive, bad
 * parameters are refused naming them), replications following a new filter version, deletion of a
 * filter in use refused, and filters surviving a restart (file mode 0600).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FilterJson, FilterList } from '../src/protocol/filters.js';
import type { ReplicationStatus } from '../src/protocol/replication-status.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-filters-token';
let ferry: FerryProcess;
let ts = 1_000_000;

before(async () => {
  ferry = await spawnFerry({ token: TOKEN, env: { FERRY_DURABILITY: 'none' } });
  await api(ferry, 'POST', '/b/src');
});
after(() => ferry?.destroy());

const QUALITY = {
  description: 'frames of one quality, at least a score',
  when: { '&quality': { $eq: { $param: 'quality' } }, '&score': { $gte: { $param: 'min_score' } } },
  params: {
    quality: { type: 'string', description: 'label value' },
    min_score: { type: 'integer', default: 0 },
  },
};

async function write(quality: string, score: number): Promise<number> {
  const at = ts++;
  const r = await call(ferry, 'POST', `/b/src/cam?ts=${at}`, 'frame', {
    headers: { 'x-reduct-label-quality': quality, 'x-reduct-label-score': String(score) },
  });
  assert.equal(r.status, 200, String(r.error));
  return at;
}

async function status(name: string): Promise<ReplicationStatus> {
  return (await api(ferry, 'GET', `/replications/${name}/status`)) as ReplicationStatus;
}

test('filter CRUD: create, read, list, conflicts and refusals', async () => {
  assert.equal((await call(ferry, 'POST', '/filters/quality', QUALITY)).status, 200);
  const f = (await api(ferry, 'GET', '/filters/quality')) as FilterJson;
  assert.equal(f.name, 'quality');
  assert.equal(f.version, 1);
  assert.equal(f.description, QUALITY.description);
  assert.deepEqual(f.when, QUALITY.when);
  assert.deepEqual(f.params, QUALITY.params);
  assert.deepEqual(f.used_by, []);
  assert.equal(f.created_at, f.updated_at);
  const list = (await api(ferry, 'GET', '/filters')) as FilterList;
  assert.deepEqual(
    list.filters.map((x) => x.name),
    ['quality'],
  );

  const cases: Array<[string, string, unknown, number, string]> = [
    ['POST', '/filters/quality', QUALITY, 409, "Filter 'quality' already exists"],
    ['PUT', '/filters/nope', QUALITY, 404, "Filter 'nope' does not exist"],
    ['GET', '/filters/nope', undefined, 404, "Filter 'nope' does not exist"],
    ['DELETE', '/filters/nope', undefined, 404, "Filter 'nope' does not exist"],
    [
      'POST',
      '/filters/bad name',
      QUALITY,
      422,
      "Invalid filter name 'bad name': letters, digits, '-' and '_' only",
    ],
    ['POST', '/filters/x', { when: 'no' }, 422, "Invalid filter 'when': must be an object"],
    [
      'POST',
      '/filters/x',
      { when: { '&a': { $eq: { $param: 'p' } } }, params: { p: { type: 'int' } } },
      422,
      "Invalid filter 'params.p.type': must be one of string, number, integer, boolean, array, any",
    ],
  ];
  for (const [method, path, body, code, message] of cases) {
    const r = await call(ferry, method, path, body);
    assert.equal(r.status, code, `${method} ${path}`);
    assert.equal(r.error, message);
  }
  const r = await call(ferry, 'POST', '/filters/x', { when: { '&a': { $bogus: 1 } } });
  assert.equal(r.status, 422);
  assert.match(String(r.error), /^Invalid filter 'when': /);
  assert.equal(
    (await call(ferry, 'GET', '/filters', undefined, { headers: { authorization: '' } })).status,
    401,
  );
});

test('a replication with a filter ships only what the filter with its parameters matches', async () => {
  const refusals: Array<[unknown, string]> = [
    [{}, "Invalid replication setting 'query_params.quality': missing: filter 'quality' needs it"],
    [
      { quality: 'good', colour: 'red' },
      "Invalid replication setting 'query_params.colour': filter 'quality' has no such parameter",
    ],
    [{ quality: 7 }, "Invalid replication setting 'query_params.quality': must be a string"],
    [
      { quality: 'good', min_score: 'high' },
      "Invalid replication setting 'query_params.min_score': must be an integer",
    ],
  ];
  for (const [params, message] of refusals) {
    const r = await call(ferry, 'POST', '/replications/r', {
      src_bucket: 'src',
      dst_bucket: 'dst',
      dst_host: '',
      filter: 'quality',
      query_params: params,
    });
    assert.equal(r.status, 422, JSON.stringify(params));
    assert.equal(r.error, message);
  }
  let r = await call(ferry, 'POST', '/replications/r', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: '',
    filter: 'nope',
  });
  assert.equal(r.error, "Invalid replication setting 'filter': stored filter 'nope' does not exist");
  r = await call(ferry, 'POST', '/replications/r', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: '',
    filter: 'quality',
    query_params: { quality: 'good' },
    when: { '&x': { $eq: 1 } },
  });
  assert.equal(
    r.error,
    "Invalid replication setting 'filter': can't be combined with 'when' (or the legacy filter fields)",
  );

  await api(ferry, 'POST', '/replications/r', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: '',
    filter: 'quality',
    query_params: { quality: 'good', min_score: 5 },
  });
  // Ferry's settings are in the status route; the compatible GET has ReductStore's keys only
  const compat = (await api(ferry, 'GET', '/replications/r')) as { settings: Record<string, unknown> };
  assert.equal(compat.settings.filter, undefined);
  const settings = (
    (await api(ferry, 'GET', '/replications/r/status')) as { settings: Record<string, unknown> }
  ).settings;
  assert.equal(settings.filter, 'quality');
  assert.deepEqual(settings.query_params, { quality: 'good', min_score: 5 });
  assert.equal(settings.when, null, 'the stored when stays the user’s: none');

  const good = [await write('good', 9), await write('good', 5)];
  await write('good', 4);
  await write('bad', 9);
  const st = await waitFor(
    async () => {
      const s = await status('r');
      return s.counters.records_written + s.counters.records_filtered === 4 && s.pending_records === 0
        ? s
        : false;
    },
    { timeoutMs: 30_000, message: 'the filtered replication to catch up' },
  );
  assert.equal(st.counters.records_written, 2);
  assert.equal(st.counters.records_filtered, 2);
  assert.deepEqual(st.filter, {
    name: 'quality',
    version: 1,
    updated_at: ((await api(ferry, 'GET', '/filters/quality')) as FilterJson).updated_at,
  });
  for (const at of good) assert.equal((await call(ferry, 'GET', `/b/dst/cam?ts=${at}`)).status, 200);
  assert.deepEqual(((await api(ferry, 'GET', '/filters/quality')) as FilterJson).used_by, ['r']);
});

test('replications follow a new filter version; a version that does not fit them is refused', async () => {
  // a new required parameter the replication does not give
  let r = await call(ferry, 'PUT', '/filters/quality', {
    ...QUALITY,
    when: { ...QUALITY.when, '&lens': { $eq: { $param: 'lens' } } },
  });
  assert.equal(r.status, 409);
  assert.equal(
    r.error,
    "Filter 'quality' would no longer fit replication 'r': Invalid replication setting 'query_params.lens': missing: filter 'quality' needs it",
  );
  // version 2: the score bound becomes an upper bound
  r = await call(ferry, 'PUT', '/filters/quality', {
    ...QUALITY,
    when: { '&quality': { $eq: { $param: 'quality' } }, '&score': { $lt: { $param: 'min_score' } } },
  });
  assert.equal(r.status, 200, String(r.error));
  const f = (await api(ferry, 'GET', '/filters/quality')) as FilterJson;
  assert.equal(f.version, 2);
  const st = await waitFor(async () => ((await status('r')).filter?.version === 2 ? status('r') : false), {
    timeoutMs: 10_000,
    message: 'the replication to run version 2',
  });
  assert.equal(st.last_update?.filter_state, 'reset');
  const before = st.counters.records_written;
  const low = await write('good', 1);
  const high = await write('good', 9);
  await waitFor(async () => (await status('r')).counters.records_written === before + 1, {
    timeoutMs: 30_000,
    message: 'the record matching version 2',
  });
  assert.equal((await call(ferry, 'GET', `/b/dst/cam?ts=${low}`)).status, 200);
  await waitFor(async () => (await status('r')).pending_records === 0, { timeoutMs: 30_000 });
  assert.equal((await call(ferry, 'GET', `/b/dst/cam?ts=${high}`)).status, 404);
});

test('a filter in use cannot be deleted; filters survive a restart', async () => {
  let r = await call(ferry, 'DELETE', '/filters/quality');
  assert.equal(r.status, 409);
  assert.equal(r.error, "Filter 'quality' is used by replication 'r'");

  const mode = (await stat(join(ferry.dataPath, '.ferry', 'filters.json'))).mode & 0o777;
  assert.equal(mode, 0o600);
  await ferry.restart();
  const f = (await api(ferry, 'GET', '/filters/quality')) as FilterJson;
  assert.equal(f.version, 2);
  assert.deepEqual(f.used_by, ['r']);
  const st = await status('r');
  assert.equal(st.filter?.version, 2);
  // still filtering with version 2 after the restart
  const before = st.counters.records_written;
  await write('good', 9);
  const low = await write('good', 2);
  await waitFor(async () => (await status('r')).counters.records_written === before + 1, {
    timeoutMs: 30_000,
  });
  assert.equal((await call(ferry, 'GET', `/b/dst/cam?ts=${low}`)).status, 200);

  await api(ferry, 'DELETE', '/replications/r');
  r = await call(ferry, 'DELETE', '/filters/quality');
  assert.equal(r.status, 200, String(r.error));
  assert.deepEqual(((await api(ferry, 'GET', '/filters')) as FilterList).filters, []);
});
