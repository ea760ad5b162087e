/**
 * Writes of many entries started together reach a Ferry destination in few multi-entry requests
 * (write-coalescer.ts, batch protocol v2) and arrive whole: payloads, labels, content types and
 * origin, for both destination kinds. The coalescer itself is checked against a fake sender:
 * packs are bounded, hold one call per entry, answer each call its own outcomes, and a failed
 * pack fails only its own calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WriteCoalescer, type CoalescedCall } from '../src/replication/write-coalescer.js';
import { forEachTarget, readText, statusOf, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

type Rec = { id: string; size: number };

/** A coalescer over a fake sender that records its packs and answers `ok:<id>` per record. */
function fakeCoalescer(
  limits = { records: 10, bytes: 1000 },
  fail?: (calls: readonly CoalescedCall<Rec>[]) => boolean,
) {
  const packs: Array<{ key: string; entries: string[]; records: number; bytes: number }> = [];
  const c = new WriteCoalescer<Rec, string>(
    (key, calls) => {
      packs.push({
        key,
        entries: calls.map((x) => x.entry),
        records: calls.reduce((n, x) => n + x.records.length, 0),
        bytes: calls.reduce((n, x) => n + x.records.reduce((m, r) => m + r.size, 0), 0),
      });
      if (fail?.(calls)) return Promise.reject(new Error('pack failed'));
      return Promise.resolve(calls.map((x) => x.records.map((r) => `ok:${x.entry}:${r.id}`)));
    },
    limits,
    (_entry, records) => records.reduce((n, r) => n + r.size, 0),
  );
  return { c, packs };
}

const recs = (n: number, size = 10, tag = ''): Rec[] =>
  Array.from({ length: n }, (_, i) => ({ id: `${tag}${i}`, size }));

test('calls of one event-loop turn go in one pack per key; each gets its own outcomes in order', async () => {
  const { c, packs } = fakeCoalescer();
  const [a, b, x] = await Promise.all([
    c.submit('o1', 'a', recs(2)),
    c.submit('o1', 'b', recs(3)),
    c.submit('o2', 'a', recs(1)),
  ]);
  assert.deepEqual(a, ['ok:a:0', 'ok:a:1']);
  assert.deepEqual(b, ['ok:b:0', 'ok:b:1', 'ok:b:2']);
  assert.deepEqual(x, ['ok:a:0']);
  assert.deepEqual(
    packs.map((p) => [p.key, p.entries]),
    [
      ['o1', ['a', 'b']],
      ['o2', ['a']],
    ],
  );
  // a call of a later turn opens a new pack
  await c.submit('o1', 'c', recs(1));
  assert.equal(packs.length, 3);
  assert.deepEqual(packs[2]!.entries, ['c']);
});

test('packs stay within the record and byte bounds and never hold two calls of one entry', async () => {
  const { c, packs } = fakeCoalescer({ records: 10, bytes: 1000 });
  const calls = [
    c.submit('k', 'a', recs(6)),
    c.submit('k', 'b', recs(6)), // would pass 10 records: next pack
    c.submit('k', 'a', recs(1, 10, 'second-')), // entry a is in the first pack already
    c.submit('k', 'c', recs(1, 990)), // would pass 1000 bytes with a: next pack
    c.submit('k', 'd', recs(20)), // larger than a pack alone: a pack of its own
    c.submit('k', 'e', recs(2)),
  ];
  const out = await Promise.all(calls);
  assert.deepEqual(out[2], ['ok:a:second-0']);
  assert.equal(out[4]!.length, 20);
  for (const p of packs) {
    assert.equal(new Set(p.entries).size, p.entries.length, `one call per entry: ${p.entries.join(',')}`);
    if (p.entries.length > 1) assert.ok(p.records <= 10 && p.bytes <= 1000, JSON.stringify(p));
  }
  assert.deepEqual(packs.map((p) => p.entries.join(',')).sort(), ['a,e', 'b,a', 'c', 'd'].sort());
});

test('a failed pack rejects its own calls only', async () => {
  const { c } = fakeCoalescer({ records: 3, bytes: 1000 }, (calls) => calls.some((x) => x.entry === 'bad'));
  const results = await Promise.allSettled([
    c.submit('k', 'bad', recs(2)),
    c.submit('k', 'x', recs(1)), // same pack as 'bad'
    c.submit('k', 'y', recs(3)), // next pack
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['rejected', 'rejected', 'fulfilled'],
  );
});

test('a sender answering too few outcomes fails the call, never resolves it short', async () => {
  const c = new WriteCoalescer<Rec, string>(
    (_k, calls) => Promise.resolve(calls.map((x) => x.records.slice(1).map(() => 'ok'))),
    { records: 10, bytes: 1000 },
    (_entry, records) => records.reduce((n, r) => n + r.size, 0),
  );
  await assert.rejects(c.submit('k', 'a', recs(2)), /answered 1 of 2 outcomes/);
});

const ENTRIES = 40;

/** POST requests the destination answered on a route family (from its `/metrics`). */
async function postsOf(url: string, token: string, family: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  const text = await res.text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('ferry_http_requests_total{')) continue;
    if (line.includes(`family="${family}"`) && line.includes('method="POST"'))
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
}

