/**
 * Crash safety with many entries written at once (issue 10: a group commit then touches dozens of
 * block files): 48 writers, two entries each, are SIGKILLed after a drawn number of acknowledged
 * records; after each restart every acknowledged record is served byte for byte and nothing is
 * served that was not sent. Kill points and payloads come from the run's seed (`helpers/seed.ts`).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'reduct-js';
import { spawnFerry } from './helpers/ferry-process.js';
import { runWriters, WriteLedger } from './helpers/crash-workload.js';
import { verifyRecovered } from './helpers/crash-verify.js';
import { REPLAY, seededRandom } from './helpers/seed.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const ROUNDS = 2;
const WRITERS = 48;
/** Each round is killed after this many acknowledged records, plus a drawn share of KILL_SPREAD. */
const KILL_AFTER = 150;
const KILL_SPREAD = 250;
const ROUND_LIMIT_MS = 60_000;

test(
  `${WRITERS * 2} entries written at once: acknowledged records survive ${ROUNDS} SIGKILLs`,
  { timeout: 120_000 },
  async (t) => {
    const random = seededRandom('crash-many-entries/kills');
    const parent = mkdtempSync(join(tmpdir(), 'ferry-crash-many-'));
    cleanups.push(async () => rmSync(parent, { recursive: true, force: true }));
    const ferry = await spawnFerry({
      dataPath: join(parent, 'data'),
      env: { RS_SYSTEM_EVENTS_ENABLED: 'false' },
    });
    cleanups.push(() => ferry.kill('SIGKILL'));
    const bucket = 'many';
    await new Client(ferry.url, { apiToken: ferry.token }).createBucket(bucket);

    const ledger = new WriteLedger();
    let clock = BigInt(Date.now()) * 1000n;
    const nextTs = (n: number): bigint => {
      const ts = clock;
      clock += BigInt(n);
      return ts;
    };
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
        seedName: `crash-many-entries/round-${round}`,
        nextTs,
        stopped: () => stop,
        // killed from an acknowledgement: the other writers' requests are in flight
        onAck: () => {
          if (++acked >= killAfter) reached();
        },
      });
      const limit = setTimeout(reached, ROUND_LIMIT_MS);
      await killPoint;
      clearTimeout(limit);
      stop = true;
      await ferry.kill('SIGKILL');
      await load;
      assert.ok(acked >= killAfter, `round ${round}: only ${acked} of ${killAfter} acknowledged (${REPLAY})`);
      await ferry.restart();
      const report = await verifyRecovered(ferry.url, ferry.token, bucket, ledger, {
        singleRead: (r) => r.round === round && random() < 0.1,
      });
      assert.deepEqual(
        report.problems,
        [],
        `round ${round} (${REPLAY}):\n  ${report.problems.slice(0, 20).join('\n  ')}\n${ferry.output().slice(-3000)}`,
      );
      const entries = new Set([...ledger.records.values()].filter((r) => r.acked).map((r) => r.entry));
      t.diagnostic(
        `round ${round}: killed after ${acked} acks (target ${killAfter}), ${report.ackedChecked} acked checked, ` +
          `${entries.size} entries with acknowledged records, ${report.unackedPresent} unacked present`,
      );
    }
  },
);
