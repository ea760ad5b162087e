/**
 * A consistency group's destination under SIGKILL (replication.md §8): large shipments across
 * three member buckets are sent to a spawned Ferry through `POST /api/v1/ferry/groups/apply` while
 * a reader polls the members through the compatible API and checks the prefix property (never a
 * later record without every earlier one, by a global sequence label) on every poll. The server
 * is killed mid-shipment several times: after each restart exactly the shipments up to its
 * applied position are visible (never part of one), the sender resumes from that position
 * (re-sending the interrupted shipment), and at the end every record is there once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'reduct-js';
import { RemoteGroupTarget } from '../src/replication/group-target.js';
import { call } from './helpers/ferry-api.js';
import { spawnFerry } from './helpers/ferry-process.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { planShipments, prefixViolation } from './helpers/shipment-workload.js';

const BUCKETS = ['cam', 'lidar', 'pose'];
const KEY = 'crash-source:group';
const KILLS = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  'SIGKILL during large multi-bucket shipments never leaves part of one visible',
  { timeout: 480_000 },
  async () => {
    const random = seededRandom('group-apply-crash');
    const plan = planShipments(random, {
      key: KEY,
      buckets: BUCKETS,
      count: 12,
      maxItems: 400,
      maxPayload: 4096,
    });
    const positions = new Set([0n, ...plan.shipments.map((s) => s.position)]);
    const total = Number(plan.shipments.at(-1)!.position);
    // generous: restarts under a loaded machine can take long (the replay itself is small)
    const ferry = await spawnFerry({ startTimeoutMs: 90_000 });
    const node = { url: ferry.url, token: ferry.token };
    const target = new RemoteGroupTarget({
      url: new URL(ferry.url),
      token: ferry.token,
      timeoutMs: 20_000,
      verifyTls: true,
    });
    const client = () => new Client(ferry.url, { apiToken: ferry.token });
    try {
      for (const b of BUCKETS) assert.equal((await call(node, 'POST', `/b/${b}`)).status, 200);

      const readMember = async (c: Client, bucket: string): Promise<number[]> => {
        const out: number[] = [];
        const b = await c.getBucket(bucket);
        for await (const r of b.query('e', undefined, undefined, { head: true }))
          out.push(Number(r.labels['seq']));
        return out;
      };
      const readAll = async (): Promise<number[]> => {
        const c = client();
        const out: number[] = [];
        for (const b of BUCKETS) {
          try {
            out.push(...(await readMember(c, b)));
          } catch (e) {
            if (!/not found|404/i.test(String((e as Error).message))) throw e; // no entry yet
          }
        }
        return out.sort((a, b) => a - b);
      };

      let done = false;
      let polls = 0;
      let violation: string | null = null;
      const reader = (async () => {
        while (!done && violation === null) {
          const c = client();
          const order = [...BUCKETS].sort(() => random() - 0.5);
          const reads: Array<{ bucket: string; seqs: number[] }> = [];
          try {
            for (const b of order) reads.push({ bucket: b, seqs: await readMember(c, b) });
            violation = prefixViolation(reads, plan.bucketOf);
            polls++;
          } catch {
            await sleep(20); // the server is down, or an entry does not exist yet
          }
        }
      })();

      // kills are scheduled by shipment index, each a seeded few ms into sending that shipment
      const killAt = new Map<number, number>();
      while (killAt.size < KILLS)
        killAt.set(2 + Math.floor(random() * (plan.shipments.length - 4)), 2 + Math.floor(random() * 40));
      let i = 0;
      let interrupted = 0;
      const checks: string[] = [];
      while (i < plan.shipments.length) {
        const delay = killAt.get(i);
        killAt.delete(i);
        const sending = target.apply(plan.shipments[i]!).then(
          () => true,
          () => false,
        );
        if (delay === undefined) {
          assert.ok(await sending, `shipment ${i} failed without a kill`);
          i++;
          continue;
        }
        await sleep(delay);
        await ferry.kill('SIGKILL');
        if (!(await sending)) interrupted++;
        await ferry.restart();
        const position = await target.position(KEY);
        assert.ok(positions.has(position), `applied position ${position} is not a shipment boundary`);
        // exactly the shipments up to the position: none partially
        const seen = await readAll();
        assert.deepEqual(
          seen,
          Array.from({ length: Number(position) }, (_, k) => k + 1),
          `after kill at shipment ${i} (${REPLAY})`,
        );
        checks.push(`shipment ${i}: position ${position}`);
        i = plan.shipments.findIndex((s) => s.from === position);
        assert.ok(i >= 0);
      }
      done = true;
      await reader;
      assert.equal(violation, null, `${violation} (${REPLAY})`);
      assert.ok(polls > 0);
      assert.equal(await target.position(KEY), BigInt(total));
      assert.deepEqual(
        await readAll(),
        Array.from({ length: total }, (_, k) => k + 1),
      );
      // re-sending the whole stream now changes nothing
      for (const s of plan.shipments.slice(-3)) assert.equal((await target.apply(s)).applied, false);
      console.log(
        `kills: ${checks.join('; ')}; ${interrupted} with a shipment in flight; ${polls} polls; ${total} records`,
      );
    } finally {
      await target.close();
      await ferry.destroy();
    }
  },
);