/** A sync replication 'r', created paused (so that what is written meanwhile ships at once). */
const replicatePaused = (env: ReplEnv, extra: Record<string, unknown>): Promise<void> =>
  env.replicate('r', {
    mode: 'paused',
    replication_type: 'sync',
    sync: { timeout_ms: 5000, on_timeout: 'fail' },
    ...extra,
  });

/** Many entries written while paused, then shipped at once; `extra`: more replication settings. */
function joinedScenario(extra: Record<string, unknown>) {
  return async (env: ReplEnv): Promise<void> => {
    await replicatePaused(env, extra);
    const src = env.storage.bucket('src');
    const expected = new Map<
      string,
      Array<{ ts: bigint; body: string; labels: Record<string, string>; ct: string }>
    >();
    const writes: Array<Promise<unknown>> = [];
    for (let e = 0; e < ENTRIES; e++) {
      const entry = e === 7 ? 'a/b-c/d_x' : `cam-${e}`;
      const list = [];
      for (let k = 0; k < 3; k++) {
        const ts = BigInt(1000 + k * 10 + (e % 5));
        // labels that change, vanish and come back; an empty value (not expressible in v2) on one entry
        const labels: Record<string, string> =
          k === 1
            ? { n: String(k) }
            : { n: String(k), zone: e % 2 ? 'north, x' : 'süd', ...(e === 3 ? { empty: '' } : {}) };
        const ct = k === 2 ? 'image/jpeg' : 'text/plain';
        // one entry with a payload too large to be joined
        const body = e === 5 && k === 0 ? 'L'.repeat(100 * 1024) : `${entry}@${ts}`;
        list.push({ ts, body, labels, ct });
        const buf = Buffer.from(body);
        writes.push(src.write(entry, ts, { size: buf.length, labels, contentType: ct }, buf));
      }
      expected.set(entry, list);
    }
    await Promise.all(writes);
    const v1Before =
      env.kind === 'remote'
        ? await postsOf(env.destination.dst_host, env.destination.dst_token!, 'b/:bucket/*')
        : 0;
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === ENTRIES * 3, {
      timeoutMs: 20_000,
      message: 'every record written',
    });
    for (const [entry, list] of expected) {
      const got = await readText(env.dst, 'dst', entry);
      assert.deepEqual(
        got.map((r) => ({ ts: r.ts, body: r.body, labels: r.labels, ct: r.contentType })),
        list,
        `entry ${entry}`,
      );
      for await (const r of env.dst.bucket('dst').scan(entry, 0n, 2n ** 63n))
        // (a local destination is this instance: its own clients' records keep origin '')
        assert.equal(
          r.meta.origin,
          env.kind === 'local' ? '' : env.storage.instanceId,
          `origin of ${entry}@${r.meta.ts}`,
        );
    }
    const st = statusOf(env.manager, 'r');
    assert.equal(st.counters.records_already_present, 0);
    assert.equal(st.pending_records, 0);
    if (env.kind === 'remote') {
      const v2 = await postsOf(env.destination.dst_host, env.destination.dst_token!, 'io/:bucket/write');
      const v1 =
        (await postsOf(env.destination.dst_host, env.destination.dst_token!, 'b/:bucket/*')) - v1Before;
      // the entry with an empty label value (v2 cannot carry it) and the one with a large
      // payload go alone as v1 batches; the other 38 entries are joined into a few v2 requests
      assert.equal(v1, 2, `${v1} v1 requests`);
      assert.ok(v2 >= 1 && v2 <= 8, `${v2} v2 requests for ${ENTRIES - 2} entries`);
    }
  };
}

forEachTarget(
  'writes of many entries shipped together arrive whole, in few requests to a Ferry destination',
  joinedScenario({}),
);

forEachTarget('joined writes arrive whole with a compressed body', joinedScenario({ compression: 'zstd' }));

