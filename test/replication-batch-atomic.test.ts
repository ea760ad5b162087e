/**
 * A multi-record batch write is all or nothing (issue 12 item 3): batches of several entries with
 * payloads of up to a few hundred KiB (streamed across many socket chunks), written over HTTP
 * (batch protocol v2) to the source of a consistency-group replication and of a plain one, to a
 * bucket of the same instance and to another Ferry. Some batches pause half-way through their body:
 * then neither the source nor, once the replications caught up, the destination shows any of their
 * records. A reader polls the destinations all the time and checks on every read that it never
 * sees part of a batch: in a group's members, every record of a batch or none (across members and
 * entries); for a plain replication, per entry (its entries are shipped as separate requests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postInTwo, v2WriteHeaders, type UploadRecord } from './helpers/batch-upload.js';
import { api, waitCaughtUp, type ApiNode } from './helpers/ferry-api.js';
import { TARGET_KINDS } from './helpers/replication-env.js';
import { REPLAY, seededBytes, seededRandom } from './helpers/seed.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import type { Storage } from '../src/storage/types.js';

const TOKEN = 'batch-token';
const MEMBERS = ['cam', 'lidar'];
const SOLO = 'solo';
const PREFIX = 'copy-';
const ENTRIES = ['a', 'b', 'c'];
const BATCHES = 10;

interface PlannedBatch {
  id: number;
  bucket: string;
  records: UploadRecord[];
  /** Pause half-way through the body and check that nothing of it is visible. */
  pause: boolean;
}

/** Seeded batches: 3–8 records over the entries, most small, some of 64–300 KiB; ts ascending. */
function planBatches(random: () => number): PlannedBatch[] {
  const out: PlannedBatch[] = [];
  let ts = 1_000_000n;
  for (let id = 1; id <= BATCHES; id++) {
    const bucket = [...MEMBERS, SOLO][Math.floor(random() * 3)]!;
    const n = 3 + Math.floor(random() * 6);
    const records: UploadRecord[] = [];
    for (let k = 0; k < n; k++) {
      const large = random() < 0.4;
      const size = large ? 64 * 1024 + Math.floor(random() * 236 * 1024) : Math.floor(random() * 4096);
      records.push({
        entry: ENTRIES[Math.floor(random() * ENTRIES.length)]!,
        ts: ts++,
        payload: seededBytes(random, size),
        labels: { batch: String(id) },
      });
    }
    // v2 body order: entry index first, then time
    records.sort((x, y) => x.entry.localeCompare(y.entry) || (x.ts < y.ts ? -1 : 1));
    out.push({ id, bucket, records, pause: id % 3 === 1 });
  }
  return out;
}

/** Batch ids of every record of `bucket/entry` (none when either does not exist). */
async function batchesOf(storage: Storage, bucket: string, entry: string): Promise<number[]> {
  if (!storage.hasBucket(bucket) || !storage.bucket(bucket).hasEntry(entry)) return [];
  const out: number[] = [];
  for await (const r of storage.bucket(bucket).scan(entry, 0n, 2n ** 63n))
    out.push(Number(r.meta.labels['batch']));
  return out;
}

/**
 * Checks reads of destination `bucket/entry`s against the plan. State only grows, so once a read
 * showed a record of batch b, every later read of a key in the same scope must show all of that
 * key's records of b. `scopeOf` maps a key to its scope: one for all members of a group, the key
 * itself for a plain replication. Returns the first violation, or null.
 */
class BatchChecker {
  private readonly expected = new Map<number, Map<string, number>>();
  private readonly known = new Map<string, Set<number>>();
  violation: string | null = null;
  reads = 0;

  constructor(
    plan: readonly PlannedBatch[],
    private readonly scopeOf: (key: string) => string,
  ) {
    for (const b of plan) {
      const per = new Map<string, number>();
      for (const r of b.records) {
        const key = `${PREFIX}${b.bucket}/${r.entry}`;
        per.set(key, (per.get(key) ?? 0) + 1);
      }
      this.expected.set(b.id, per);
    }
  }

