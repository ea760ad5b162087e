import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket, Labels, Storage } from '../src/storage/types.js';
import {
  QueryManager,
  DEFAULT_QUERY_LIMITS,
  type QueryBatch,
  type QueryLimits,
} from '../src/query/query-manager.js';
import { FerryError } from '../src/protocol/errors.js';
import { parseJson } from '../src/protocol/json.js';
import { ManualClock } from './helpers/manual-clock.js';

let dir: string;
let storage: Storage;
let bucketSeq = 0;
const managers: QueryManager[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-query-'));
  storage = await openStorage({ dataPath: dir, durability: 'none' });
});

after(async () => {
  for (const m of managers) m.close();
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

const FAST: QueryLimits = { ...DEFAULT_QUERY_LIMITS, batchTimeoutMs: 300, recordTimeoutMs: 100 };

function manager(limits: QueryLimits = FAST, now?: () => number): QueryManager {
  const m = new QueryManager({ storage, limits, ...(now ? { now } : {}) });
  managers.push(m);
  return m;
}

async function freshBucket(): Promise<Bucket> {
  return storage.createBucket(`qb${++bucketSeq}`);
}

async function put(
  b: Bucket,
  entry: string,
  ts: bigint,
  payload = 'x',
  labels: Labels = {},
  contentType = 'text/plain',
): Promise<void> {
  await b.write(entry, ts, { size: Buffer.byteLength(payload), contentType, labels }, Buffer.from(payload));
}

const body = (json: string): unknown => parseJson(json);
const keys = (batch: QueryBatch): string[] =>
  batch.records.map((r) => `${r.record.meta.entry}@${r.record.meta.ts}`);

function rejectsWith(status: number, message?: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof FerryError, String(e));
    assert.equal(e.status, status, e.message);
    if (message !== undefined) assert.equal(e.message, message);
    return true;
  };
}

/** Reads a query to its end, returning every record key. */
async function drain(m: QueryManager, bucket: string, id: bigint, entry?: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    let batch: QueryBatch;
    try {
      batch = await m.next(bucket, id, { head: false, ...(entry !== undefined && { entry }) });
    } catch (e) {
      if (e instanceof FerryError && e.status === 204) return out;
      throw e;
    }
    out.push(...keys(batch));
    if (batch.last) return out;
  }
}

test('ids come from one counter starting at 1; merge in timestamp order, ties by entry name', async () => {
  // The whole result must come in the first batch: no batch timeout may cut it on a loaded machine.
  const m = manager({ ...FAST, batchTimeoutMs: 10_000, recordTimeoutMs: 10_000 });
  const b = await freshBucket();
  await put(b, 'b', 2n);
  await put(b, 'a', 2n);
  await put(b, 'a', 1n);
  await put(b, 'c/d', 3n);
  const id1 = await m.create(b.name, body('{"query_type":"QUERY"}'));
  const id2 = await m.createFromParams(b.name, 'a', new URLSearchParams());
  assert.equal(id1, 1n);
  assert.equal(id2, 2n);
  const batch = await m.next(b.name, id1, { head: false });
  assert.deepEqual(keys(batch), ['a@1', 'a@2', 'b@2', 'c/d@3']);
  assert.equal(batch.last, true);
  assert.equal(batch.onlyMetadata, false);
  assert.equal((await batch.records[0]!.record.buffer()).toString(), 'x');
  // exhausted: 204 until the TTL expires
  await assert.rejects(m.next(b.name, id1, { head: false }), rejectsWith(204, 'No content'));
  assert.deepEqual(await drain(m, b.name, id2, 'a'), ['a@1', 'a@2']);
});

