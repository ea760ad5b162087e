/**
 * Lifecycle `delete` jobs in real server processes: a run killed with SIGKILL resumes after the
 * restart and finishes without damage; records a replication has not shipped yet are kept until
 * it has, lifecycle removals are not replicated, and every run writes a `$system` event.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call, createReplication, waitCaughtUp } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';

const procs: FerryProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.destroy()));
});

const DAY_US = 86_400_000_000;
const OLD_START = Date.now() * 1000 - 30 * DAY_US;

/** Writes `count` 64-byte records to `entry` with v1 batches, one every `stepUs` from `startUs`. */
async function writeRecords(
  node: FerryProcess,
  bucket: string,
  entry: string,
  count: number,
  startUs: number,
  stepUs: number,
): Promise<void> {
  for (let i = 0; i < count; i += 1000) {
    const headers: Record<string, string> = {
      authorization: `Bearer ${node.token}`,
      'content-type': 'application/octet-stream',
    };
    const n = Math.min(1000, count - i);
    for (let j = 0; j < n; j++) headers[`x-reduct-time-${startUs + (i + j) * stepUs}`] = '64,text/plain';
    const res = await fetch(`${node.url}/api/v1/b/${bucket}/${entry}/batch`, {
      method: 'POST',
      headers,
      body: Buffer.alloc(64 * n, 'r'),
    });
    await res.text();
    assert.equal(res.status, 200, res.headers.get('x-reduct-error') ?? '');
  }
}

async function recordCount(node: FerryProcess, bucket: string, entry: string): Promise<number> {
  const info = (await api(node, 'GET', `/b/${bucket}`)) as {
    entries: Array<{ name: string; record_count: number }>;
  };
  return Number(info.entries.find((e) => e.name === entry)?.record_count ?? 0);
}

