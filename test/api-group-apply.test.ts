/**
 * The remote destination of a consistency group: `POST /api/v1/ferry/groups/apply` through
 * `RemoteGroupTarget` (atomic, idempotent, resumable from `GET …/apply/{key}`), hostile bodies
 * answered with clear 4xx that apply nothing, permissions per member bucket, and the check that
 * refuses a destination that cannot apply atomically (plain ReductStore, Ferry without the route).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stringifyJson } from '../src/protocol/json.js';
import { MAX_SHIPMENT_BYTES } from '../src/protocol/limits.js';
import { parseShipmentJson, SHIPMENT_CONTENT_TYPE } from '../src/protocol/shipment.js';
import {
  checkAtomicDestination,
  encodeShipment,
  LocalGroupTarget,
  RemoteGroupTarget,
} from '../src/replication/group-target.js';
import { TargetError } from '../src/replication/target.js';
import type { Shipment } from '../src/storage/types.js';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { seededRandom } from './helpers/seed.js';
import { planShipments } from './helpers/shipment-workload.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-group-apply-token';
const BUCKETS = ['cam', 'lidar', 'pose'];
let server: TestServer;
let node: ApiNode;
let target: RemoteGroupTarget;

const remote = (token: string | null = TOKEN) => ({
  url: new URL(server.ferry.url),
  token,
  timeoutMs: 10_000,
  verifyTls: true,
});

before(async () => {
  server = await startTestServer('group-apply', TOKEN);
  node = { url: server.ferry.url, token: TOKEN };
  for (const b of BUCKETS) assert.equal((await call(node, 'POST', `/b/${b}`)).status, 200);
  target = new RemoteGroupTarget(remote());
});

after(async () => {
  await target?.close();
  await stopTestServer(server);
});

async function seqsOf(bucket: string): Promise<number[]> {
  const out: number[] = [];
  for await (const r of server.ferry.storage.bucket(bucket).scan('e', 0n, 1n << 62n))
    out.push(Number(r.meta.labels['seq']));
  return out;
}

test('a remote Ferry applies shipments atomically; re-sent ones change nothing; the position says where to resume', async () => {
  const plan = planShipments(seededRandom('remote-apply'), { key: 'src-1:rep', buckets: BUCKETS, count: 12 });
  assert.equal(await target.position('src-1:rep'), 0n);
  for (const s of plan.shipments) assert.equal((await target.apply(s)).applied, true);
  const last = plan.shipments.at(-1)!.position;
  assert.equal(await target.position('src-1:rep'), last);
  const again = await target.apply(plan.shipments[5]!);
  assert.deepEqual([again.applied, again.written, again.position], [false, 0, last]);
  const seen = (await Promise.all(BUCKETS.map(seqsOf))).flat().sort((a, b) => a - b);
  assert.deepEqual(
    seen,
    Array.from({ length: Number(last) }, (_, i) => i + 1),
  );
  // records keep their origin, labels and content
  const rec = await server.ferry.storage.bucket(plan.bucketOf.get(1)!).read('e', 1n);
  assert.equal(rec.meta.origin, 'source-instance');
  assert.deepEqual(await rec.buffer(), plan.shipments[0]!.items[0]!.payload);
  // a gap is a permanent refusal that names the position to resume from
  await assert.rejects(
    target.apply({ ...plan.shipments[0]!, from: last + 10n, position: last + 11n }),
    (e: unknown) =>
      e instanceof TargetError &&
      e.status === 409 &&
      !e.temporary &&
      e.message.includes(`resend from ${last}`),
  );
});

test('the local target applies through storage and classifies refusals like a remote one', async () => {
  const local = new LocalGroupTarget(server.ferry.storage);
  const plan = planShipments(seededRandom('local-apply'), {
    key: 'local',
    buckets: BUCKETS,
    count: 3,
    entry: 'loc',
  });
  for (const s of plan.shipments) await local.apply(s);
  assert.equal(await local.position('local'), plan.shipments.at(-1)!.position);
  await assert.rejects(
    local.apply({
      key: 'local',
      from: 0n,
      position: 1000n,
      items: [{ ...plan.shipments[0]!.items[0]!, bucket: 'nope', lsn: 999n }],
    }),
    (e: unknown) => e instanceof TargetError && e.status === 404 && !e.temporary,
  );
});

/** A raw shipment request; `body` as bytes. */
function post(body: Buffer | string, headers: Record<string, string> = {}, token = TOKEN) {
  return call({ url: server.ferry.url, token }, 'POST', '/ferry/groups/apply', body, {
    headers: { 'content-type': SHIPMENT_CONTENT_TYPE, ...headers },
  });
}

function framed(header: unknown, ...payloads: Buffer[]): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : stringifyJson(header));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.length);
  return Buffer.concat([prefix, json, ...payloads]);
}

const item = (over: Record<string, unknown> = {}) => ({
  kind: 'write',
  bucket: 'cam',
  entry: 'bad',
  ts: 1,
  lsn: 1,
  size: 3,
  labels: {},
  ...over,
});
const header = (items: unknown[], over: Record<string, unknown> = {}) => ({
  key: 'hostile',
  from: 0,
  position: 1,
  items,
  ...over,
});