test('100 records come back as 85 + 15; size and metadata limits; HEAD ignores the size limit', async () => {
  const m = manager();
  const b = await freshBucket();
  for (let i = 0; i < 100; i++) await put(b, 'e', BigInt(1000 + i), 'abcd');
  const id = await m.create(b.name, body('{"query_type":"QUERY","entries":["e"]}'));
  const first = await m.next(b.name, id, { head: false });
  assert.equal(first.records.length, 85);
  assert.equal(first.last, false);
  const second = await m.next(b.name, id, { head: false });
  assert.equal(second.records.length, 15);
  assert.equal(second.last, true);
  assert.equal(second.records[14]!.record.meta.ts, 1099n);

  const sized = await m.create(
    b.name,
    body('{"query_type":"QUERY","entries":["e"],"stop":1010,"when":{"#batch_size":10}}'),
  );
  assert.equal((await m.next(b.name, sized, { head: false })).records.length, 2);
  assert.equal((await m.next(b.name, sized, { head: true })).records.length, 8);

  const recs = await m.create(
    b.name,
    body('{"query_type":"QUERY","entries":["e"],"when":{"#batch_records":7}}'),
  );
  assert.equal((await m.next(b.name, recs, { head: false })).records.length, 7);
  assert.equal((await m.next(b.name, recs, { head: false, maxRecords: 1 })).records.length, 1);

  const metaLimited = await m.create(
    b.name,
    body('{"query_type":"QUERY","entries":["e"],"when":{"#batch_metadata_size":150}}'),
  );
  const mb = await m.next(b.name, metaLimited, { head: false });
  assert.ok(mb.records.length >= 1 && mb.records.length < 5, String(mb.records.length));
});

test('a record larger than the size limit is returned alone', async () => {
  const m = manager({ ...FAST, maxSize: 10 });
  const b = await freshBucket();
  await put(b, 'e', 1n, 'aaaa');
  await put(b, 'e', 2n, 'b'.repeat(50));
  await put(b, 'e', 3n, 'cccc');
  const id = await m.create(b.name, body('{"query_type":"QUERY"}'));
  assert.deepEqual(keys(await m.next(b.name, id, { head: false })), ['e@1']);
  assert.deepEqual(keys(await m.next(b.name, id, { head: false })), ['e@2']);
  const last = await m.next(b.name, id, { head: false });
  assert.deepEqual(keys(last), ['e@3']);
  assert.equal(last.last, true);
});

test('entry patterns, $meta hiding and tombstones', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'cam-1', 1n);
  await put(b, 'cam-2', 2n);
  await put(b, 'other', 3n);
  await put(b, 'cam-1/$meta', 4n, 'm', { key: 'k1' });
  await put(b, 'cam-1/$meta', 5n, 'm', { key: 'k2' });
  await b.updateLabels('cam-1/$meta', 5n, { remove: 'true' });

  const all = await m.create(b.name, body('{"query_type":"QUERY","entries":["*"]}'));
  assert.deepEqual(await drain(m, b.name, all), ['cam-1@1', 'cam-2@2', 'other@3']);
  const some = await m.create(b.name, body('{"query_type":"QUERY","entries":["cam-*","!cam-2","missing"]}'));
  assert.deepEqual(await drain(m, b.name, some), ['cam-1@1']);
  const meta = await m.create(b.name, body('{"query_type":"QUERY","entries":["cam-1/$meta"]}'));
  assert.deepEqual(await drain(m, b.name, meta), ['cam-1/$meta@4']);
  const metaEntry = await m.create(b.name, body('{"query_type":"QUERY"}'), 'cam-1/$meta');
  assert.deepEqual(await drain(m, b.name, metaEntry, 'cam-1/$meta'), ['cam-1/$meta@4']);
  const none = await m.create(b.name, body('{"query_type":"QUERY","entries":["nothing"]}'));
  await assert.rejects(m.next(b.name, none, { head: false }), rejectsWith(204));

  await assert.rejects(
    m.create('no-such-bucket', body('{"query_type":"QUERY"}')),
    rejectsWith(404, "Bucket 'no-such-bucket' is not found"),
  );
  await assert.rejects(
    m.create(b.name, body('{"query_type":"QUERY"}'), 'missing'),
    rejectsWith(404, `Entry 'missing' not found in bucket '${b.name}'`),
  );
});

