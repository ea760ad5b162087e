/**
 * Replication API and remote replication between real in-process Ferry servers (api.md §17,
 * replication.md §1, §4, §9): exact compatible JSON, validation, reduct-js, A→B, A↔B and A→B→C
 * loop prevention, idempotent re-delivery, backoff and suspension with an unreachable destination.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'reduct-js';
import { loadConfig } from '../src/config/load-config.js';
import { startFerry, type RunningFerry } from '../src/server.js';
import { stringifyJson } from '../src/protocol/json.js';
import { call, replicationStatus } from './helpers/ferry-api.js';
import { freePort } from './helpers/ferry-process.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'repl-remote-token';

interface Node {
  ferry: RunningFerry;
  client: Client;
  dir: string;
  /** For the helpers of ferry-api.ts. */
  url: string;
  token: string;
}

const nodes: Node[] = [];

async function startNode(): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-repl-remote-'));
  const config = loadConfig({
    RS_DATA_PATH: dir,
    RS_API_TOKEN: TOKEN,
    RS_HOST: '127.0.0.1',
    RS_PORT: '0',
    RS_SYSTEM_EVENTS_ENABLED: 'false',
    FERRY_DURABILITY: 'none',
  });
  const ferry = await startFerry(config, { log: () => undefined });
  const node = {
    ferry,
    client: new Client(ferry.url, { apiToken: TOKEN }),
    dir,
    url: ferry.url,
    token: TOKEN,
  };
  nodes.push(node);
  return node;
}

let A: Node;
let B: Node;
let C: Node;

before(async () => {
  [A, B, C] = await Promise.all([startNode(), startNode(), startNode()]);
});

after(async () => {
  for (const n of nodes) {
    await n.ferry.close();
    await rm(n.dir, { recursive: true, force: true });
  }
});

async function writeRecord(
  node: Node,
  bucket: string,
  entry: string,
  ts: bigint,
  body: string,
  labels: Record<string, string> = {},
) {
  const b = await node.client.getBucket(bucket);
  const w = await b.beginWrite(entry, { ts, labels, contentType: 'text/plain' });
  await w.write(body);
}

async function readRecord(
  node: Node,
  bucket: string,
  entry: string,
  ts: bigint,
): Promise<{ body: string; labels: Record<string, unknown> } | null> {
  try {
    const b = await node.client.getBucket(bucket);
    const r = await b.beginRead(entry, ts);
    return { body: (await r.read()).toString(), labels: { ...r.labels } };
  } catch {
    return null;
  }
}

test('GET right after POST is exactly the compatible answer (api.md §17.5), also through reduct-js', async () => {
  await A.client.createBucket('exact-src');
  const r = await call(A, 'POST', '/replications/exact', {
    src_bucket: 'exact-src',
    dst_bucket: 'dst_bucket',
    dst_host: 'http://localhost:9000',
    entries: ['entry1', 'entry2'],
    when: { $eq: ['&key1', 'value1'], $each_n: 10 },
    compression: 'zstd',
  });
  assert.equal(r.status, 200);
  // (the exact JSON is checked in api-replications.test.ts; here: the same answer through reduct-js)
  const full = await A.client.getReplication('exact');
  assert.equal(full.info.name, 'exact');
  assert.equal(full.info.isActive, true);
  assert.equal(full.settings.srcBucket, 'exact-src');
  assert.deepEqual(full.settings.entries, ['entry1', 'entry2']);
  await A.client.setReplicationMode('exact', 'paused');
  assert.equal((await A.client.getReplication('exact')).info.mode, 'paused');
  const list = await A.client.getReplicationList();
  assert.ok(list.some((i) => i.name === 'exact' && i.mode === 'paused'));
  await A.client.deleteReplication('exact');
  assert.equal((await call(A, 'GET', '/replications/exact')).status, 404);
});

