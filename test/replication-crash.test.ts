/**
 * Crash safety of replication between two real Ferry processes (replication.md §1.1, §11): while a
 * client writes continuously to the source, the source or the destination is SIGKILLed at random
 * moments, restarted, and in the end both buckets are compared record by record (content digest,
 * labels, content type). Every acknowledged write must be on both sides; nothing extra, nothing
 * altered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { createReplication, waitCaughtUp } from './helpers/ferry-api.js';
import { assertSameSnapshots, snapshotBucket, type RecordDigest } from './helpers/records.js';
import { REPLAY, seededRandom } from './helpers/seed.js';

interface Acked extends RecordDigest {
  key: string;
}

/** A client that keeps writing to the source (single records and v1 batches) and remembers acks. */
class Writer {
  readonly acked = new Map<string, Acked>();
  attempted = 0;
  failures = 0;
  private stopped = false;
  private ts = 1_000_000n;
  private readonly pool: Pool;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly node: FerryProcess,
    /** Every choice of the writer (timestamps, sizes, labels, batch sizes), from the run's seed. */
    private readonly random: () => number,
  ) {
    this.pool = new Pool(node.url, {
      connections: 2,
      connect: { timeout: 2000 },
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  }

  start(): void {
    this.loops = [0, 1].map((w) => this.loop(w));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await this.pool.close();
  }

  private next(): bigint {
    this.ts += BigInt(1 + Math.floor(this.random() * 3));
    return this.ts;
  }

  private record(entry: string): { key: string; ts: bigint; payload: Buffer; digest: Acked } {
    const ts = this.next();
    const payload = randomBytes(64 + Math.floor(this.random() * 4000));
    const labels = { seq: String(ts), kind: this.random() < 0.5 ? 'a' : 'b' };
    const key = `${entry}@${ts}`;
    const digest: Acked = {
      key,
      size: payload.length,
      sha256: createHash('sha256').update(payload).digest('hex'),
      contentType: 'application/x-test',
      labels,
    };
    return { key, ts, payload, digest };
  }

  private async loop(worker: number): Promise<void> {
    let n = 0;
    while (!this.stopped) {
      const entry = `e${(n++ + worker) % 3}`;
      try {
        if (worker === 0) await this.single(entry);
        else await this.batch(entry, 2 + Math.floor(this.random() * 30));
      } catch {
        this.failures++;
        // the server is down: try again shortly
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private async single(entry: string): Promise<void> {
    const r = this.record(entry);
    this.attempted++;
    const res = await this.pool.request({
      method: 'POST',
      path: `/api/v1/b/src/${entry}?ts=${r.ts}`,
      headers: {
        authorization: `Bearer ${this.node.token}`,
        'content-type': r.digest.contentType,
        'x-reduct-label-seq': r.digest.labels.seq!,
        'x-reduct-label-kind': r.digest.labels.kind!,
      },
      body: r.payload,
    });
    await res.body.dump();
    if (res.statusCode === 200) this.acked.set(r.key, r.digest);
  }

  private async batch(entry: string, count: number): Promise<void> {
    const recs = Array.from({ length: count }, () => this.record(entry));
    this.attempted += count;
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.node.token}`,
      'content-type': 'application/octet-stream',
    };
    for (const r of recs) {
      headers[`x-reduct-time-${r.ts}`] =
        `${r.payload.length},${r.digest.contentType},kind=${r.digest.labels.kind},seq=${r.digest.labels.seq}`;
    }
    const res = await this.pool.request({
      method: 'POST',
      path: `/api/v1/b/src/${entry}/batch`,
      headers,
      body: Buffer.concat(recs.map((r) => r.payload)),
    });
    await res.body.dump();
    if (res.statusCode !== 200) return;
    for (const r of recs)
      if (res.headers[`x-reduct-error-${r.ts}`] === undefined) this.acked.set(r.key, r.digest);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// One source A replicates to a local destination (inside A) and to a remote one (B) at once; the
// rounds SIGKILL A and B in turn, so that both kinds see crashes of the source and the remote one of
// its destination, at the cost of one writer and one source.
test(
  'SIGKILL of source or destination during continuous writes loses, duplicates and alters nothing [local, remote]',
  {
    timeout: 170_000,
  },
  async () => {
    const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
    const [A, B] = await Promise.all([spawnFerry({ env }), spawnFerry({ env })]);
    const writer = new Writer(A, seededRandom('replication-crash/writer'));
    const schedule = seededRandom('replication-crash/kills');
    const settings = { batch: { max_records: 200, max_delay_ms: 5 }, retry: { initial_ms: 50, max_ms: 500 } };
    try {
      await createReplication(A, A, { name: 'local', dstBucket: 'dst-local', dstHost: '', settings });
      await createReplication(A, B, { name: 'remote', dstBucket: 'dst', createSrcBucket: false, settings });
      writer.start();
      // 8 rounds (4 kills of each side; seeded points differ from run to run): 12 cost a third more CPU
      const rounds = 8;
      for (let round = 0; round < rounds; round++) {
        await sleep(150 + schedule() * 500);
        const victim = round % 2 === 0 ? A : B;
        await victim.kill('SIGKILL');
        await sleep(schedule() * 300);
        await victim.restart();
      }
      await sleep(300);
      await writer.stop();
      assert.ok(writer.acked.size > 200, `only ${writer.acked.size} writes were acknowledged (${REPLAY})`);

      const finals = {
        local: await waitCaughtUp(A, 'local', 90_000),
        remote: await waitCaughtUp(A, 'remote', 90_000),
      };

      const [src, dstLocal, dstRemote] = await Promise.all([
        snapshotBucket(A.url, A.token, 'src'),
        snapshotBucket(A.url, A.token, 'dst-local'),
        snapshotBucket(B.url, B.token, 'dst'),
      ]);
      // every acknowledged write survived the source crashes, unchanged
      const lostAtSource: string[] = [];
      for (const [key, want] of writer.acked) {
        const got = src.get(key);
        if (
          !got ||
          got.sha256 !== want.sha256 ||
          got.size !== want.size ||
          got.contentType !== want.contentType
        ) {
          lostAtSource.push(key);
          continue;
        }
        assert.deepEqual(got.labels, want.labels, `labels of ${key}`);
      }
      assert.deepEqual(
        lostAtSource.slice(0, 5),
        [],
        `${lostAtSource.length} acknowledged records missing or altered at the source (${REPLAY})`,
      );
      // each destination holds exactly what the source holds
      for (const [kind, dst] of [
        ['local', dstLocal],
        ['remote', dstRemote],
      ] as const) {
        assertSameSnapshots(src, dst, `${kind} destination vs source (${REPLAY})`);
        assert.equal(dst.size, src.size, `${kind} destination size`);
        const final = finals[kind];
        console.log(
          `[${kind}] crash rounds: ${rounds}, attempted ${writer.attempted}, acknowledged ${writer.acked.size}, at source ${src.size}, ` +
            `failed requests ${writer.failures}, retries ${final.retries}, written ${final.counters.records_written}, ` +
            `already present ${final.counters.records_already_present}`,
        );
      }
    } finally {
      await writer.stop().catch(() => undefined);
      await Promise.all([A.destroy(), B.destroy()]);
    }
  },
);