test('ids are valid only where they were created', async () => {
  const m = manager();
  const b = await freshBucket();
  const b2 = await freshBucket();
  await put(b, 'e', 1n);
  await put(b, 'f', 1n);
  const bucketLevel = await m.create(b.name, body('{"query_type":"QUERY"}'));
  const entryLevel = await m.create(b.name, body('{"query_type":"QUERY"}'), 'e');
  const notFound = (id: bigint) =>
    rejectsWith(404, `Query ${id} not found and it might have expired. Check TTL in your query request.`);
  await assert.rejects(m.next(b2.name, bucketLevel, { head: false }), notFound(bucketLevel));
  await assert.rejects(m.next(b.name, bucketLevel, { head: false, entry: 'e' }), notFound(bucketLevel));
  await assert.rejects(m.next(b.name, entryLevel, { head: false }), notFound(entryLevel));
  await assert.rejects(m.next(b.name, entryLevel, { head: false, entry: 'f' }), notFound(entryLevel));
  await assert.rejects(m.next(b.name, 999n, { head: false }), notFound(999n));
  assert.deepEqual(await drain(m, b.name, entryLevel, 'e'), ['e@1']);
});

test('QueryEntry validation', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'e', 1n);
  await assert.rejects(m.create(b.name, body('{"start":1}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, undefined), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"SELECT"}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"QUERY","bogus":1}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"QUERY","start":"1"}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"QUERY","ttl":-1}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"QUERY","continuous":"yes"}')), rejectsWith(422));
  await assert.rejects(m.create(b.name, body('{"query_type":"QUERY","entries":"e"}')), rejectsWith(422));
  await assert.rejects(
    m.create(b.name, body('{"query_type":"QUERY","when":{"$bogus":1}}')),
    rejectsWith(422),
  );
  await assert.rejects(
    m.create(b.name, body('{"query_type":"QUERY","start":10,"stop":5}')),
    rejectsWith(422, 'Start time must be before stop time'),
  );
  // continuous queries ignore stop
  await m.create(b.name, body('{"query_type":"QUERY","start":10,"stop":5,"continuous":true}'));
  // removed 1.20 fields are ignored; an empty ext names no extension
  const ok = await m.create(
    b.name,
    body('{"query_type":"QUERY","limit":1,"each_n":3,"include":{"a":"b"},"ext":{},"only_metadata":true}'),
  );
  const batch = await m.next(b.name, ok, { head: true });
  assert.deepEqual(keys(batch), ['e@1']);
  assert.equal(batch.onlyMetadata, true);
  const e = await m
    .create(b.name, body('{"query_type":"QUERY","ext":{"select":{}}}'))
    .catch((x: unknown) => x);
  assert.ok(
    e instanceof FerryError &&
      e.status === 422 &&
      /^Unknown extension 'select' in query id=\d+$/.test(e.message),
    String(e),
  );
  await assert.rejects(m.createFromParams(b.name, 'e', new URLSearchParams('start=abc')), rejectsWith(422));
  await assert.rejects(
    m.createFromParams(b.name, 'e', new URLSearchParams('continuous=maybe')),
    rejectsWith(422),
  );
  // 1.20 parameters are accepted and ignored
  const legacy = await m.createFromParams(
    b.name,
    'e',
    new URLSearchParams('start=0&stop=5&ttl=10&limit=1&include-a=b&each_s=1'),
  );
  assert.deepEqual(await drain(m, b.name, legacy, 'e'), ['e@1']);
});

test('time range defaults: start inclusive, stop exclusive, stop = latest + 1 at creation', async () => {
  const m = manager();
  const b = await freshBucket();
  for (const ts of [10n, 20n, 30n]) await put(b, 'e', ts);
  const ranged = await m.create(b.name, body('{"query_type":"QUERY","start":10,"stop":30}'));
  assert.deepEqual(await drain(m, b.name, ranged), ['e@10', 'e@20']);
  const open = await m.create(b.name, body('{"query_type":"QUERY"}'));
  await put(b, 'e', 40n);
  assert.deepEqual(await drain(m, b.name, open), ['e@10', 'e@20', 'e@30']);
});

