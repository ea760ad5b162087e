/**
 * A batch write under SIGKILL of the server (issue 12 item 3, at the source itself): a spawned Ferry
 * is killed while a multi-entry batch (small records and ones of a few hundred KiB) is half-way
 * through its body, several times; after each restart none of that batch is visible, and every
 * batch answered before is there whole. Reuses the kill/restart of `spawnFerry`, as the group
 * shipment crash test does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'reduct-js';
import { postInTwo, v2WriteHeaders, type UploadRecord } from './helpers/batch-upload.js';
import { call } from './helpers/ferry-api.js';
import { spawnFerry } from './helpers/ferry-process.js';
import { REPLAY, seededBytes, seededRandom } from './helpers/seed.js';

const ENTRIES = ['a', 'b', 'c'];
const ROUNDS = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  'SIGKILL during a streaming batch upload never leaves part of the batch visible',
  { timeout: 180_000 },
  async () => {
    const random = seededRandom('batch-crash');
    const ferry = await spawnFerry({ startTimeoutMs: 90_000 });
    let ts = 1_000n;
    /** A batch of 6–10 records over the entries, about 40% of 64–300 KiB, labelled with its id. */
    const plan = (id: number): UploadRecord[] => {
      const n = 6 + Math.floor(random() * 5);
      const records: UploadRecord[] = [];
      for (let k = 0; k < n; k++) {
        const size =
          random() < 0.4 ? 64 * 1024 + Math.floor(random() * 236 * 1024) : Math.floor(random() * 2048);
        records.push({
          entry: ENTRIES[k % ENTRIES.length]!,
          ts: ts++,
          payload: seededBytes(random, size),
          labels: { batch: String(id) },
        });
      }
      return records.sort((x, y) => x.entry.localeCompare(y.entry) || (x.ts < y.ts ? -1 : 1));
    };
    const counts = async (): Promise<Map<number, number>> => {
      const out = new Map<number, number>();
      const bucket = await new Client(ferry.url, { apiToken: ferry.token }).getBucket('b');
      for (const e of ENTRIES) {
        try {
          for await (const r of bucket.query(e, undefined, undefined, { head: true })) {
            const id = Number(r.labels['batch']);
            out.set(id, (out.get(id) ?? 0) + 1);
          }
        } catch (err) {
          if (!/not found|404/i.test(String((err as Error).message))) throw err; // no entry yet
        }
      }
      return out;
    };
    try {
      assert.equal((await call(ferry, 'POST', '/b/b')).status, 200);
      const whole = new Map<number, number>();
      for (let round = 1; round <= ROUNDS; round++) {
        // a batch answered before the kill is durable and whole
        const done = plan(round * 2 - 1);
        const doneBody = Buffer.concat(done.map((r) => r.payload));
        const url = `${ferry.url}/api/v1/io/b/write`;
        assert.equal(
          await postInTwo(url, v2WriteHeaders(ferry.token, done), doneBody, 0, async () => {}),
          200,
        );
        whole.set(round * 2 - 1, done.length);
        // the next one is killed a seeded 40–90% into its body
        const cut = plan(round * 2);
        const body = Buffer.concat(cut.map((r) => r.payload));
        const at = Math.floor(body.length * (0.4 + random() * 0.5));
        const status = await postInTwo(url, v2WriteHeaders(ferry.token, cut), body, at, async () => {
          await sleep(300); // the server has taken in what it got of the body
          await ferry.kill('SIGKILL');
        });
        assert.equal(status, -1);
        await ferry.restart();
        const seen = await counts();
        assert.equal(
          seen.get(round * 2) ?? 0,
          0,
          `round ${round}: part of the killed batch is visible (${REPLAY})`,
        );
        for (const [id, n] of whole) assert.equal(seen.get(id), n, `round ${round}: batch ${id} (${REPLAY})`);
      }
    } finally {
      await ferry.destroy();
    }
  },
);