test('hostile shipment bodies get a clear 4xx and apply nothing', async () => {
  const abc = Buffer.from('abc');
  const cases: Array<[string, Buffer | string, number, RegExp]> = [
    ['short prefix', Buffer.from([0, 0]), 400, /Shipment body ends within its header length/],
    ['huge header', Buffer.from([0xff, 0xff, 0xff, 0xff]), 422, /header of 4294967295 bytes/],
    [
      'header shorter than said',
      Buffer.concat([Buffer.from([0, 0, 0, 50]), Buffer.from('{}')]),
      400,
      /ends within its header/,
    ],
    ['not JSON', framed('{"key":'), 422, /Invalid JSON/],
    ['not an object', framed('[1]'), 422, /Invalid shipment: the header must be a JSON object/],
    ['bad key', framed(header([], { key: 'a/b' })), 422, /Invalid shipment key 'a\/b'/],
    ['negative from', framed(header([], { from: -1 })), 422, /'from' must be an unsigned 64-bit integer/],
    ['items not an array', framed(header([], { items: {} })), 422, /'items' must be an array/],
    [
      'bad kind',
      framed(header([item({ kind: 'remove' })]), abc),
      422,
      /'items\[0\]\.kind' must be 'write' or 'update'/,
    ],
    ['unknown field', framed(header([item({ extra: 1 })]), abc), 422, /unknown field 'items\[0\]\.extra'/],
    [
      'bad bucket name',
      framed(header([item({ bucket: '../x' })]), abc),
      422,
      /'items\[0\]\.bucket' is not a bucket name/,
    ],
    [
      'bad entry name',
      framed(header([item({ entry: 'a//b' })]), abc),
      422,
      /'items\[0\]\.entry' is not an entry name/,
    ],
    [
      'ts as a string',
      framed(header([item({ ts: '1' })]), abc),
      422,
      /'items\[0\]\.ts' must be an unsigned 64-bit integer/,
    ],
    [
      'label not a string',
      framed(header([item({ labels: { a: 1 } })]), abc),
      422,
      /'items\[0\]\.labels\.a' must be a string/,
    ],
    [
      'label too long',
      framed(header([item({ labels: { a: 'x'.repeat(20_000) } })]), abc),
      422,
      /Value of label 'a' of items\[0\]\.labels is too long/,
    ],
    [
      'bad digest',
      framed(header([item({ digest: 'zz' })]), abc),
      422,
      /'items\[0\]\.digest' must be 32 hex digits/,
    ],
    [
      'payload shorter than its size',
      framed(header([item({ size: 10 })]), abc),
      400,
      /ends within the payload of items\[0\]/,
    ],
    [
      'body longer than its items',
      framed(header([item()]), abc, abc),
      400,
      /Shipment body is longer than its items/,
    ],
    ['unknown bucket', framed(header([item({ bucket: 'nope' })]), abc), 404, /Bucket 'nope' is not found/],
    [
      'wrong digest',
      framed(header([item({ digest: '00'.repeat(16) })]), abc),
      400,
      /Content digest mismatch/,
    ],
  ];
  for (const [what, body, status, message] of cases) {
    const r = await post(body);
    assert.equal(r.status, status, `${what}: ${r.status} ${r.error}`);
    assert.match(r.error ?? '', message, what);
  }
  const big = await post('x', { 'content-length': String(MAX_SHIPMENT_BYTES + 1) }).catch((e: Error) => e);
  // the server answers 413 at once (the client may see the connection closed while it still sends)
  if (!(big instanceof Error)) assert.equal(big.status, 413);
  assert.equal(server.ferry.storage.shipmentPosition('hostile'), 0n);
  // no record (a refused write may leave its entry empty, as a refused single write does)
  const bad = server.ferry.storage
    .bucket('cam')
    .entries()
    .find((e) => e.name === 'bad');
  assert.equal(bad?.record_count ?? 0n, 0n);
  const get = await call(node, 'GET', '/ferry/groups/apply/a%20b');
  assert.equal(get.status, 422);
});

test('a shipment needs write access to every member bucket it touches (and full access for origins)', async () => {
  const t = await call(node, 'POST', '/tokens/cam-writer', { full_access: false, read: [], write: ['cam'] });
  assert.equal(t.status, 200);
  const token = (t.json as { value: string }).value;
  const abc = Buffer.from('abc');
  const two = framed(
    header([item({ entry: 'perm' }), item({ bucket: 'lidar', entry: 'perm', ts: 2, lsn: 2 })], {
      key: 'perm',
      position: 2,
    }),
    abc,
    abc,
  );
  const denied = await post(two, {}, token);
  assert.equal(denied.status, 403, denied.error ?? '');
  const origin = await post(
    framed(header([item({ entry: 'perm', origin: 'x' })], { key: 'perm' }), abc),
    {},
    token,
  );
  assert.equal(origin.status, 403);
  assert.match(origin.error ?? '', /may not send x-ferry-origin/);
  const ok = await post(framed(header([item({ entry: 'perm' })], { key: 'perm' }), abc), {}, token);
  assert.equal(ok.status, 200, ok.error ?? '');
  assert.equal((await post(two, {}, 'wrong-token')).status, 401);
  assert.equal(server.ferry.storage.bucket('lidar').hasEntry('perm'), false);
});

