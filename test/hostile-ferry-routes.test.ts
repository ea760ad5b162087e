/**
 * Hostile input on Ferry's own routes: replication settings that used to be accepted and then
 * broke the replication (a destination bucket or prefix no destination takes, entries that match
 * nothing, a group window larger than any shipment, timers beyond Node's 2^31-1 ms that spin),
 * credentials in `dst_host` shown by GET, and a shipment apply that read its header for a token
 * that can write nowhere. Each is refused at the edge with a 422 (403) naming the field; values at
 * the bounds are still accepted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import {
  MAX_GROUP_BATCH_BYTES,
  MAX_GROUP_BATCH_RECORDS,
  MAX_REPLICATION_DELAY_MS,
  MAX_REPLICATION_ENTRIES,
} from '../src/protocol/limits.js';
import { compatibleSettingsToWire, type ReplicationSettings } from '../src/replication/settings.js';
import { api, call, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'hostile-ferry-routes-token';
const READER = 'hostile-ferry-routes-reader';
let server: TestServer | undefined;
let node: ApiNode;

const BASE = { src_bucket: 'src', dst_bucket: 'dst', dst_host: '' };
const setting = (field: string, why: string): string => `Invalid replication setting '${field}': ${why}`;

before(async () => {
  server = await startTestServer('hostile-routes', TOKEN, {
    RS_TOKEN_R_NAME: 'reader',
    RS_TOKEN_R_VALUE: READER,
    RS_TOKEN_R_READ: 'src',
  });
  node = { url: server.ferry.url, token: TOKEN };
  for (const b of ['src', 'g1', 'g2']) await api(node, 'POST', `/b/${b}`, {});
  await api(node, 'POST', '/groups/grp', { buckets: ['g1', 'g2'] });
});

after(() => stopTestServer(server));

/** POSTs replication `name` with `body` and expects a 422 with `message`; nothing is created. */
async function refused(name: string, body: Record<string, unknown>, message: string): Promise<void> {
  const r = await call(node, 'POST', `/replications/${name}`, body);
  assert.equal(r.status, 422, `${JSON.stringify(body).slice(0, 200)}: ${r.status} ${r.error}`);
  assert.equal((r.json as { detail: string }).detail, message);
  assert.equal((await call(node, 'GET', `/replications/${name}`)).status, 404);
}

/** POSTs and removes replication `name`, expecting it to be accepted. */
async function accepted(name: string, body: Record<string, unknown>): Promise<void> {
  const r = await call(node, 'POST', `/replications/${name}`, body);
  assert.equal(r.status, 200, `${JSON.stringify(body).slice(0, 200)}: ${r.error}`);
  assert.equal((await call(node, 'DELETE', `/replications/${name}`)).status, 200);
}

test('a destination bucket that is not a bucket name is refused, not suspended at the first record', async () => {
  const why = 'must be a bucket name (1 to 255 letters, digits, - and _)';
  await refused('bad-dst', { ...BASE, dst_bucket: 'bad name!' }, setting('dst_bucket', why));
  await refused('bad-dst', { ...BASE, dst_bucket: '' }, setting('dst_bucket', why));
  await refused('bad-dst', { ...BASE, dst_bucket: 'x'.repeat(256) }, setting('dst_bucket', why));
  await refused('bad-dst', { ...BASE, dst_bucket: '../etc' }, setting('dst_bucket', why));
  await accepted('bad-dst', { ...BASE, dst_bucket: 'x'.repeat(255) });
  // the same at PUT: the replication keeps its settings
  await api(node, 'POST', '/replications/put-dst', BASE);
  const r = await call(node, 'PUT', '/replications/put-dst', { ...BASE, dst_bucket: 'a/b' });
  assert.equal(r.status, 422);
  assert.equal(r.error, setting('dst_bucket', why));
  const got = (await api(node, 'GET', '/replications/put-dst')) as { settings: { dst_bucket: string } };
  assert.equal(got.settings.dst_bucket, 'dst');
  await api(node, 'DELETE', '/replications/put-dst');
});

