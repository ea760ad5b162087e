/**
 * The SDK (src/client, imported as `ferry/client`) against real Ferry processes: buckets, records
 * streamed both ways, v1 batches, queries, tokens, typed errors (server message, bad token,
 * unreachable, timeout, abort) and replications between two instances.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { FerryClient, FerryError, replicate } from 'ferry/client';
import { spawnFerry, freePort, type FerryProcess } from './helpers/ferry-process.js';
import { waitFor } from './helpers/wait.js';

let a: FerryProcess;
let b: FerryProcess;
let ca: FerryClient;
let cb: FerryClient;

before(async () => {
  [a, b] = await Promise.all([spawnFerry(), spawnFerry()]);
  ca = new FerryClient(a.url, { token: a.token });
  cb = new FerryClient(b.url, { token: b.token });
});
after(async () => {
  await Promise.all([a?.destroy(), b?.destroy()]);
});

/** Rejects with the FerryError `fn` throws, or fails when it does not throw one. */
async function ferryError(fn: () => Promise<unknown>): Promise<FerryError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof FerryError, `expected a FerryError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected an error');
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else controller.close();
    },
  });
}

describe('buckets and entries', () => {
  test('create, exist_ok, list, info, update, remove; a 409 carries the server message', async () => {
    const bucket = await ca.createBucket('sdk-b1', { max_block_records: 16 });
    await ca.createBucket('sdk-b1', {}, { existOk: true });
    const e = await ferryError(() => ca.createBucket('sdk-b1'));
    assert.equal(e.status, 409);
    assert.equal(e.message, "Bucket 'sdk-b1' already exists");
    assert.ok((await ca.listBuckets()).some((x) => x.name === 'sdk-b1'));
    await bucket.write('e/1', 1n, 'x');
    const info = await bucket.info();
    assert.equal(Number(info.settings.max_block_records), 16);
    assert.deepEqual(
      info.entries.map((x) => x.name),
      ['e', 'e/1'],
    );
    await bucket.update({ quota_type: 'FIFO', quota_size: 1_000_000 });
    assert.equal((await bucket.info()).settings.quota_type, 'FIFO');
    await bucket.remove();
    await waitFor(async () => !(await ca.listBuckets()).some((x) => x.name === 'sdk-b1'), {
      message: 'bucket removed',
    });
    const nf = await ferryError(() => ca.bucket('sdk-b1').info());
    assert.equal(nf.status, 404);
    assert.equal(nf.message, "Bucket 'sdk-b1' is not found");
  });

  test('info and me', async () => {
    const info = await ca.info();
    assert.match(info.version, /^1\.\d+\.\d+$/);
    assert.equal((await ca.me()).permissions.full_access, true);
    assert.equal(await ca.alive(), true);
  });
});

describe('tokens and rename', () => {
  test('create a token (value shown once), list, use it, remove; rename a bucket', async () => {
    await ca.createBucket('sdk-tok');
    const { value } = await ca.createToken('sdk-reader', { permissions: { read: ['sdk-tok'] } });
    assert.match(value, /^sdk-reader-/);
    const listed = (await ca.listTokens()).find((t) => t.name === 'sdk-reader');
    assert.equal(listed?.value, '');
    assert.deepEqual(listed?.permissions.read, ['sdk-tok']);
    const reader = new FerryClient(a.url, { token: value });
    assert.deepEqual(
      (await reader.listBuckets()).map((x) => x.name),
      ['sdk-tok'],
    );
    const denied = await ferryError(() => reader.createBucket('sdk-nope'));
    assert.equal(denied.status, 403);
    await ca.renameBucket('sdk-tok', 'sdk-tok2');
    assert.deepEqual((await ca.listTokens()).find((t) => t.name === 'sdk-reader')?.permissions.read, [
      'sdk-tok2',
    ]);
    await ca.removeToken('sdk-reader');
    assert.equal((await ferryError(() => reader.listBuckets())).status, 401);
  });
});

describe('records', () => {
  test('streamed write and read, labels, head, label update, removal', async () => {
    const bucket = await ca.createBucket('sdk-rec');
    const chunks = Array.from({ length: 64 }, (_, i) => new Uint8Array(16 * 1024).fill(i));
    await bucket.write('cam', 10n, streamOf(chunks), {
      size: 64 * 16 * 1024,
      contentType: 'image/raw',
      labels: { quality: 'ok' },
    });
    const rec = await bucket.read('cam', 10n);
    assert.equal(rec.ts, 10n);
    assert.equal(rec.size, 64 * 16 * 1024);
    assert.equal(rec.contentType, 'image/raw');
    assert.deepEqual(rec.labels, { quality: 'ok' });
    let got = 0;
    let i = 0;
    for await (const chunk of rec.stream!) {
      for (const byte of chunk) assert.equal(byte, Math.floor(i++ / (16 * 1024)));
      got += chunk.byteLength;
    }
    assert.equal(got, 64 * 16 * 1024);

    await bucket.write('cam', 20, 'latest', { labels: { quality: 'bad' } });
    const latest = await bucket.read('cam');
    assert.equal(latest.ts, 20n);
    assert.equal(await latest.text(), 'latest');
    const head = await bucket.read('cam', 10n, { head: true });
    assert.equal(head.size, 64 * 16 * 1024);
    assert.equal(head.stream, null);

    await bucket.updateLabels('cam', 20n, { quality: 'ok', extra: 'y' });
    assert.deepEqual((await bucket.read('cam', 20n, { head: true })).labels, { quality: 'ok', extra: 'y' });
    await bucket.removeRecord('cam', 20n);
    const gone = await ferryError(() => bucket.read('cam', 20n));
    assert.equal(gone.status, 404);
    assert.match(gone.message, /^Record 20 not found/);
  });

  test('v1 batch write reports refused records; queries iterate in order with when, head and stop', async () => {
    const bucket = await ca.createBucket('sdk-batch');
    await bucket.write('s', 3n, 'old');
    const refused = await bucket.writeBatch(
      's',
      Array.from({ length: 200 }, (_, i) => ({
        ts: BigInt(i + 1),
        data: `v${i + 1}`,
        labels: { parity: i % 2 === 0 ? 'odd' : 'even' },
        contentType: 'text/plain',
      })),
    );
    assert.deepEqual([...refused.keys()], [3n]);
    assert.equal(refused.get(3n)!.status, 409);

    const all = [];
    for await (const r of bucket.query('s')) all.push(r);
    assert.equal(all.length, 200);
    assert.deepEqual(
      all.map((r) => r.ts),
      Array.from({ length: 200 }, (_, i) => BigInt(i + 1)),
    );
    assert.equal(new TextDecoder().decode(all[0]!.data), 'v1');
    assert.equal(new TextDecoder().decode(all[2]!.data), 'old');
    assert.equal(new TextDecoder().decode(all[199]!.data), 'v200');

    const even = [];
    for await (const r of bucket.query('s', { start: 10n, stop: 20n, when: { '&parity': { $eq: 'even' } } }))
      even.push(r.ts);
    assert.deepEqual(even, [10n, 12n, 14n, 16n, 18n]);

    const heads = [];
    for await (const r of bucket.query('s', { stop: 3n, head: true }))
      heads.push([r.ts, r.size, r.data.length]);
    assert.deepEqual(heads, [
      [1n, 2, 0],
      [2n, 2, 0],
    ]);

    assert.equal(Number(await bucket.removeWhere('s', { start: 100n })), 101);
  });
});

describe('errors', () => {
  test('a bad token is a 401 with the server message', async () => {
    const bad = new FerryClient(a.url, { token: 'wrong' });
    const e = await ferryError(() => bad.listBuckets());
    assert.equal(e.status, 401);
    assert.ok(e.message.length > 0);
  });

  test('an unreachable server is code -3 with a hint', async () => {
    const port = await freePort();
    const c = new FerryClient(`http://127.0.0.1:${port}`);
    const e = await ferryError(() => c.info());
    assert.equal(e.status, -3);
    assert.match(e.message, /Cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    assert.equal(await c.alive(), false);
  });

  test('a server that never answers times out with code -2; an abort is code -5', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as { port: number }).port;
      const c = new FerryClient(`http://127.0.0.1:${port}`, { timeoutMs: 300 });
      const t0 = Date.now();
      const e = await ferryError(() => c.info());
      assert.equal(e.status, -2);
      assert.equal(e.message, 'GET info timed out after 300 ms');
      assert.ok(Date.now() - t0 < 5000);

      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const ab = await ferryError(() => c.info({ signal: ac.signal, timeoutMs: 0 }));
      assert.equal(ab.status, -5);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  test('aborting a streamed read and a query stops them with code -5', async () => {
    const bucket = await ca.createBucket('sdk-abort');
    await bucket.write('big', 1n, new Uint8Array(8 * 1024 * 1024));
    await bucket.writeBatch(
      'small',
      Array.from({ length: 50 }, (_, i) => ({ ts: i + 1, data: 'x' })),
    );
    const ac = new AbortController();
    const rec = await bucket.read('big', 1n, { signal: ac.signal });
    const reader = rec.stream!.getReader();
    await reader.read();
    ac.abort();
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break;
    });

    const qc = new AbortController();
    let n = 0;
    const e = await ferryError(async () => {
      for await (const r of bucket.query('small', { signal: qc.signal, continuous: true })) {
        n++;
        if (r.ts === 50n) qc.abort();
      }
    });
    assert.equal(e.status, -5);
    assert.equal(n, 50);
  });
});