forEachTarget('a joined write sent again after a lost answer finds its records present', async (env) => {
  await env.replicate('r', { mode: 'paused' });
  const src = env.storage.bucket('src');
  const writes = [];
  for (let e = 0; e < 8; e++) {
    const buf = Buffer.from(`v${e}`);
    writes.push(src.write(`e${e}`, 5n, { size: buf.length, labels: { k: String(e) } }, buf));
  }
  await Promise.all(writes);
  // the destination holds half of them already (as after an answer lost in a broken connection)
  const dst = env.dst;
  if (!dst.hasBucket('dst')) await dst.createBucket('dst');
  for (let e = 0; e < 4; e++) {
    const buf = Buffer.from(`v${e}`);
    await dst
      .bucket('dst')
      .write(
        `e${e}`,
        5n,
        { size: buf.length, labels: { k: String(e) }, origin: env.storage.instanceId },
        buf,
      );
  }
  // and one differs: a real conflict, never overwritten
  const other = Buffer.from('other');
  await dst.bucket('dst').write('e4', 5n, { size: other.length, labels: {} }, other);
  await env.manager.setMode('r', { mode: 'enabled' });
  // (the window ends, and the replication stops, once every one of its writes is answered)
  await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', {
    timeoutMs: 20_000,
    message: 'the replication stopped at the conflict',
  });
  const st = statusOf(env.manager, 'r');
  assert.equal(st.counters.records_already_present, 4);
  assert.equal(st.counters.records_written, 3);
  // the real conflict stops the replication (on_write_failure "stop"), naming the record
  assert.equal(st.state, 'suspended');
  assert.match(st.state_reason ?? '', /record 5 of entry 'e4' \(409\)/);
  assert.equal((await readText(dst, 'dst', 'e4'))[0]!.body, 'other');
  for (const e of [5, 6, 7]) assert.equal((await readText(dst, 'dst', `e${e}`))[0]!.body, `v${e}`);
});

/** Writes `perEntry(e)` into entries e0…e{n-1} while paused, enables, waits until nothing is pending. */
async function shipTogether(
  env: ReplEnv,
  n: number,
  perEntry: (e: number) => Array<{ labels: Record<string, string>; ct?: string }>,
  extra: Record<string, unknown> = {},
): Promise<number> {
  await replicatePaused(env, extra);
  const src = env.storage.bucket('src');
  const writes: Array<Promise<unknown>> = [];
  for (let e = 0; e < n; e++)
    perEntry(e).forEach((r, k) => {
      const buf = Buffer.from(`e${e}-${k}`);
      writes.push(
        src.write(
          `e${e}`,
          BigInt(100 + k),
          { size: buf.length, labels: r.labels, contentType: r.ct ?? 'text/plain' },
          buf,
        ),
      );
    });
  await Promise.all(writes);
  await env.manager.setMode('r', { mode: 'enabled' });
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === writes.length, {
    timeoutMs: 20_000,
    message: `${writes.length} records written (state ${statusOf(env.manager, 'r').state}: ${statusOf(env.manager, 'r').state_reason})`,
  });
  return writes.length;
}

forEachTarget(
  'joined requests stay within the header bound: 40 entries with 48 kB of labels each',
  async (env) => {
    const big = { a: 'x'.repeat(16_000), b: 'y'.repeat(16_000), c: 'z'.repeat(16_000) };
    await shipTogether(env, 40, () => [{ labels: big }]);
    for (let e = 0; e < 40; e++) assert.deepEqual((await readText(env.dst, 'dst', `e${e}`))[0]!.labels, big);
  },
);

forEachTarget('one entry a joined request cannot carry does not fail the others', async (env) => {
  // two records of one entry with 300 different label names each: as one v2 request the
  // destination refused the whole request (labels deleted by the second record were counted)
  const a: Record<string, string> = {};
  const b: Record<string, string> = {};
  for (let i = 0; i < 300; i++) {
    a[`a${i}`] = 'x';
    b[`b${i}`] = 'y';
  }
  await shipTogether(env, 10, (e) =>
    e === 0 ? [{ labels: a }, { labels: b }] : [{ labels: { k: String(e) } }],
  );
  assert.deepEqual(
    (await readText(env.dst, 'dst', 'e0')).map((r) => r.labels),
    [a, b],
  );
  for (let e = 1; e < 10; e++)
    assert.deepEqual((await readText(env.dst, 'dst', `e${e}`))[0]!.labels, { k: String(e) });
  assert.equal(statusOf(env.manager, 'r').counters.records_failed, 0);
});

forEachTarget('content types with a comma arrive unchanged', async (env) => {
  const cts = ['text/plain, text/html', 'a/b; x="1,y=2"', 'text/plain'];
  await shipTogether(env, 3, (e) => [{ labels: { k: String(e) }, ct: cts[e] }]);
  for (let e = 0; e < 3; e++) {
    const [r] = await readText(env.dst, 'dst', `e${e}`);
    assert.deepEqual([r!.contentType, r!.labels], [cts[e], { k: String(e) }], `entry e${e}`);
  }
});
