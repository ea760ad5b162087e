/**
 * Crash safety of the store with real processes: a write answered 200 survives SIGKILL at any
 * instant; after the unclean stop nothing half-written is served and accounting matches the data.
 * Every random choice (kill points, the writers' requests and payloads) comes from the run's test seed
 * (`helpers/seed.ts`); failures name it, and FERRY_TEST_SEED=<seed> replays the choices. A kill comes
 * after a drawn number of acknowledged records, not after a drawn time: how much a round proves must
 * not depend on how fast a loaded machine happens to be.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Client } from 'reduct-js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { runWriters, WriteLedger, type AttemptedRecord } from './helpers/crash-workload.js';
import { verifyRecovered } from './helpers/crash-verify.js';
import { REPLAY, seededBytes, seededRandom } from './helpers/seed.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A Ferry process on a data dir inside a fresh temp parent; both go away after the file. */
async function startServer(prefix: string): Promise<FerryProcess> {
  const parent = mkdtempSync(join(tmpdir(), prefix));
  // Cleanups run in reverse: the process is killed before its directory goes.
  cleanups.push(async () => rmSync(parent, { recursive: true, force: true }));
  const ferry = await spawnFerry({
    dataPath: join(parent, 'data'),
    env: { RS_SYSTEM_EVENTS_ENABLED: 'false' },
  });
  cleanups.push(() => ferry.kill('SIGKILL'));
  return ferry;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function failure(what: string, problems: string[], ferry: FerryProcess): string {
  const shown = problems.slice(0, 20).join('\n  ');
  return `${what} (${REPLAY}): ${problems.length} problem(s)\n  ${shown}\n--- server output (tail) ---\n${ferry
    .output()
    .slice(-4000)}`;
}

const ROUNDS = 6;
const WRITERS = 8;
/** Each round is killed after this many acknowledged records, plus a drawn share of KILL_SPREAD. */
const KILL_AFTER = 20;
const KILL_SPREAD = 100;
/** A round that cannot reach its kill point in this time means the server stopped acknowledging. */
const ROUND_LIMIT_MS = 60_000;

test(`acknowledged writes survive ${ROUNDS} SIGKILLs at random moments`, { timeout: 150_000 }, async (t) => {
  const random = seededRandom('crash-store/kills');
  const ferry = await startServer('ferry-crash-');
  const bucket = 'crash';
  await new Client(ferry.url, { apiToken: ferry.token }).createBucket(bucket);

  const ledger = new WriteLedger();
  let clock = BigInt(Date.now()) * 1000n;
  const nextTs = (n: number): bigint => {
    const ts = clock;
    clock += BigInt(n);
    return ts;
  };
  const started = Date.now();
  let singleReads = 0;
  let checkedAcked = 0;
  let lastInfo: unknown;
  let lastServed = 0;
  const everyPathAcked = (): boolean => Object.values(ledger.stats).every((s) => s.acked > 0);

  for (let round = 0; round < ROUNDS; round++) {
    let stop = false;
    let acked = 0;
    const killAfter = KILL_AFTER + Math.floor(random() * KILL_SPREAD);
    let reached!: () => void;
    const killPoint = new Promise<void>((resolve) => (reached = resolve));
    const load = runWriters({
      url: ferry.url,
      token: ferry.token,
      bucket,
      writers: WRITERS,
      ledger,
      round,
      seedName: `crash-store/round-${round}`,
      nextTs,
      stopped: () => stop,
      // Killed from the acknowledgement itself: the other writers' requests are in flight.
      onAck: () => {
        if (++acked >= killAfter && everyPathAcked()) reached();
      },
    });
    const limit = setTimeout(reached, ROUND_LIMIT_MS);
    await killPoint;
    clearTimeout(limit);
    stop = true; // no new requests; the ones in flight are cut by the kill
    await ferry.kill('SIGKILL');
    await load;
    assert.ok(
      acked >= killAfter,
      `round ${round}: only ${acked} of ${killAfter} records acknowledged in ${ROUND_LIMIT_MS} ms (${REPLAY})\n` +
        ferry.output().slice(-4000),
    );
    if (round % 2 === 1) {
      // Crash again while the server recovers from the first crash: recovery must be restartable.
      const recovering = ferry.restart().then(
        () => 'ready',
        () => 'killed',
      );
      await sleep(40 + Math.floor(random() * 210));
      await ferry.kill('SIGKILL');
      t.diagnostic(`round ${round}: second SIGKILL during recovery (server was ${await recovering})`);
    }
    await ferry.restart();

    // Every record of this round (acked or not) is read singly; earlier rounds by a sample.
    const report = await verifyRecovered(ferry.url, ferry.token, bucket, ledger, {
      singleRead: (r: AttemptedRecord) => r.round === round || random() < 0.03,
    });
    assert.deepEqual(report.problems, [], failure(`round ${round}`, report.problems, ferry));
    const thisRound = [...ledger.records.values()].filter((r) => r.round === round);
    t.diagnostic(
      `round ${round}: ${thisRound.length} attempted, ${thisRound.filter((r) => r.acked).length} acked ` +
        `(killed after ${killAfter}), ` +
        `${report.served} served in total, ${report.unackedPresent} unacked present, ${report.singleReads} single reads`,
    );
    singleReads += report.singleReads;
    checkedAcked += report.ackedChecked;
    lastInfo = report.bucketInfo;
    lastServed = report.served;
  }

  const acked = ledger.acked().length;
  assert.ok(acked > ROUNDS * 20, `the load acknowledged only ${acked} records; the test proves little`);
  for (const path of ['single', 'v1', 'v2'] as const) {
    assert.ok(ledger.stats[path].acked > 0, `no ${path} write was acknowledged`);
  }

  // A clean restart after recovery changes nothing: recovery left a consistent state behind.
  await ferry.restart();
  const final = await verifyRecovered(ferry.url, ferry.token, bucket, ledger, { singleRead: () => false });
  assert.deepEqual(final.problems, [], failure('after a clean restart', final.problems, ferry));
  assert.equal(final.served, lastServed);
  assert.deepEqual(final.bucketInfo, lastInfo);

  t.diagnostic(
    `${ROUNDS} kill rounds in ${Date.now() - started} ms: ${ledger.records.size} writes attempted, ${acked} acked ` +
      `(single ${ledger.stats.single.acked}, v1 ${ledger.stats.v1.acked}, v2 ${ledger.stats.v2.acked}), ` +
      `${checkedAcked} acked-record checks by query, ${singleReads} single reads`,
  );
});

/** Streams `total` bytes of `payload` pattern as a chunked body, paced, until the socket dies. */
function slowUpload(
  url: string,
  token: string,
  path: string,
  total: number,
  chunk: Buffer,
  onProgress: (sent: number) => void,
): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/octet-stream',
        'x-reduct-content-length': String(total),
        'x-reduct-label-kind': 'big',
        'transfer-encoding': 'chunked',
      },
    });
    let sent = 0;
    let done = false;
    const finish = (status: number): void => {
      if (done) return;
      done = true;
      resolve(status);
    };
    req.on('response', (res) => {
      res.resume();
      finish(res.statusCode ?? 0);
    });
    req.on('error', () => finish(-1));
    const pump = (): void => {
      if (done) return;
      if (sent >= total) {
        req.end();
        return;
      }
      const n = Math.min(chunk.length, total - sent);
      req.write(chunk.subarray(0, n));
      sent += n;
      onProgress(sent);
      setTimeout(pump, 4);
    };
    pump();
  });
}

