/**
 * Lifecycle `compress` jobs in real server processes: a run killed with SIGKILL (at seeded moments
 * while blocks are being compressed) leaves every record readable byte for byte, the resumed run
 * finishes the pass, and no temp file or half-written block is left; records a paused replication
 * still has to ship are shipped byte for byte from the compressed blocks (local and remote target).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call, createReplication, waitCaughtUp } from './helpers/ferry-api.js';
import { assertSameSnapshots, assertSameBuckets, snapshotBucket } from './helpers/records.js';
import { seededRandom, REPLAY } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';

const procs: FerryProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.destroy()));
});

const DAY_US = 86_400_000_000;
const OLD_START = Date.now() * 1000 - 30 * DAY_US;

/** `count` JSON telemetry records (`rows` × ~60 bytes each) in v1 batches of `perBatch`, one every second. */
async function writeTelemetry(
  node: FerryProcess,
  bucket: string,
  entry: string,
  count: number,
  rnd: () => number,
  rows = 20,
  perBatch = 500,
): Promise<void> {
  const stepUs = 1_000_000;
  for (let i = 0; i < count; i += perBatch) {
    const headers: Record<string, string> = { authorization: `Bearer ${node.token}` };
    const parts: Buffer[] = [];
    for (let j = i; j < Math.min(count, i + perBatch); j++) {
      const data = Array.from({ length: 1 + Math.floor(rnd() * rows) }, (_, k) => ({
        seq: j,
        k,
        temp: (20 + rnd() * 5).toFixed(3),
        state: rnd() < 0.9 ? 'ok' : 'warn',
      }));
      const p = Buffer.from(JSON.stringify(data));
      parts.push(p);
      headers[`x-reduct-time-${OLD_START + j * stepUs}`] = `${p.length},application/json,seq=${j}`;
    }
    const res = await fetch(`${node.url}/api/v1/b/${bucket}/${entry}/batch`, {
      method: 'POST',
      headers,
      body: Buffer.concat(parts),
    });
    await res.text();
    assert.equal(res.status, 200, res.headers.get('x-reduct-error') ?? '');
  }
}

async function blocksOf(node: FerryProcess, bucket: string, entry: string): Promise<number> {
  const info = (await api(node, 'GET', `/b/${bucket}`)) as {
    entries: Array<{ name: string; block_count: number }>;
  };
  return Number(info.entries.find((e) => e.name === entry)!.block_count);
}

async function entryFiles(node: FerryProcess, bucket: string, entry: string): Promise<string[]> {
  return readdir(join(node.dataPath, 'buckets', bucket, entry));
}

async function lastResult(node: FerryProcess, name: string): Promise<Record<string, unknown> | null> {
  const info = (await api(node, 'GET', `/lifecycles/${name}`)) as {
    info: { last_result: Record<string, unknown> | null };
  };
  return info.info.last_result;
}

