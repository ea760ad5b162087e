/**
 * `GET /metrics` on real server processes: the exposition parses with a Prometheus text-format
 * parser, its replication figures are those of the status route, bucket figures count what the
 * test wrote and read, request counts and latencies are there per route family; authorised like
 * `/info` unless FERRY_METRICS_OPEN=true.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import parsePrometheusTextFormat, { type MetricFamily } from 'parse-prometheus-text-format';
import { REPLICATION_STATES, type ReplicationStatus } from '../src/protocol/replication-status.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-metrics-token';
let ferry: FerryProcess;

before(async () => {
  ferry = await spawnFerry({ token: TOKEN, env: { FERRY_DURABILITY: 'none' } });
});
after(() => ferry?.destroy());

let text = '';

/** Scrapes `/metrics` (the text is kept in `text`) and parses it. */
async function scrape(node: FerryProcess, token = node.token): Promise<MetricFamily[]> {
  const res = await fetch(`${node.url}/metrics`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  assert.equal(res.status, 200, String(res.headers.get('x-reduct-error')));
  assert.match(String(res.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
  text = await res.text();
  return parsePrometheusTextFormat(text);
}

/** The value of `name` whose labels include `labels` (undefined when absent). */
function value(families: MetricFamily[], name: string, labels: Record<string, string>): number | undefined {
  const fam = families.find((f) => f.name === name);
  const m = fam?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  if (!m) return undefined;
  return Number(m.value ?? m.count);
}

test('replication, bucket and request figures match what happened and the status route', async () => {
  await api(ferry, 'POST', '/b/src');
  await api(ferry, 'POST', '/replications/local', { src_bucket: 'src', dst_bucket: 'dst', dst_host: '' });
  await api(ferry, 'POST', '/replications/far', {
    src_bucket: 'src',
    dst_bucket: 'far',
    dst_host: 'http://127.0.0.1:1',
    entries: ['other'],
    retry: { initial_ms: 600_000, max_ms: 600_000 },
  });
  // a destination that already holds a different record at ts 1000: skipped into the failure log
  await api(ferry, 'POST', '/b/taken');
  assert.equal((await call(ferry, 'POST', '/b/taken/cam?ts=1000', 'not the same')).status, 200);
  await api(ferry, 'POST', '/replications/skipper', {
    src_bucket: 'src',
    dst_bucket: 'taken',
    dst_host: '',
    entries: ['cam'],
    on_write_failure: 'skip',
  });
  for (let i = 0; i < 10; i++) {
    const r = await call(ferry, 'POST', `/b/src/cam?ts=${1000 + i}`, Buffer.alloc(100 + i, 1));
    assert.equal(r.status, 200, String(r.error));
  }
  const r = await call(ferry, 'POST', '/b/src/other?ts=1', 'x');
  assert.equal(r.status, 200);
  for (const ts of [1000, 1001]) assert.equal((await call(ferry, 'GET', `/b/src/cam?ts=${ts}`)).status, 200);

  const local = await waitFor(
    async () => {
      const s = (await api(ferry, 'GET', '/replications/local/status')) as ReplicationStatus;
      return s.counters.records_written === 11 && s.pending_records === 0 && s.state === 'idle' ? s : false;
    },
    { timeoutMs: 30_000, message: 'the local replication to catch up' },
  );
  const far = await waitFor(
    async () => {
      const s = (await api(ferry, 'GET', '/replications/far/status')) as ReplicationStatus;
      return s.state === 'retrying' ? s : false;
    },
    { timeoutMs: 30_000, message: 'the unreachable replication to wait for its retry' },
  );
  const skipper = await waitFor(
    async () => {
      const s = (await api(ferry, 'GET', '/replications/skipper/status')) as ReplicationStatus;
      return s.counters.records_failed === 1 && s.pending_records === 0 && s.state === 'idle' ? s : false;
    },
    { timeoutMs: 30_000, message: 'the skipping replication to catch up' },
  );
  const m = await scrape(ferry);

  for (const s of [local, far, skipper]) {
    const l = { replication: s.name };
    for (const state of REPLICATION_STATES) {
      assert.equal(value(m, 'ferry_replication_state', { ...l, state }), s.state === state ? 1 : 0, state);
    }
    assert.equal(value(m, 'ferry_replication_pending_records', l), s.pending_records);
    assert.equal(value(m, 'ferry_replication_pending_bytes', l), s.pending_bytes);
    assert.equal(value(m, 'ferry_replication_shipped_records_total', l), s.counters.records_written);
    assert.equal(value(m, 'ferry_replication_shipped_bytes_total', l), s.counters.bytes_written);
    assert.equal(value(m, 'ferry_replication_retries_total', l), s.retries);
    assert.equal(value(m, 'ferry_replication_failed_records_total', l), s.counters.records_failed);
    assert.equal(value(m, 'ferry_replication_consecutive_failures', l), s.consecutive_failures);
    assert.equal(value(m, 'ferry_replication_active', l), s.is_active ? 1 : 0);
  }
  assert.equal(value(m, 'ferry_replication_shipped_bytes_total', { replication: 'local' }), 1045 + 1);
  assert.equal(value(m, 'ferry_replication_pending_records', { replication: 'far' }), 1);
  assert.ok(value(m, 'ferry_replication_retries_total', { replication: 'far' })! >= 1, 'far retried');
  assert.equal(value(m, 'ferry_replication_failed_records_total', { replication: 'skipper' }), 1);
  assert.equal(value(m, 'ferry_replication_shipped_records_total', { replication: 'skipper' }), 9);
  // the lag of a pending record grows: the scrape came after the status
  const lag = value(m, 'ferry_replication_lag_seconds', { replication: 'far' })!;
  assert.ok(lag >= far.lag_ms / 1000 && lag < far.lag_ms / 1000 + 60, `lag ${lag} vs ${far.lag_ms} ms`);

  // records written and read through the HTTP API, per bucket
  assert.equal(value(m, 'ferry_bucket_records_total', { bucket: 'src', op: 'written' }), 11);
  assert.equal(value(m, 'ferry_bucket_bytes_total', { bucket: 'src', op: 'written' }), 1046);
  assert.equal(value(m, 'ferry_bucket_records_total', { bucket: 'src', op: 'read' }), 2);
  assert.equal(value(m, 'ferry_bucket_bytes_total', { bucket: 'src', op: 'read' }), 201);

  // requests by route family
  const family = { family: 'b/:bucket/*', method: 'POST', status: '200' };
  assert.equal(value(m, 'ferry_http_requests_total', family), 12); // 11 to 'src', 1 to 'taken'
  // parse-prometheus-text-format folds the series of a labelled histogram into one: read its
  // _count and _sum lines from the text itself
  assert.equal(m.find((f) => f.name === 'ferry_http_request_duration_seconds')?.type, 'HISTOGRAM');
  const count = new RegExp(
    String.raw`^ferry_http_request_duration_seconds_count\{family="b/:bucket/\*",method="POST"\} (\d+)$`,
    'm',
  ).exec(text);
  assert.equal(count?.[1], '12');
  const sum =
    /^ferry_http_request_duration_seconds_sum\{family="b\/:bucket\/\*",method="POST"\} (\S+)$/m.exec(text);
  assert.ok(Number(sum?.[1]) > 0);
  assert.ok(value(m, 'ferry_process_resident_memory_bytes', {})! > 0, 'process metrics');
});

test('a batch and a query count their records; unknown paths are one family', async () => {
  await api(ferry, 'POST', '/b/batch');
  const before = await scrape(ferry);
  const written = (f: MetricFamily[]): number =>
    value(f, 'ferry_bucket_records_total', { bucket: 'batch', op: 'written' }) ?? 0;
  const res = await call(ferry, 'POST', '/b/batch/e/batch', Buffer.from('aaabbbbb'), {
    headers: {
      'content-type': 'application/octet-stream',
      'x-reduct-time-1': '3,text/plain',
      'x-reduct-time-2': '5,text/plain',
    },
  });
  assert.equal(res.status, 200, String(res.error));
  assert.equal((await call(ferry, 'GET', '/no/such/path')).status, 404);
  const q = (await api(ferry, 'POST', '/b/batch/e/q', { query_type: 'QUERY' })) as { id: number };
  const read = await call(ferry, 'GET', `/b/batch/e/batch?q=${q.id}`);
  assert.equal(read.status, 200, String(read.error));
  const after = await scrape(ferry);
  assert.equal(written(after) - written(before), 2);
  assert.equal(value(after, 'ferry_bucket_bytes_total', { bucket: 'batch', op: 'written' }), 8);
  assert.equal(value(after, 'ferry_bucket_records_total', { bucket: 'batch', op: 'read' }), 2);
  assert.equal(value(after, 'ferry_bucket_bytes_total', { bucket: 'batch', op: 'read' }), 8);
  assert.ok(value(after, 'ferry_http_requests_total', { family: 'unmatched', status: '404' })! >= 1);
});

test('authorised like /info; FERRY_METRICS_OPEN=true opens it', async () => {
  let res = await fetch(`${ferry.url}/metrics`);
  assert.equal(res.status, 401);
  res = await fetch(`${ferry.url}/metrics`, { headers: { authorization: 'Bearer wrong' } });
  assert.equal(res.status, 401);
  const open = await spawnFerry({
    token: TOKEN,
    env: { FERRY_DURABILITY: 'none', FERRY_METRICS_OPEN: 'true' },
  });
  try {
    const m = await scrape(open, '');
    assert.ok(m.some((f) => f.name === 'ferry_http_requests_total'));
    // the API itself still needs the token
    assert.equal((await fetch(`${open.url}/api/v1/info`)).status, 401);
  } finally {
    await open.destroy();
  }
});