test('when: non-strict skips records, strict fails the read with 404', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'e', 1n, 'x', { score: '5' });
  await put(b, 'e', 2n, 'x', {});
  await put(b, 'e', 3n, 'x', { score: '9' });
  const lax = await m.create(b.name, body('{"query_type":"QUERY","when":{"&score":{"$gt":4}}}'));
  assert.deepEqual(await drain(m, b.name, lax), ['e@1', 'e@3']);
  const strict = await m.create(
    b.name,
    body('{"query_type":"QUERY","strict":true,"when":{"&score":{"$gt":4},"#batch_records":1}}'),
  );
  assert.deepEqual(keys(await m.next(b.name, strict, { head: false })), ['e@1']);
  await assert.rejects(
    m.next(b.name, strict, { head: false }),
    rejectsWith(404, "Reference 'score' not found"),
  );
  const strict2 = await m.create(
    b.name,
    body('{"query_type":"QUERY","when":{"&missing":{"$eq":1}},"strict":true}'),
  );
  await assert.rejects(
    m.next(b.name, strict2, { head: false }),
    rejectsWith(404, "Reference 'missing' not found"),
  );
});

test('$limit ends the query; #select_labels; #ctx_before / #ctx_after', async () => {
  const m = manager();
  const b = await freshBucket();
  for (let i = 1; i <= 10; i++)
    await put(b, 'e', BigInt(i * 1000), 'x', {
      n: String(i),
      hit: i === 5 || i === 9 ? '1' : '0',
      other: 'o',
    });
  await put(b, 'f', 5000n, 'x', { n: '0', hit: '0' });

  const limited = await m.create(b.name, body('{"query_type":"QUERY","entries":["e"],"when":{"$limit":3}}'));
  const lb = await m.next(b.name, limited, { head: false });
  assert.deepEqual(keys(lb), ['e@1000', 'e@2000', 'e@3000']);
  // the query has ended: either this batch said so or the next read answers 204
  if (!lb.last) await assert.rejects(m.next(b.name, limited, { head: false }), rejectsWith(204));

  const sel = await m.create(
    b.name,
    body('{"query_type":"QUERY","entries":["e"],"stop":2000,"when":{"#select_labels":["n","absent"]}}'),
  );
  assert.deepEqual((await m.next(b.name, sel, { head: false })).records[0]!.labels, { n: '1' });

  const ctx = await m.create(
    b.name,
    body('{"query_type":"QUERY","when":{"&hit":{"$eq":1},"#ctx_before":2,"#ctx_after":1}}'),
  );
  assert.deepEqual(await drain(m, b.name, ctx), [
    'e@3000',
    'e@4000',
    'e@5000',
    'e@6000',
    'e@7000',
    'e@8000',
    'e@9000',
    'e@10000',
  ]);

  const dur = await m.create(
    b.name,
    body(
      '{"query_type":"QUERY","entries":["e"],"when":{"&hit":{"$eq":1},"#ctx_before":"1ms","#ctx_after":"1500us"}}',
    ),
  );
  assert.deepEqual(await drain(m, b.name, dur), [
    'e@4000',
    'e@5000',
    'e@6000',
    'e@8000',
    'e@9000',
    'e@10000',
  ]);
});

test('TTL is an idle timeout: ttl 0 fails the first read; expiry turns 204 into 404', async () => {
  const clock = new ManualClock();
  const m = manager(FAST, () => clock.now());
  const b = await freshBucket();
  await put(b, 'e', 1n);
  const zero = await m.create(b.name, body('{"query_type":"QUERY","ttl":0}'));
  await assert.rejects(m.next(b.name, zero, { head: false }), rejectsWith(404));
  const short = await m.create(b.name, body('{"query_type":"QUERY","ttl":1}'));
  assert.equal((await m.next(b.name, short, { head: false })).last, true);
  clock.advance(600);
  await assert.rejects(m.next(b.name, short, { head: false }), rejectsWith(204)); // resets the idle timer
  clock.advance(999);
  await assert.rejects(m.next(b.name, short, { head: false }), rejectsWith(204)); // 1 ms short of the TTL
  clock.advance(1000);
  await assert.rejects(m.next(b.name, short, { head: false }), rejectsWith(404));
});