test('a compress run killed with SIGKILL leaves every record whole; the resumed run finishes the pass', async () => {
  const rnd = seededRandom('lifecycle-compress-crash');
  const node = await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
  procs.push(node);
  await api(node, 'POST', '/b/data', { max_block_records: 100 });
  // ~40 MB in ~30 blocks: a run takes seconds, long enough to be killed in the middle.
  await writeTelemetry(node, 'data', 'robot', 3000, rnd, 400, 100);
  const blockCount = await blocksOf(node, 'data', 'robot');
  assert.ok(blockCount >= 20, `${blockCount} blocks`);
  const before = await snapshotBucket(node.url, node.token, 'data');
  const sizes = (await api(node, 'GET', '/b/data')) as unknown;
  await api(node, 'POST', '/lifecycles/zip', {
    type: 'compress',
    bucket: 'data',
    older_than: '1d',
    interval: '1h',
  });

  void call(node, 'POST', '/lifecycles/zip/run').catch(() => undefined); // dies with the server
  await waitFor(async () => (await entryFiles(node, 'data', 'robot')).some((f) => f.endsWith('.zst')), {
    timeoutMs: 60_000,
    intervalMs: 2,
    message: 'the run to compress a block',
  });
  const delays = [Math.floor(rnd() * 150), Math.floor(rnd() * 400)];
  await new Promise((r) => setTimeout(r, delays[0]));
  await node.kill('SIGKILL');
  const state = JSON.parse(
    await readFile(join(node.dataPath, '.ferry', 'lifecycles', 'zip.json'), 'utf8'),
  ) as {
    window: unknown;
  };
  assert.notEqual(state.window, null, 'killed in the middle of its window');
  const done = (await entryFiles(node, 'data', 'robot')).filter((f) => f.endsWith('.zst')).length;
  assert.ok(done < blockCount - 1, `killed before the last block (${done} of ${blockCount - 1} done)`);
  await node.restart();
  assertSameSnapshots(
    before,
    await snapshotBucket(node.url, node.token, 'data'),
    `after the first SIGKILL (${REPLAY})`,
  );
  assert.deepEqual(await api(node, 'GET', '/b/data'), sizes, 'sizes unchanged');
  // The restart resumes the interrupted window at once: kill that run too.
  await new Promise((r) => setTimeout(r, delays[1]));
  await node.kill('SIGKILL');
  await node.restart();
  assertSameSnapshots(
    before,
    await snapshotBucket(node.url, node.token, 'data'),
    `after the second SIGKILL (${REPLAY})`,
  );
  assert.deepEqual(await api(node, 'GET', '/b/data'), sizes, 'sizes unchanged');
  const result = await waitFor(
    async () => {
      const r = await lastResult(node, 'zip');
      return r?.['status'] === 'ok' ? r : false;
    },
    { timeoutMs: 120_000, intervalMs: 100, message: 'the resumed run to finish' },
  );
  assert.equal(result['resumed'], true);
  const files = await entryFiles(node, 'data', 'robot');
  assert.deepEqual(
    files.filter((f) => f.endsWith('.tmp')),
    [],
    'no temp file left',
  );
  assert.equal(
    files.filter((f) => f.endsWith('.blk.zst')).length,
    blockCount - 1,
    'every sealed block compressed',
  );
  assert.equal(files.filter((f) => /^\d+\.blk$/.test(f)).length, 1, 'only the newest block is plain');
  assertSameSnapshots(before, await snapshotBucket(node.url, node.token, 'data'), 'after the pass');
  assert.deepEqual(await api(node, 'GET', '/b/data'), sizes);
});

for (const kind of ['local', 'remote'] as const) {
  test(`records a paused replication still has to ship are shipped byte for byte after compression (${kind})`, async () => {
    const rnd = seededRandom(`lifecycle-compress-replication-${kind}`);
    const src = await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
    procs.push(src);
    const dst = kind === 'local' ? src : await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
    if (dst !== src) procs.push(dst);
    await createReplication(src, dst, {
      createSrcBucket: { max_block_records: 100 },
      ...(kind === 'local' ? { dstHost: '' } : {}),
      settings: { mode: 'paused', ...(kind === 'local' ? { dst_token: '' } : {}) },
    });
    if (kind === 'local') await api(src, 'POST', '/b/dst', {});
    await writeTelemetry(src, 'src', 'robot', 1500, rnd, 20, 100);
    await writeTelemetry(src, 'src', 'arm', 700, rnd, 20, 100);
    await api(src, 'POST', '/lifecycles/zip', { type: 'compress', bucket: 'src', older_than: '1d' });
    const run = (await api(src, 'POST', '/lifecycles/zip/run')) as Record<string, unknown>;
    assert.equal(
      run['status'],
      'ok',
      JSON.stringify(run, (_, v) => (typeof v === 'bigint' ? String(v) : v)),
    );
    const sealed = (await blocksOf(src, 'src', 'robot')) - 1 + (await blocksOf(src, 'src', 'arm')) - 1;
    assert.ok(sealed >= 2);
    assert.equal(run['compressed_blocks'], sealed, 'every sealed block of both entries');
    await api(src, 'PATCH', '/replications/r/mode', { mode: 'enabled' });
    await waitCaughtUp(src, 'r', 120_000);
    const { a } = await assertSameBuckets(src, 'src', dst, 'dst');
    assert.equal(a.size, 2200);
  });
}