test('encodeShipment refuses a shipment larger than a destination accepts', () => {
  const payload = Buffer.alloc(MAX_SHIPMENT_BYTES);
  const s: Shipment = {
    key: 'k',
    from: 0n,
    position: 1n,
    items: [{ kind: 'write', bucket: 'cam', entry: 'e', ts: 1n, lsn: 1n, labels: {}, payload }],
  };
  assert.throws(
    () => encodeShipment(s),
    (e: unknown) => e instanceof TargetError && e.status === 413 && !e.temporary,
  );
});

async function fakeServer(
  handler: Parameters<typeof createServer>[1],
): Promise<{ url: URL; server: Server }> {
  const srv = createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`), server: srv };
}

test('a destination that cannot apply atomically is refused with a 422 that says why', async () => {
  await checkAtomicDestination(remote());
  // a plain ReductStore: no x-ferry-instance header, no such route
  const plain = await fakeServer((_req, res) => {
    res.writeHead(404, { 'x-reduct-api': '1.15', 'x-reduct-error': 'Not found' }).end();
  });
  // an older Ferry: it has an instance id but not the route
  const older = await fakeServer((_req, res) => {
    res.writeHead(404, { 'x-ferry-instance': 'old-ferry', 'x-reduct-error': 'Not found' }).end();
  });
  try {
    await assert.rejects(checkAtomicDestination({ ...remote(), url: plain.url }), {
      status: 422,
      message: `Destination ${plain.url.origin} cannot apply a group's shipments atomically: it is not a Ferry server (no x-ferry-instance header): a plain ReductStore applies records one by one, so readers could see a later record of a group without an earlier one`,
    });
    await assert.rejects(checkAtomicDestination({ ...remote(), url: older.url }), {
      status: 422,
      message: `Destination ${older.url.origin} cannot apply a group's shipments atomically: Ferry instance old-ferry has no atomic apply route (POST /api/v1/ferry/groups/apply): upgrade it`,
    });
  } finally {
    plain.server.close();
    older.server.close();
  }
  // refused credentials say nothing about atomicity: a TargetError for the caller to report
  await assert.rejects(
    checkAtomicDestination(remote('wrong')),
    (e: unknown) => e instanceof TargetError && e.status === 401,
  );
  // unreachable: temporary
  await assert.rejects(
    checkAtomicDestination({ ...remote(), url: new URL('http://127.0.0.1:9') }),
    (e: unknown) => e instanceof TargetError && e.temporary,
  );
});

test('timestamps and positions beyond 2^53 stay exact through the apply route', async () => {
  const big = (1n << 60n) + 3n;
  const payload = Buffer.from('far');
  const t = new RemoteGroupTarget(remote());
  try {
    const outcome = await t.apply({
      key: 'big:stream',
      from: 0n,
      position: big,
      items: [
        {
          kind: 'write',
          bucket: 'pose',
          entry: 'far',
          ts: big,
          lsn: big,
          labels: { seq: '12345678901234567890' },
          contentType: 'text/plain',
          payload,
        },
      ],
    });
    assert.equal(outcome.position, big);
    assert.equal(await t.position('big:stream'), big);
    const r = await server.ferry.storage.bucket('pose').read('far', big);
    assert.equal(r.meta.ts, big);
    assert.equal(r.meta.labels.seq, '12345678901234567890');
  } finally {
    await t.close();
  }
});

test('a shipment header keeps each u64 field exact from 2^53 on, whichever field it is', () => {
  const base = {
    key: 'k',
    from: 1,
    position: 1,
    items: [{ kind: 'write', bucket: 'b', entry: 'e', ts: 1, lsn: 1, size: 1 }],
  };
  const safe = Number.MAX_SAFE_INTEGER; // 2^53 - 1: exact as a JSON number
  for (const field of ['from', 'position', 'ts', 'lsn', 'size']) {
    for (const [digits, exact] of [
      [String(safe), BigInt(safe)],
      ['9007199254740993', (1n << 53n) + 1n], // 2^53 + 1: a double would round it to 2^53
    ] as const) {
      const text = JSON.stringify(base).replace(new RegExp(`"${field}":1\\b`), `"${field}":${digits}`);
      assert.ok(text.includes(digits), field);
      const json = parseShipmentJson(text) as { items: Array<Record<string, unknown>> } & Record<
        string,
        unknown
      >;
      const got = field === 'from' || field === 'position' ? json[field] : json.items[0]![field];
      assert.equal(BigInt(got as number | bigint), exact, `${field} = ${digits}`);
    }
  }
});