test('a dst_prefix that would make destination entry names invalid is refused', async () => {
  const bad = setting('dst_prefix', "must be an entry name prefix ('/'-separated letters, digits, - and _)");
  await refused(
    'bad-prefix',
    { ...BASE, dst_prefix: 'a'.repeat(256) },
    setting('dst_prefix', 'must be at most 255 characters'),
  );
  await refused('bad-prefix', { ...BASE, dst_prefix: 'a b' }, bad);
  await refused('bad-prefix', { ...BASE, dst_prefix: 'a//b' }, bad);
  await refused('bad-prefix', { ...BASE, dst_prefix: 'x\u0000y' }, bad);
  await refused('bad-prefix', { ...BASE, dst_prefix: '..' }, bad);
  // what destinationEntry accepts: surrounding slashes are trimmed, nested prefixes are fine
  await accepted('bad-prefix', { ...BASE, dst_prefix: '/site-1/line_2/' });
  await accepted('bad-prefix', { ...BASE, dst_prefix: 'a'.repeat(255) });
});

test('the prefix and bucket of an accepted replication reach the destination', async () => {
  await api(node, 'POST', '/replications/shipped', { ...BASE, dst_bucket: 'dst-ok', dst_prefix: 'site-1/' });
  assert.equal((await call(node, 'POST', '/b/src/cam?ts=1', 'frame')).status, 200);
  for (let i = 0; i < 200; i++) {
    if ((await call(node, 'GET', '/b/dst-ok/site-1/cam?ts=1')).status === 200) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal((await call(node, 'GET', '/b/dst-ok/site-1/cam?ts=1')).text, 'frame');
  await api(node, 'DELETE', '/replications/shipped');
});

test('entries that can never match an entry, or too many of them, are refused', async () => {
  const why =
    "must be an entry name or pattern ('/'-separated letters, digits, -, _ and *, a leading ! excludes)";
  await refused('bad-entries', { ...BASE, entries: ['ok', ''] }, setting('entries[1]', why));
  await refused('bad-entries', { ...BASE, entries: ['a//b'] }, setting('entries[0]', why));
  await refused('bad-entries', { ...BASE, entries: ['x\u0000y'] }, setting('entries[0]', why));
  await refused('bad-entries', { ...BASE, entries: ['caméra'] }, setting('entries[0]', why));
  await refused('bad-entries', { ...BASE, entries: ['!'] }, setting('entries[0]', why));
  await refused('bad-entries', { ...BASE, entries: ['a'.repeat(1025)] }, setting('entries[0]', why));
  await refused(
    'bad-entries',
    { ...BASE, entries: Array.from({ length: MAX_REPLICATION_ENTRIES + 1 }, (_, i) => `e${i}`) },
    setting('entries', `must list at most ${MAX_REPLICATION_ENTRIES} entries`),
  );
  // every shape entry-pattern.ts understands is still accepted
  await accepted('bad-entries', {
    ...BASE,
    entries: ['cam', 'a/b', 'cam-*', 'site/*/raw', '**', 'x/**', '!cam-9', '/lead', 'cam/$meta', '*'],
  });
  await accepted('bad-entries', {
    ...BASE,
    entries: Array.from({ length: MAX_REPLICATION_ENTRIES }, (_, i) => `e${i}`),
  });
});

test('credentials in dst_host are refused without being echoed, and an over-long host is refused', async () => {
  const r = await call(node, 'POST', '/replications/cred', {
    ...BASE,
    dst_host: 'http://user:hunter2-secret@127.0.0.1:1',
  });
  assert.equal(r.status, 422);
  assert.equal(
    r.error,
    setting('dst_host', "must not contain credentials (give the destination's token in 'dst_token')"),
  );
  assert.ok(!r.text.includes('hunter2') && !r.error!.includes('hunter2'));
  assert.equal((await call(node, 'GET', '/replications/cred')).status, 404);

  const long = await call(node, 'POST', '/replications/cred', {
    ...BASE,
    dst_host: `http://127.0.0.1:1/${'a'.repeat(100_000)}`,
  });
  assert.equal(long.status, 422);
  assert.equal(long.error, setting('dst_host', 'must be at most 2048 characters'));
  // a long invalid host is not echoed whole either
  const bad = await call(node, 'POST', '/replications/cred', {
    ...BASE,
    dst_host: `ftp://${'a'.repeat(5000)}`,
  });
  assert.equal(bad.status, 422);
  assert.ok(bad.error!.length < 3000, `echoed ${bad.error!.length} characters`);
});

test('a definition stored with credentials in dst_host shows them to no GET', () => {
  const s: ReplicationSettings = {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: 'https://user:hunter2@example.com:8383/base',
    dst_token: 'tok',
    entries: [],
    dst_prefix: '',
    when: null,
    mode: 'enabled',
    compression: 'none',
  };
  const wire = compatibleSettingsToWire(s, 'enabled');
  assert.equal(wire.dst_host, 'https://example.com:8383/base');
  assert.equal(wire.dst_token, null);
  assert.equal(compatibleSettingsToWire({ ...s, dst_host: 'http://h:1' }, 'enabled').dst_host, 'http://h:1');
});

test('timers beyond an hour are refused: Node fires a timer beyond 2^31-1 ms at once, and the replication spun', async () => {
  const why = `must be an integer between 1 and ${MAX_REPLICATION_DELAY_MS}`;
  const huge = 9007199254740991;
  await refused(
    'timers',
    { ...BASE, retry: { initial_ms: huge, max_ms: huge } },
    setting('retry.initial_ms', why),
  );
  await refused('timers', { ...BASE, retry: { max_ms: 2 ** 31 } }, setting('retry.max_ms', why));
  await refused(
    'timers',
    { ...BASE, batch: { max_delay_ms: 2 ** 31 } },
    setting('batch.max_delay_ms', `must be an integer between 0 and ${MAX_REPLICATION_DELAY_MS}`),
  );
  await refused('timers', { ...BASE, retry: { max_ms: 1.5 } }, setting('retry.max_ms', why));
  await refused('timers', { ...BASE, retry: { max_ms: '1000' } }, setting('retry.max_ms', why));
  await accepted('timers', {
    ...BASE,
    retry: { initial_ms: MAX_REPLICATION_DELAY_MS, max_ms: MAX_REPLICATION_DELAY_MS, max_outage_ms: huge },
    batch: { max_delay_ms: MAX_REPLICATION_DELAY_MS },
  });
});

test('a group replication refuses batch bounds whose windows no destination would apply', async () => {
  const GROUP = { src_group: 'grp', dst_host: '', dst_prefix: 'copy-' };
  await refused(
    'grp-batch',
    { ...GROUP, batch: { max_bytes: MAX_GROUP_BATCH_BYTES + 1 } },
    setting(
      'batch.max_bytes',
      `must be at most ${MAX_GROUP_BATCH_BYTES} with 'src_group' (a window is one shipment of at most 67108864 bytes)`,
    ),
  );
  await refused(
    'grp-batch',
    { ...GROUP, batch: { max_records: MAX_GROUP_BATCH_RECORDS + 1 } },
    setting(
      'batch.max_records',
      `must be at most ${MAX_GROUP_BATCH_RECORDS} with 'src_group' (a window is one shipment of at most 100000 changes)`,
    ),
  );
  await accepted('grp-batch', {
    ...GROUP,
    batch: { max_bytes: MAX_GROUP_BATCH_BYTES, max_records: MAX_GROUP_BATCH_RECORDS },
  });
  // a plain replication keeps its own (unbounded) choice
  await accepted('grp-batch', { ...BASE, batch: { max_bytes: MAX_GROUP_BATCH_BYTES * 4, max_records: 1e6 } });
});

test('a shipment apply from a token that can write nowhere is refused before its header is read', async () => {
  const { port } = new URL(node.url);
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect(Number(port), '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(`no answer; got ${JSON.stringify(got)}`);
    }, 3000);
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    // a header length of 16 MiB announced, of which nothing follows
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(16 * 1024 * 1024, 0);
    s.write(
      `POST /api/v1/ferry/groups/apply HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${READER}\r\n` +
        `Content-Length: ${4 + 16 * 1024 * 1024}\r\n\r\n`,
    );
    s.write(prefix);
  });
  assert.match(answer, /^HTTP\/1\.1 403 /, answer.slice(0, 200));
  assert.match(answer, /x-reduct-error: Token 'reader' doesn't have write access to any bucket/);
});