test('expired queries are garbage-collected', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'e', 1n);
  const before = m.size;
  await m.create(b.name, body('{"query_type":"QUERY","ttl":0}'));
  assert.equal(m.size, before + 1);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(m.size, before);
});

test('continuous bucket-level query: empty batch after the timeout, then new records', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'e', 1n);
  const id = await m.create(b.name, body('{"query_type":"QUERY","continuous":true,"ttl":10}'));
  const first = await m.next(b.name, id, { head: false });
  assert.deepEqual(keys(first), ['e@1']);
  assert.equal(first.last, false);
  const t0 = Date.now();
  const empty = await m.next(b.name, id, { head: false });
  assert.deepEqual(empty.records, []);
  assert.equal(empty.last, false);
  assert.ok(Date.now() - t0 >= 250, 'waited for the batch timeout');

  // a pending read is woken by a write, including into a new entry that matches
  const pending = m.next(b.name, id, { head: false });
  await new Promise((r) => setTimeout(r, 50));
  await put(b, 'new-entry', 5n);
  const woken = await pending;
  assert.deepEqual(keys(woken), ['new-entry@5']);
  await put(b, 'e', 7n);
  await put(b, 'e', 0n); // belated: behind the cursor of `e`, not returned
  await put(b, 'e', 3n);
  assert.deepEqual(keys(await m.next(b.name, id, { head: false })), ['e@3', 'e@7']);
});

test('continuous entry-level query: last once caught up, then 204, then new records', async () => {
  const m = manager();
  const b = await freshBucket();
  await put(b, 'e', 1n);
  await put(b, 'e', 2n);
  const id = await m.createFromParams(b.name, 'e', new URLSearchParams('continuous=true&ttl=10'));
  const first = await m.next(b.name, id, { head: false, entry: 'e' });
  assert.deepEqual(keys(first), ['e@1', 'e@2']);
  assert.equal(first.last, true);
  await assert.rejects(m.next(b.name, id, { head: false, entry: 'e' }), rejectsWith(204));
  await put(b, 'e', 3n);
  assert.deepEqual(keys(await m.next(b.name, id, { head: false, entry: 'e', maxRecords: 1 })), ['e@3']);
});

test('REMOVE queries', async () => {
  const m = manager();
  const b = await freshBucket();
  for (let i = 1; i <= 5; i++) await put(b, 'a', BigInt(i), 'x', { k: String(i % 2) });
  await put(b, 'b', 0n, 'x', {});
  await put(b, 'a/$meta', 1n, 'x', { key: 'k' });

  await assert.rejects(
    m.remove(b.name, body('{"query_type":"REMOVE"}')),
    rejectsWith(422, 'Define at least one query parameter to delete records'),
  );
  await assert.rejects(
    m.remove(b.name, body('{"query_type":"REMOVE","entries":["a"]}')),
    rejectsWith(422, 'Define at least one query parameter to delete records'),
  );
  await assert.rejects(
    m.remove(b.name, body('{"query_type":"REMOVE","start":5,"stop":1}')),
    rejectsWith(422, 'Start time must be before stop time'),
  );
  await assert.rejects(m.removeFromParams(b.name, 'a', new URLSearchParams()), rejectsWith(422));
  // strict: the missing label on b@0 fails the request (records are removed as they are met)
  await assert.rejects(
    m.remove(b.name, body('{"query_type":"REMOVE","when":{"&k":{"$eq":1}},"strict":true}')),
    rejectsWith(404, "Reference 'k' not found"),
  );
  // non-strict: b@0 is skipped
  assert.equal(await m.remove(b.name, body('{"query_type":"REMOVE","when":{"&k":{"$eq":1}}}')), 3n);
  assert.equal(await m.remove(b.name, body('{"query_type":"REMOVE","stop":100}'), 'missing'), 0n);
  assert.equal(await m.removeFromParams(b.name, 'b', new URLSearchParams('start=0')), 1n);
  const left = await m.create(b.name, body('{"query_type":"QUERY","entries":["*","a/$meta"]}'));
  assert.deepEqual(await drain(m, b.name, left), ['a/$meta@1', 'a@2', 'a@4']);
  assert.equal(await m.remove(b.name, body('{"query_type":"REMOVE","when":{"$limit":1}}'), 'a'), 1n);
  assert.equal(b.entries().find((e) => e.name === 'a')!.record_count, 1n);
});