  /** Checks one read of `key`; `whole`: every batch of the plan must be there (the end). */
  check(key: string, batches: readonly number[], whole = false): void {
    this.reads++;
    const scope = this.scopeOf(key);
    let known = this.known.get(scope);
    if (!known) this.known.set(scope, (known = new Set()));
    if (whole) for (const b of this.expected.keys()) known.add(b);
    const counts = new Map<number, number>();
    for (const b of batches) {
      counts.set(b, (counts.get(b) ?? 0) + 1);
      known.add(b);
    }
    for (const b of known) {
      const want = this.expected.get(b)?.get(key) ?? 0;
      const got = counts.get(b) ?? 0;
      if (got !== want && this.violation === null)
        this.violation = `${key} shows ${got} of the ${want} records of batch ${b} (after ${this.reads} reads)`;
    }
  }
}

for (const kind of TARGET_KINDS) {
  test(
    `a batch write reaches group and plain replications' destinations whole, never in part [${kind}]`,
    { timeout: 120_000 },
    async () => {
      const random = seededRandom(`batch-atomic-${kind}`);
      const plan = planBatches(random);
      let src: TestServer | undefined;
      let dst: TestServer | undefined;
      try {
        src = await startTestServer('batch-src', TOKEN);
        dst = kind === 'remote' ? await startTestServer('batch-dst', TOKEN) : undefined;
        const node: ApiNode = { url: src.ferry.url, token: TOKEN };
        const destination = dst ? { dst_host: dst.ferry.url, dst_token: TOKEN } : { dst_host: '' };
        const dstStorage = (dst ?? src).ferry.storage;
        for (const b of [...MEMBERS, SOLO]) await api(node, 'POST', `/b/${b}`, {});
        await api(node, 'POST', '/groups/robot', { buckets: MEMBERS });
        await api(node, 'POST', '/replications/g', {
          src_group: 'robot',
          dst_prefix: PREFIX,
          ...destination,
        });
        await api(node, 'POST', '/replications/p', {
          src_bucket: SOLO,
          dst_bucket: PREFIX + SOLO,
          ...destination,
        });
        const group = new BatchChecker(plan, (key) => (key.startsWith(PREFIX + SOLO) ? key : 'group'));

        let done = false;
        const reader = (async () => {
          while (!done && group.violation === null) {
            // every key in a seeded order, one after the other
            const keys = [...MEMBERS, SOLO].flatMap((b) => ENTRIES.map((e) => [PREFIX + b, e] as const));
            keys.sort(() => random() - 0.5);
            for (const [b, e] of keys) group.check(`${b}/${e}`, await batchesOf(dstStorage, b, e));
            await new Promise((r) => setImmediate(r));
          }
        })();

        const invisible = async (
          b: PlannedBatch,
          storage: Storage,
          bucket: string,
          where: string,
        ): Promise<void> => {
          for (const e of ENTRIES) {
            const seen = (await batchesOf(storage, bucket, e)).filter((id) => id === b.id).length;
            assert.equal(
              seen,
              0,
              `${where}: ${bucket}/${e} shows ${seen} records of batch ${b.id} half-way through its body (${REPLAY})`,
            );
          }
        };
        for (const b of plan) {
          const body = Buffer.concat(b.records.map((r) => r.payload));
          const status = await postInTwo(
            `${src.ferry.url}/api/v1/io/${b.bucket}/write`,
            v2WriteHeaders(TOKEN, b.records),
            body,
            Math.floor(body.length / 2),
            async () => {
              if (!b.pause) return;
              // what the server has of the first half is in by now; whatever it committed is shipped
              await new Promise((r) => setTimeout(r, 300));
              await waitCaughtUp(node, 'g');
              await waitCaughtUp(node, 'p');
              await invisible(b, dstStorage, PREFIX + b.bucket, 'destination');
              await invisible(b, src!.ferry.storage, b.bucket, 'source');
            },
          );
          assert.equal(status, 200, `batch ${b.id}`);
        }
        await waitCaughtUp(node, 'g');
        await waitCaughtUp(node, 'p');
        done = true;
        await reader;
        assert.equal(group.violation, null, `${group.violation} (${REPLAY})`);
        assert.ok(group.reads > 50, `the reader read ${group.reads} times`);
        // at the end every batch is there whole
        const final = new BatchChecker(plan, () => 'all');
        for (const b of [...MEMBERS, SOLO])
          for (const e of ENTRIES)
            final.check(`${PREFIX}${b}/${e}`, await batchesOf(dstStorage, PREFIX + b, e), true);
        assert.equal(final.violation, null, `${final.violation} (${REPLAY})`);
      } finally {
        await stopTestServer(dst);
        await stopTestServer(src);
      }
    },
  );
}