test('validation: statuses and exact messages (api.md §17.6) and refused extensions', async () => {
  await A.client.createBucket('val-src');
  const base = { src_bucket: 'val-src', dst_bucket: 'x', dst_host: 'http://127.0.0.1:1' };
  const cases: Array<[string, string, unknown, number, string | RegExp]> = [
    ['POST', '/replications/v1', { dst_bucket: 'x', dst_host: 'http://h' }, 422, /^Invalid JSON: /],
    ['POST', '/replications/v1', '{bad', 422, /^Invalid JSON: /],
    [
      'POST',
      '/replications/v1',
      { ...base, dst_host: 'not a url' },
      422,
      "Invalid destination host 'not a url'",
    ],
    [
      'POST',
      '/replications/v1',
      { ...base, src_bucket: 'nope' },
      404,
      "Source bucket 'nope' for replication 'v1' does not exist",
    ],
    [
      'POST',
      '/replications/v1',
      { ...base, dst_bucket: 'val-src', dst_host: `http://localhost:${A.ferry.port}` },
      422,
      'Source and destination buckets must be different',
    ],
    ['POST', '/replications/v1', { ...base, when: { $foo: 1 } }, 422, /^Invalid replication condition: /],
    ['POST', '/replications/v1', { ...base, since: -1 }, 422, /'since'/],
    ['POST', '/replications/v1', { ...base, since: 'yesterday' }, 422, /'since'/],
    ['POST', '/replications/v1', { ...base, since: 10, until: 10 }, 422, /'until'/],
    ['POST', '/replications/v1', { ...base, until: 1.5 }, 422, /'until'/],
    ['POST', '/replications/v1', { ...base, continuous: 'no' }, 422, /'continuous'/],
    ['POST', '/replications/v1', { ...base, replication_type: 'SYNC' }, 422, /'replication_type'/],
    [
      'POST',
      '/replications/v1',
      { ...base, replication_type: 'sync', sync: { on_timeout: 'x' } },
      422,
      /'sync\.on_timeout'/,
    ],
    ['POST', '/replications/v1', { ...base, batch: { max_records: 0 } }, 422, /batch\.max_records/],
    ['POST', '/replications/v1', { ...base, on_write_failure: 'drop' }, 422, /on_write_failure/],
    ['PUT', '/replications/missing', base, 404, "Replication 'missing' does not exist"],
    ['DELETE', '/replications/missing', undefined, 404, "Replication 'missing' does not exist"],
    ['PATCH', '/replications/missing/mode', { mode: 'paused' }, 404, "Replication 'missing' does not exist"],
  ];
  for (const [method, path, body, statusCode, message] of cases) {
    const r = await call(A, method, path, body);
    assert.equal(r.status, statusCode, `${method} ${path} ${stringifyJson(body)}: ${r.error}`);
    if (typeof message === 'string') assert.equal(r.error, message);
    else assert.match(r.error ?? '', message);
  }
  assert.equal((await call(A, 'POST', '/replications/v1', base)).status, 200);
  const dup = await call(A, 'POST', '/replications/v1', base);
  assert.equal(dup.status, 409);
  assert.equal(dup.error, "Replication 'v1' already exists");
  // PUT keeps the token when omitted; the token is never returned
  assert.equal((await call(A, 'PUT', '/replications/v1', { ...base, dst_token: 'tok' })).status, 200);
  assert.equal((await call(A, 'PUT', '/replications/v1', { ...base, entries: ['a'] })).status, 200);
  const got = (await call(A, 'GET', '/replications/v1')).json as { settings: Record<string, unknown> };
  assert.equal(got.settings.dst_token, null);
  assert.deepEqual(got.settings.entries, ['a']);
  assert.equal((await call(A, 'DELETE', '/replications/v1')).status, 200);
});