test('REMOVE queries of a time range (and a stateless when) take the bulk path: one op per sealed block', async () => {
  const m = manager();
  const b = await storage.createBucket(`qb${++bucketSeq}`, { max_block_records: 10n });
  const items = Array.from({ length: 100 }, (_, i) => ({
    entry: 'e',
    ts: BigInt(i),
    opts: { size: 1, labels: { k: i >= 50 && i < 70 ? '1' : String(i % 2) } },
    payload: Buffer.from('x'),
  }));
  await b.writeMany(items);
  let lsn = storage.changes.lastLsn();
  // [0, 50): blocks 0–4 whole, 5 block removals (record by record it was 50 + 5 ops)
  assert.equal(await m.remove(b.name, body('{"query_type":"REMOVE","stop":50}')), 50n);
  assert.equal(storage.changes.lastLsn() - lsn, 5n);
  lsn = storage.changes.lastLsn();
  // a stateless when: blocks 5 and 6 match whole (2 block removals), then the odd records of the
  // rest, one commit per block (record by record it was 35 + 2 ops)
  assert.equal(await m.remove(b.name, body('{"query_type":"REMOVE","when":{"&k":{"$eq":1}}}')), 35n);
  assert.equal(storage.changes.lastLsn() - lsn, 2n + 15n);
  const left = await m.create(b.name, body('{"query_type":"QUERY"}'));
  const rest = await drain(m, b.name, left);
  assert.deepEqual(
    rest,
    Array.from({ length: 15 }, (_, i) => `e@${70 + 2 * i}`),
  );
  assert.equal(
    b.info().size,
    b.entries().reduce((s, e) => s + e.size, 0n),
  );
});

test('concurrent reads of one query are serialised', async () => {
  const m = manager();
  const b = await freshBucket();
  for (let i = 0; i < 30; i++) await put(b, 'e', BigInt(i));
  const id = await m.create(b.name, body('{"query_type":"QUERY","when":{"#batch_records":10}}'));
  const results = await Promise.all([0, 1, 2].map(() => m.next(b.name, id, { head: false })));
  const all = results.flatMap(keys);
  assert.equal(new Set(all).size, 30);
});

test('batches are prefetched, yet a strict-mode error still surfaces on the read after the good records', async () => {
  const m = manager();
  const b = await freshBucket();
  for (let i = 0; i < 100; i++) await put(b, 'e', BigInt(1000 + i), 'x', { score: String(i) });
  await put(b, 'e', 1100n, 'x'); // no score label
  const id = await m.create(
    b.name,
    body('{"query_type":"QUERY","strict":true,"when":{"&score":{"$gte":0}}}'),
  );
  assert.equal((await m.next(b.name, id, { head: false })).records.length, 85);
  const second = await m.next(b.name, id, { head: false });
  assert.deepEqual(
    second.records.map((r) => r.record.meta.ts),
    Array.from({ length: 15 }, (_, i) => BigInt(1085 + i)),
  );
  await assert.rejects(m.next(b.name, id, { head: false }), (e: unknown) => {
    assert.ok(e instanceof FerryError);
    assert.equal(e.status, 404);
    assert.match(e.message, /score/);
    return true;
  });
});