/** Records of an entry as the query API returns them (count and every timestamp). */
async function scanCount(node: FerryProcess, bucket: string, entry: string): Promise<number> {
  const q = (await api(node, 'POST', `/b/${bucket}/${entry}/q`, {
    query_type: 'QUERY',
    only_metadata: true,
  })) as { id: number };
  let n = 0;
  for (;;) {
    const res = await fetch(`${node.url}/api/v1/b/${bucket}/${entry}/batch?q=${q.id}`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${node.token}` },
    });
    if (res.status === 204) return n;
    assert.equal(res.status, 200, res.headers.get('x-reduct-error') ?? '');
    for (const k of res.headers.keys()) if (k.startsWith('x-reduct-time-')) n++;
    if (res.headers.get('x-reduct-last') === 'true') return n;
  }
}

interface StateFile {
  window: { removed: number } | null;
  last_result: { status: string; resumed: boolean; processed_records: number } | null;
}

async function readState(node: FerryProcess, name: string): Promise<StateFile | undefined> {
  try {
    return JSON.parse(
      await readFile(join(node.dataPath, '.ferry', 'lifecycles', `${name}.json`), 'utf8'),
    ) as StateFile;
  } catch {
    return undefined;
  }
}

test('a delete run killed with SIGKILL resumes after the restart and leaves consistent data', async () => {
  const node = await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
  procs.push(node);
  // small blocks: the run drops many whole blocks in several steps, and is killed between them
  await api(node, 'POST', '/b/data', { max_block_records: 16 });
  const OLD = 15_000;
  await writeRecords(node, 'data', 'cam-a', OLD, OLD_START, 10_000_000);
  await writeRecords(node, 'data', 'cam-b', OLD, OLD_START, 10_000_000);
  const recentStart = Date.now() * 1000 - 3_600_000_000;
  await writeRecords(node, 'data', 'cam-a', 500, recentStart, 1_000);

  await api(node, 'POST', '/lifecycles/p', {
    type: 'delete',
    bucket: 'data',
    older_than: '1d',
    interval: '1h',
  });
  void call(node, 'POST', '/lifecycles/p/run').catch(() => undefined); // dies with the server
  await waitFor(async () => ((await readState(node, 'p'))?.window?.removed ?? 0) > 0, {
    timeoutMs: 60_000,
    intervalMs: 5,
    message: 'the run to remove its first batch',
  });
  await node.kill('SIGKILL');
  const atKill = await readState(node, 'p');
  assert.ok(atKill?.window !== null, 'the window of the interrupted run is persisted');

  await node.restart();
  const result = await waitFor(
    async () => {
      const info = (await api(node, 'GET', '/lifecycles/p')) as {
        info: { last_result: StateFile['last_result'] };
      };
      const r = info.info.last_result;
      return r && r.status === 'ok' ? r : false;
    },
    { timeoutMs: 120_000, intervalMs: 100, message: 'the resumed run to finish' },
  );
  assert.equal(result.resumed, true, 'the run after the restart continues the interrupted window');
  assert.equal(await recordCount(node, 'data', 'cam-a'), 500);
  assert.equal(await recordCount(node, 'data', 'cam-b'), 0);
  assert.equal(await scanCount(node, 'data', 'cam-a'), 500, 'the index agrees with what a query returns');
  const latest = await call(node, 'GET', '/b/data/cam-a');
  assert.equal(latest.status, 200);
  assert.equal(latest.body.length, 64);

  // another restart: nothing is replayed wrongly, the counts stay
  await node.restart();
  assert.equal(await recordCount(node, 'data', 'cam-a'), 500);
  assert.equal(await scanCount(node, 'data', 'cam-b'), 0);
  // no block file is left behind by the blocks dropped whole, none is missing
  for (const [entry, blocks] of [
    ['cam-a', await blockCount(node, 'data', 'cam-a')],
    ['cam-b', 0],
  ] as const) {
    const files = await readdir(join(node.dataPath, 'buckets', 'data', entry));
    assert.equal(files.filter((f) => f.endsWith('.blk')).length, blocks, `${entry}: ${files.join(' ')}`);
  }
});

async function blockCount(node: FerryProcess, bucket: string, entry: string): Promise<number> {
  const info = (await api(node, 'GET', `/b/${bucket}`)) as {
    entries: Array<{ name: string; block_count: number }>;
  };
  return Number(info.entries.find((e) => e.name === entry)?.block_count ?? 0);
}

test('unshipped records are kept until the replication delivered them; removals are not replicated', async () => {
  const dstPort = await freePort();
  const src = await spawnFerry();
  procs.push(src);
  const dstUrl = `http://127.0.0.1:${dstPort}`;
  await createReplication(
    src,
    { url: dstUrl, token: 'dst-token' },
    { name: 'r', srcBucket: 'data', dstBucket: 'copy' },
  );
  await writeRecords(src, 'data', 'cam-a', 300, OLD_START, 1_000_000);

  await api(src, 'POST', '/lifecycles/p', {
    type: 'delete',
    bucket: 'data',
    older_than: '1d',
    interval: '1h',
  });
  const first = (await api(src, 'POST', '/lifecycles/p/run')) as {
    processed_records: number;
    protected_records: number;
  };
  assert.equal(first.processed_records, 0);
  assert.equal(first.protected_records, 300, 'the destination is down: every record is still to ship');
  assert.equal(await recordCount(src, 'data', 'cam-a'), 300);

  const dst = await spawnFerry({ port: dstPort, token: 'dst-token' });
  procs.push(dst);
  await waitCaughtUp(src, 'r');
  // the persisted cursor of the slot may lag a moment behind the delivery
  const second = await waitFor(
    async () => {
      const r = (await api(src, 'POST', '/lifecycles/p/run')) as { processed_records: number };
      return r.processed_records > 0 || (await recordCount(src, 'data', 'cam-a')) === 0 ? r : false;
    },
    { timeoutMs: 30_000, intervalMs: 200, message: 'the shipped records to be removed' },
  );
  assert.ok(second.processed_records > 0);
  assert.equal(await recordCount(src, 'data', 'cam-a'), 0);
  assert.equal(await recordCount(dst, 'copy', 'cam-a'), 300, 'the lifecycle removals stay local');

  // the run is reported in $system
  const ev = await waitFor(
    async () => {
      const info = (await api(src, 'GET', '/b/$system')) as {
        entries: Array<{ name: string; record_count: number }>;
      };
      const e = info.entries.find((x) => x.name.startsWith('lifecycles/') && x.name.endsWith('/p'));
      return e && Number(e.record_count) >= 2 ? e : false;
    },
    { timeoutMs: 10_000, message: 'an event per lifecycle run in $system' },
  );
  const latest = await call(src, 'GET', `/b/$system/${ev.name}`);
  const payload = JSON.parse(latest.text) as Record<string, unknown>;
  assert.equal(payload['policy_name'], 'p');
  assert.equal(payload['action_type'], 'delete');
  assert.equal(typeof payload['processed_records'], 'number');
});