test('A→B: records arrive with labels; the destination instance is learned; re-delivery is a no-op', async () => {
  await A.client.createBucket('ab-src');
  const dstB = await B.client.createBucket('ab-dst');
  // already at B with identical content: must count as already present, not as an error
  await writeRecord(B, 'ab-dst', 'e', 1n, 'one');
  await A.client.createReplication('ab', {
    srcBucket: 'ab-src',
    dstBucket: 'ab-dst',
    dstHost: B.ferry.url,
    dstToken: TOKEN,
    entries: [],
  } as never);
  await writeRecord(A, 'ab-src', 'e', 1n, 'one');
  for (let i = 2n; i <= 20n; i++) await writeRecord(A, 'ab-src', 'e', i, `rec-${i}`, { i: String(i) });
  await waitFor(
    async () =>
      (await replicationStatus(A, 'ab')).pending_records === 0 &&
      (await replicationStatus(A, 'ab')).counters.records_written === 19,
    { message: 'A→B drained' },
  );
  const st = await replicationStatus(A, 'ab');
  assert.equal(st.counters.records_already_present, 1);
  assert.equal(st.state, 'idle');
  assert.ok(st.destination.instance_id, 'instance id learned from x-ferry-instance');
  const rec = await readRecord(B, 'ab-dst', 'e', 7n);
  assert.equal(rec?.body, 'rec-7');
  assert.equal(rec?.labels.i, '7');
  assert.equal((await dstB.getInfo()).entryCount, 1n);
  const full = (await call(A, 'GET', '/replications/ab')).json as {
    diagnostics: { hourly: { ok: number } };
    info: { is_active: boolean };
  };
  assert.ok(full.diagnostics.hourly.ok > 0);
  assert.equal(full.info.is_active, true);
  await A.client.deleteReplication('ab');
});

test('A↔B: writes and label updates do not loop; A→B→C chains work', async () => {
  await A.client.createBucket('loop');
  await B.client.createBucket('loop');
  await C.client.createBucket('loop');
  const mk = (from: Node, name: string, to: Node) =>
    call(from, 'POST', `/replications/${name}`, {
      src_bucket: 'loop',
      dst_bucket: 'loop',
      dst_host: to.ferry.url,
      dst_token: TOKEN,
    });
  assert.equal((await mk(A, 'a2b', B)).status, 200);
  assert.equal((await mk(B, 'b2a', A)).status, 200);
  assert.equal((await mk(B, 'b2c', C)).status, 200);
  await writeRecord(A, 'loop', 'e', 100n, 'from-a', { v: '1' });
  await writeRecord(B, 'loop', 'e', 200n, 'from-b');
  await waitFor(async () => (await readRecord(C, 'loop', 'e', 100n))?.body === 'from-a', {
    message: 'A→B→C',
  });
  assert.equal((await readRecord(A, 'loop', 'e', 200n))?.body, 'from-b');
  // label update on A travels to B (and on to C) but is not echoed back to A
  const bucketA = await A.client.getBucket('loop');
  await bucketA.update('e', 100n, { v: '2' });
  await waitFor(async () => (await readRecord(C, 'loop', 'e', 100n))?.labels.v === '2', {
    message: 'update chained',
  });
  await waitFor(
    async () =>
      (await replicationStatus(B, 'b2a')).pending_records === 0 &&
      (await replicationStatus(A, 'a2b')).pending_records === 0,
  );
  const b2a = await replicationStatus(B, 'b2a');
  assert.ok(b2a.counters.records_loop_skipped >= 2, `loop skipped: ${stringifyJson(b2a.counters)}`);
  assert.equal(b2a.counters.records_failed, 0);
  const a2b = await replicationStatus(A, 'a2b');
  // A's outgoing: its own write + its update, and nothing that came back from B
  assert.equal(a2b.counters.records_written + a2b.counters.label_updates_written, 2);
  assert.equal(a2b.counters.records_loop_skipped, 1);
  for (const n of ['a2b']) await call(A, 'DELETE', `/replications/${n}`);
  for (const n of ['b2a', 'b2c']) await call(B, 'DELETE', `/replications/${n}`);
});