test(
  'SIGKILL during a 50 MiB streaming upload never serves the partial record',
  { timeout: 90_000 },
  async (t) => {
    const random = seededRandom('crash-store/upload');
    const ferry = await startServer('ferry-crash-big-');
    const client = new Client(ferry.url, { apiToken: ferry.token });
    const bucket = await client.createBucket('big');
    const auth = { authorization: `Bearer ${ferry.token}` };

    const total = 50 * 1024 * 1024;
    const chunk = seededBytes(random, 256 * 1024);
    const bigTs = 1_000_000_000n;
    // Small records before and, while the upload runs, after the big one in the same entry: the torn
    // record sits in the middle of the entry's data.
    const acked: Array<{ ts: bigint; body: Buffer }> = [];
    for (let i = 0; i < 5; i++) {
      const body = seededBytes(random, 100 + i);
      await (await bucket.beginWrite('e', { ts: bigTs - 10n + BigInt(i) })).write(body);
      acked.push({ ts: bigTs - 10n + BigInt(i), body });
    }
    let stop = false;
    const smallRandom = seededRandom('crash-store/upload-small');
    const smallWriter = (async () => {
      for (let i = 1; !stop; i++) {
        const body = seededBytes(smallRandom, 1000 + i);
        try {
          await (await bucket.beginWrite('e', { ts: bigTs + BigInt(i) })).write(body);
          acked.push({ ts: bigTs + BigInt(i), body });
        } catch {
          return;
        }
        await sleep(10);
      }
    })();

    const killAt = Math.floor((0.15 + random() * 0.6) * total);
    let killing: Promise<void> | undefined;
    const status = await slowUpload(
      ferry.url,
      ferry.token,
      `/api/v1/b/big/e?ts=${bigTs}`,
      total,
      chunk,
      (sent) => {
        if (killing === undefined && sent >= killAt) {
          stop = true;
          killing = ferry.kill('SIGKILL');
        }
      },
    );
    await killing;
    await smallWriter;
    assert.notEqual(status, 200, 'the upload cannot have completed');
    t.diagnostic(`killed after ${killAt} of ${total} bytes; ${acked.length} small records acked`);
    await ferry.restart();

    const single = await request(`${ferry.url}/api/v1/b/big/e?ts=${bigTs}`, {
      method: 'HEAD',
      headers: auth,
    });
    assert.equal(
      single.statusCode,
      404,
      `torn record answers ${single.statusCode}: ${String(single.headers['x-reduct-error'])}`,
    );
    const rows: Array<{ ts: bigint; size: number; sha: string }> = [];
    for await (const r of bucket.query('e')) {
      const data = await r.read();
      rows.push({ ts: r.time, size: data.length, sha: createHash('sha256').update(data).digest('hex') });
    }
    assert.ok(!rows.some((r) => r.ts === bigTs), 'the query serves the torn record');
    const want = acked
      .map((a) => ({ ts: a.ts, size: a.body.length, sha: createHash('sha256').update(a.body).digest('hex') }))
      .sort((a, b) => (a.ts < b.ts ? -1 : 1));
    // Unacked small writes cut by the kill may exist; acked ones must, intact.
    const served = new Map(rows.map((r) => [r.ts, r]));
    for (const w of want) assert.deepEqual(served.get(w.ts), w, `acked small record ${w.ts}`);
    const info = await client.getBucket('big').then((b) => b.getEntryList());
    assert.equal(Number(info.find((e) => e.name === 'e')?.recordCount), rows.length);

    // A client retrying the whole upload after the crash succeeds and reads back exactly what it sent.
    const full = Buffer.alloc(total);
    for (let at = 0; at < total; at += chunk.length) chunk.copy(full, at);
    const retry = await request(`${ferry.url}/api/v1/b/big/e?ts=${bigTs}`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream', 'x-reduct-label-kind': 'big' },
      body: full,
    });
    const retryError = String(retry.headers['x-reduct-error']);
    await retry.body.dump();
    assert.equal(retry.statusCode, 200, `retry after crash: ${retryError}`);
    const back = await request(`${ferry.url}/api/v1/b/big/e?ts=${bigTs}`, { headers: auth });
    const hash = createHash('sha256');
    for await (const c of back.body) hash.update(c as Buffer);
    assert.equal(hash.digest('hex'), createHash('sha256').update(full).digest('hex'));
    assert.equal(back.headers['x-reduct-label-kind'], 'big');
  },
);