describe('replications', () => {
  test('create, get, list, mode, status, replace, delete; unknown names are 404', async () => {
    await ca.createBucket('sdk-rsrc');
    await ca.replications.create('sdk-r1', {
      src_bucket: 'sdk-rsrc',
      dst_bucket: 'sdk-rdst',
      dst_host: b.url,
      dst_token: b.token,
      entries: ['cam-*'],
    });
    const got = await ca.replications.get('sdk-r1');
    assert.equal(got.settings.dst_token, null);
    assert.deepEqual(got.settings.entries, ['cam-*']);
    assert.ok((await ca.replications.list()).some((r) => r.name === 'sdk-r1'));
    await ca.replications.setMode('sdk-r1', 'paused');
    assert.equal((await ca.replications.get('sdk-r1')).info.mode, 'paused');
    assert.equal((await ca.replications.status('sdk-r1')).state, 'paused');
    await ca.replications.replace('sdk-r1', {
      src_bucket: 'sdk-rsrc',
      dst_bucket: 'sdk-rdst',
      dst_host: b.url,
    });
    assert.deepEqual((await ca.replications.get('sdk-r1')).settings.entries, []);
    await ca.replications.delete('sdk-r1');
    const e = await ferryError(() => ca.replications.get('sdk-r1'));
    assert.equal(e.status, 404);
    const e2 = await ferryError(() => ca.replications.status('nope'));
    assert.equal(e2.status, 404);
  });

  test('replicate(src, dst) copies new records; state() and activeTasks() report it; stop() deletes it', async () => {
    const src = await ca.createBucket('sdk-rep', {}, { existOk: true });
    const job = await replicate(ca, cb, { srcBucket: 'sdk-rep', dstBucket: 'sdk-rep-copy', name: 'sdk-rep' });
    await src.writeBatch(
      'e',
      Array.from({ length: 100 }, (_, i) => ({ ts: i + 1, data: `r${i}`, labels: { n: String(i) } })),
    );
    await waitFor(async () => (await job.status()).pending_records === 0 && (await job.state()) === 'idle', {
      timeoutMs: 30_000,
      message: 'replication caught up',
    });
    const copied = [];
    for await (const r of cb.bucket('sdk-rep-copy').query('e')) copied.push(r);
    assert.equal(copied.length, 100);
    assert.deepEqual(copied[42]!.labels, { n: '42' });
    assert.ok((await ca.activeTasks()).some((t) => t.name === 'sdk-rep'));
    await job.stop();
    assert.equal((await ferryError(() => job.state())).status, 404);
  });

  test('a one-shot replicate() copies what exists; follow() ends on completed; state() stays completed', async () => {
    const src = await ca.createBucket('sdk-once', {}, { existOk: true });
    await src.writeBatch(
      'e',
      Array.from({ length: 300 }, (_, i) => ({ ts: i + 1, data: `o${i}`, labels: { n: String(i) } })),
    );
    const job = await replicate(ca, cb, {
      srcBucket: 'sdk-once',
      dstBucket: 'sdk-once-copy',
      name: 'sdk-once',
      settings: { continuous: false },
    });
    const seen: string[] = [];
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 60_000);
    for await (const ev of job.follow({ intervalMs: 100, signal: ac.signal }))
      seen.push(ev.type === 'status' ? ev.status.state : `>${ev.state.to}`);
    clearTimeout(timer);
    assert.ok(!ac.signal.aborted, `follow ended by itself (saw ${seen.join(' ')})`);
    assert.ok(seen.includes('>completed') || seen.at(-1) === 'completed', seen.join(' '));
    await src.write('e', 10_000, 'after the run');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await job.state(), 'completed');
    const copied = [];
    for await (const r of cb.bucket('sdk-once-copy').query('e')) copied.push(r);
    assert.equal(copied.length, 300, 'exactly what existed, not the later write');
    assert.equal(new TextDecoder().decode(copied[299]!.data), 'o299');
    await job.stop();
  });

  test('failures() lists a record the destination refused under on_write_failure: skip', async () => {
    await cb.createBucket('sdk-fail-dst', {}, { existOk: true });
    await cb.bucket('sdk-fail-dst').write('e', 1n, 'already different');
    const src = await ca.createBucket('sdk-fail', {}, { existOk: true });
    const job = await replicate(ca, cb, {
      srcBucket: 'sdk-fail',
      dstBucket: 'sdk-fail-dst',
      name: 'sdk-fail',
      settings: { on_write_failure: 'skip' },
    });
    await src.write('e', 1n, 'original');
    await src.write('e', 2n, 'fine');
    const f = await waitFor(
      async () => {
        const r = await ca.replications.failures('sdk-fail');
        return r.total === 1 ? r : undefined;
      },
      { timeoutMs: 30_000, message: 'one failure logged' },
    );
    assert.equal(BigInt(f.failures[0]!.ts), 1n);
    assert.equal(f.failures[0]!.status, 409);
    await waitFor(
      async () =>
        (await cb
          .bucket('sdk-fail-dst')
          .read('e', 2n)
          .then((r) => r.text())) === 'fine',
      {
        timeoutMs: 30_000,
        message: 'the next record still shipped',
      },
    );
    await job.stop();
  });

  test('verify: clean, a changed label found with its part, repair, lastVerify; a bad request is a 422', async () => {
    await ca.createBucket('sdk-ver', {}, { existOk: true });
    await ca.replications.create('sdk-ver', {
      src_bucket: 'sdk-ver',
      dst_bucket: 'sdk-ver-copy',
      dst_host: b.url,
      dst_token: b.token,
    });
    await ca.bucket('sdk-ver').writeBatch(
      'e',
      Array.from({ length: 20 }, (_, i) => ({ ts: i + 1, data: 'v', labels: { k: 'a' } })),
    );
    await waitFor(async () => (await ca.replications.status('sdk-ver')).pending_records === 0, {
      message: 'replicated',
    });
    assert.equal((await ca.replications.verify('sdk-ver')).outcome, 'clean');
    await cb.bucket('sdk-ver-copy').updateLabels('e', 5, { k: 'changed' });
    const found = await ca.replications.verify('sdk-ver');
    assert.equal(found.outcome, 'differences');
    // u64 fields arrive as numbers while they are below 2^53 (bigint-safe JSON).
    const first = found.entries[0]!.different.first.map((d) => ({ ts: Number(d.ts), parts: d.parts }));
    assert.deepEqual(first, [{ ts: 5, parts: ['labels'] }]);
    const fixed = await ca.replications.verify('sdk-ver', { repair: true });
    assert.equal(fixed.outcome, 'clean');
    assert.equal(fixed.repair?.relabelled, 1);
    assert.equal((await cb.bucket('sdk-ver-copy').read('e', 5)).labels.k, 'a');
    assert.equal((await ca.replications.lastVerify('sdk-ver')).finished_at, fixed.finished_at);
    const bad = await ferryError(() => ca.replications.verify('sdk-ver', { start: 10, stop: 5 }));
    assert.equal(bad.status, 422);
    assert.match(bad.message, /'start' must be before 'stop'/);
    await ca.replications.delete('sdk-ver');
  });

  test('remotes: create, get without the token, replace keeps it, a replication over it, delete refused while used unless forced', async () => {
    await ca.remotes.create('sdk-cloud', { url: b.url, token: b.token });
    const r = await ca.remotes.get('sdk-cloud');
    assert.equal(r.has_token, true);
    assert.ok(!JSON.stringify(await ca.remotes.list()).includes(b.token), 'no token in any answer');
    await ca.remotes.replace('sdk-cloud', { url: b.url, request_timeout_ms: 20_000 });
    assert.equal((await ca.remotes.get('sdk-cloud')).request_timeout_ms, 20_000);
    await ca.createBucket('sdk-rem', {}, { existOk: true });
    await ca.replications.create('sdk-rem', {
      src_bucket: 'sdk-rem',
      dst_bucket: 'sdk-rem-copy',
      remote: 'sdk-cloud',
    } as Parameters<typeof ca.replications.create>[1]);
    await ca.bucket('sdk-rem').write('e', 7, 'kept token still works');
    await waitFor(async () => (await ca.replications.status('sdk-rem')).pending_records === 0, {
      message: 'replicated with the kept token',
    });
    assert.equal(await (await cb.bucket('sdk-rem-copy').read('e', 7)).text(), 'kept token still works');
    const busy = await ferryError(() => ca.remotes.delete('sdk-cloud'));
    assert.equal(busy.status, 409);
    await ca.remotes.delete('sdk-cloud', { force: true });
    assert.equal((await ferryError(() => ca.remotes.get('sdk-cloud'))).status, 404);
    await ca.replications.delete('sdk-rem');
  });

  test('groups: create, get, list, replace, a bucket in two groups is a 409 with the message, delete', async () => {
    for (const b of ['sdk-g1', 'sdk-g2', 'sdk-g3']) await ca.createBucket(b, {}, { existOk: true });
    await ca.groups.create('sdk-grp', { buckets: ['sdk-g1', 'sdk-g2'] });
    assert.deepEqual(await ca.groups.get('sdk-grp'), {
      name: 'sdk-grp',
      buckets: ['sdk-g1', 'sdk-g2'],
      is_provisioned: false,
    });
    assert.ok((await ca.groups.list()).some((g) => g.name === 'sdk-grp'));
    const e = await ferryError(() => ca.groups.create('sdk-grp2', { buckets: ['sdk-g2'] }));
    assert.equal(e.status, 409);
    assert.match(e.message, /sdk-grp/);
    await ca.groups.replace('sdk-grp', { buckets: ['sdk-g1', 'sdk-g2', 'sdk-g3'] });
    assert.deepEqual((await ca.groups.get('sdk-grp')).buckets, ['sdk-g1', 'sdk-g2', 'sdk-g3']);
    await ca.groups.delete('sdk-grp');
    assert.equal((await ferryError(() => ca.groups.get('sdk-grp'))).status, 404);
  });

  test('filters: create, get, list with used_by, replace bumps the version, delete refused while used', async () => {
    await ca.createBucket('sdk-filt', {}, { existOk: true });
    await ca.filters.create('sdk-min', {
      when: { '&score': { $gte: { $param: 'min' } } },
      params: { min: { type: 'number', default: 0.5 } },
      description: 'at least min',
    });
    const f = await ca.filters.get('sdk-min');
    assert.equal(f.version, 1);
    assert.deepEqual(f.params.min, { type: 'number', default: 0.5 });
    await ca.replications.create('sdk-filt', {
      src_bucket: 'sdk-filt',
      dst_bucket: 'sdk-filt-copy',
      dst_host: '',
      filter: 'sdk-min',
      query_params: { min: 0.8 },
    });
    assert.deepEqual((await ca.filters.list()).find((x) => x.name === 'sdk-min')?.used_by, ['sdk-filt']);
    await ca.filters.replace('sdk-min', { when: { '&score': { $gt: { $param: 'min' } } } });
    assert.equal((await ca.filters.get('sdk-min')).version, 2);
    const busy = await ferryError(() => ca.filters.delete('sdk-min'));
    assert.equal(busy.status, 409);
    await ca.replications.delete('sdk-filt');
    await ca.filters.delete('sdk-min');
    assert.equal((await ferryError(() => ca.filters.get('sdk-min'))).status, 404);
  });

  test('follow() over the real events stream: a snapshot on connect, then the pause as a state event', async () => {
    await ca.createBucket('sdk-follow', {}, { existOk: true });
    await ca.replications.create('sdk-follow', {
      src_bucket: 'sdk-follow',
      dst_bucket: 'sdk-follow-copy',
      dst_host: b.url,
      dst_token: b.token,
    });
    const ac = new AbortController();
    const seen: string[] = [];
    for await (const ev of ca.replications.follow('sdk-follow', { signal: ac.signal, intervalMs: 100 })) {
      if (ev.type === 'status') {
        seen.push(`status:${ev.status.state}`);
        if (seen.length === 1) {
          assert.equal(ev.status.name, 'sdk-follow');
          await ca.replications.setMode('sdk-follow', 'paused');
        }
      } else {
        seen.push(`state:${ev.state.to}`);
        if (ev.state.to === 'paused') ac.abort();
      }
    }
    assert.ok(seen.includes('state:paused'), seen.join(' '));
    const e = await ferryError(async () => {
      for await (const _ of ca.replications.follow('no-such-replication')) void _;
    });
    assert.equal(e.status, 404);
    await ca.replications.delete('sdk-follow');
  });
});