test('unreachable destination: backoff, then suspended after max_outage_ms; PATCH mode retries; nothing lost', async () => {
  await A.client.createBucket('down-src');
  const port = await freePort();
  const r = await call(A, 'POST', '/replications/down', {
    src_bucket: 'down-src',
    dst_bucket: 'd',
    dst_host: `http://127.0.0.1:${port}`,
    // the outage lasts long enough for the test to see 'retrying' before the suspension, also when
    // a loaded machine stalls this process for a moment (400 ms was a narrow window)
    retry: { initial_ms: 20, max_ms: 50, max_outage_ms: 2000 },
  });
  assert.equal(r.status, 200);
  await writeRecord(A, 'down-src', 'e', 1n, 'kept');
  await writeRecord(A, 'down-src', 'e', 2n, 'kept');
  const retrying = await waitFor(
    async () => {
      const s = await replicationStatus(A, 'down');
      return s.state === 'retrying' ? s : null;
    },
    { message: 'retrying' },
  );
  assert.ok(retrying.next_retry_at);
  assert.match(retrying.state_reason ?? '', /Connection error/);
  const suspended = await waitFor(
    async () => {
      const s = await replicationStatus(A, 'down');
      return s.state === 'suspended' ? s : null;
    },
    { message: 'suspended' },
  );
  assert.match(suspended.state_reason ?? '', /unavailable/);
  assert.equal(suspended.pending_records, 2);
  const info = (await call(A, 'GET', '/replications/down')).json as {
    info: { is_active: boolean };
    diagnostics: { hourly: { errors: Record<string, unknown> } };
  };
  assert.equal(info.info.is_active, false);
  assert.ok(info.diagnostics.hourly.errors['-3']);
  // point it at a live destination (PUT resumes) and everything is delivered
  await B.client.createBucket('down-dst');
  assert.equal(
    (
      await call(A, 'PUT', '/replications/down', {
        src_bucket: 'down-src',
        dst_bucket: 'down-dst',
        dst_host: B.ferry.url,
        dst_token: TOKEN,
      })
    ).status,
    200,
  );
  await waitFor(async () => (await replicationStatus(A, 'down')).pending_records === 0, {
    message: 'delivered after resume',
  });
  assert.equal((await readRecord(B, 'down-dst', 'e', 2n))?.body, 'kept');
  await call(A, 'DELETE', '/replications/down');
});

test('a single record for an unreachable destination is retried on schedule until suspended', async () => {
  // Nothing else is written: the retries must come from the schedule, not from new records.
  await A.client.createBucket('lone-src');
  const port = await freePort();
  const r = await call(A, 'POST', '/replications/lone', {
    src_bucket: 'lone-src',
    dst_bucket: 'd',
    dst_host: `http://127.0.0.1:${port}`,
    retry: { initial_ms: 20, max_ms: 50, max_outage_ms: 300 },
  });
  assert.equal(r.status, 200);
  await writeRecord(A, 'lone-src', 'e', 1n, 'only');
  const suspended = await waitFor(
    async () => {
      const s = await replicationStatus(A, 'lone');
      return s.state === 'suspended' ? s : null;
    },
    { message: 'suspended after max_outage_ms', timeoutMs: 5_000 },
  );
  assert.equal(suspended.pending_records, 1);
  await call(A, 'DELETE', '/replications/lone');
});

test('remote conflict with on_write_failure skip lands in the failure log; gzip transfer works', async () => {
  await A.client.createBucket('cf-src');
  await B.client.createBucket('cf-dst');
  await writeRecord(B, 'cf-dst', 'e', 1n, 'theirs');
  assert.equal(
    (
      await call(A, 'POST', '/replications/cf', {
        src_bucket: 'cf-src',
        dst_bucket: 'cf-dst',
        dst_host: B.ferry.url,
        dst_token: TOKEN,
        on_write_failure: 'skip',
        compression: 'gzip',
      })
    ).status,
    200,
  );
  await writeRecord(A, 'cf-src', 'e', 1n, 'ours');
  await writeRecord(A, 'cf-src', 'e', 2n, 'x'.repeat(10_000));
  await waitFor(async () => (await replicationStatus(A, 'cf')).pending_records === 0, { message: 'drained' });
  const st = await replicationStatus(A, 'cf');
  assert.equal(st.counters.records_failed, 1);
  assert.equal(st.counters.records_written, 1);
  const f = await call(A, 'GET', '/replications/cf/failures');
  assert.equal(f.status, 200, `GET failures: ${f.error}`);
  const body = f.json as { total: number; failures: Array<{ ts: bigint; status: number }> };
  assert.equal(body.total, 1);
  assert.equal(body.failures[0]!.status, 409);
  assert.equal((await readRecord(B, 'cf-dst', 'e', 1n))?.body, 'theirs');
  assert.equal((await readRecord(B, 'cf-dst', 'e', 2n))?.body.length, 10_000);
  await call(A, 'DELETE', '/replications/cf');
});
