/**
 * A consistency-group replication between server processes (issue 12 tests): a writer writes a
 * global sequence number into records over three member buckets (single writes and batches,
 * label updates between) while the source and the destination are SIGKILLed and restarted and the
 * link is cut (fault proxy); a reader polls the destination members all the time and checks on
 * EVERY read that it sees a prefix of the writes (never a later record without every earlier one)
 * and whole batches. No violation ever, and at the end both sides are equal, labels included.
 * Destination on the same instance (`local`, prefixed buckets) and another Ferry (`remote`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { api, call, replicationStatus } from './helpers/ferry-api.js';
import { assertSameBuckets, snapshotBucket } from './helpers/records.js';
import { TARGET_KINDS } from './helpers/replication-env.js';
import { GroupWriter, PrefixReader, type GroupSide, type SideRecord } from './helpers/group-workload.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';

const MEMBERS = ['cam', 'lidar', 'pose'];
const PREFIX = 'copy-';
const STEPS = 400;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Retries a write until it is answered (a server being killed and restarted in between). */
async function untilAnswered(what: string, attempt: () => Promise<number>): Promise<void> {
  for (let i = 0; ; i++) {
    let status: number;
    try {
      status = await attempt();
    } catch {
      status = -1; // killed meanwhile: the outcome is unknown, the write is repeated
    }
    // 409: an earlier attempt landed before the kill
    if (status === 200 || status === 409) return;
    if (status !== -1 && status < 500) throw new Error(`${what}: HTTP ${status}`);
    if (i > 600) throw new Error(`${what}: no answer`);
    await sleep(50);
  }
}

/** One side over HTTP (`node` read at each call: restarts keep its URL). */
function httpSide(node: FerryProcess): GroupSide {
  return {
    async write(bucket, entry, records) {
      const path = `/b/${bucket}/${entry}`;
      if (records.length === 1) {
        const r = records[0]!;
        await untilAnswered(`write ${bucket}/${entry}@${r.ts}`, async () => {
          const res = await call(node, 'POST', `${path}?ts=${r.ts}`, r.body, {
            headers: { 'content-type': r.contentType, 'x-reduct-label-seq': r.labels.seq! },
            timeoutMs: 10_000,
          });
          return res.status;
        });
        return;
      }
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      for (const r of records)
        headers[`x-reduct-time-${r.ts}`] = `${r.body.length},${r.contentType},seq=${r.labels.seq}`;
      await untilAnswered(`batch ${bucket}/${entry}`, async () => {
        const res = await call(node, 'POST', `${path}/batch`, Buffer.concat(records.map((r) => r.body)), {
          headers,
          timeoutMs: 10_000,
        });
        // a record of the batch that landed before a kill: 409 for it alone
        return res.status;
      });
    },
    async updateLabels(bucket, entry, ts, labels) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(labels)) headers[`x-reduct-label-${k}`] = v;
      await untilAnswered(`update ${bucket}/${entry}@${ts}`, async () => {
        const res = await call(node, 'PATCH', `/b/${bucket}/${entry}?ts=${ts}`, undefined, {
          headers,
          timeoutMs: 10_000,
        });
        return res.status;
      });
    },
    async read(bucket, entry) {
      const snap = await snapshotBucket(node.url, node.token, bucket, { entries: [entry] });
      const out: SideRecord[] = [];
      for (const [key, d] of snap) {
        out.push({
          ts: BigInt(key.slice(key.lastIndexOf('@') + 1)),
          labels: d.labels,
          contentType: d.contentType,
          body: Buffer.alloc(0),
        });
      }
      return out.sort((a, b) => (a.ts < b.ts ? -1 : 1));
    },
    entries: () => Promise.resolve([]),
  };
}

for (const kind of TARGET_KINDS) {
  test(
    `group replication: prefix on every poll while both sides are SIGKILLed and the link is cut; both sides end equal [${kind}]`,
    { timeout: 240_000 },
    async () => {
      const src = await spawnFerry({ startTimeoutMs: 60_000 });
      const dst = kind === 'remote' ? await spawnFerry({ startTimeoutMs: 60_000 }) : src;
      let proxy: FaultProxy | undefined;
      const marks: string[] = [];
      try {
        for (const b of MEMBERS) await api(src, 'POST', `/b/${b}`, {});
        await api(src, 'POST', '/groups/robot', { buckets: MEMBERS });
        proxy = kind === 'remote' ? await startFaultProxy({ host: '127.0.0.1', port: dst.port }) : undefined;
        await api(src, 'POST', '/replications/g', {
          src_group: 'robot',
          dst_prefix: PREFIX,
          dst_host: proxy ? `http://127.0.0.1:${proxy.port}` : '',
          ...(proxy ? { dst_token: dst.token } : {}),
          batch: { max_records: 8 },
          retry: { initial_ms: 50, max_ms: 500 },
        });
        const random = seededRandom(`group-crash/${kind}`);
        const schedule = seededRandom(`group-crash/${kind}/faults`);
        const writer = new GroupWriter(httpSide(src), random, MEMBERS);
        // Batches over HTTP are not checked whole here: the source's batch route commits a batch
        // in parts (runs of records, then the last one), which the destination reproduces commit
        // by commit; the in-process test checks whole batches (writeMany is one commit).
        const reader = new PrefixReader(
          httpSide(dst),
          (m) => PREFIX + m,
          () => MEMBERS,
          writer.placeOf,
        );
        reader.start();
        // faults at seeded steps: a kill of the source, of the destination, a cut link
        const faults = new Map<number, 'source' | 'destination' | 'link'>();
        const kinds: Array<'source' | 'destination' | 'link'> =
          kind === 'remote'
            ? ['source', 'destination', 'link', 'source', 'destination', 'link']
            : ['source', 'source', 'source'];
        for (const [i, f] of kinds.entries()) {
          const slot = Math.floor(((i + 0.2 + schedule() * 0.6) * STEPS) / kinds.length);
          faults.set(slot, f);
        }
        for (let step = 0; step < STEPS; step++) {
          const fault = faults.get(step);
          if (fault === 'source' || fault === 'destination') {
            const victim = fault === 'source' ? src : dst;
            marks.push(`step ${step}: SIGKILL ${fault}`);
            await victim.kill('SIGKILL');
            await sleep(Math.floor(schedule() * 300));
            await victim.restart();
          } else if (fault === 'link') {
            marks.push(`step ${step}: link cut`);
            proxy!.setMode(schedule() < 0.5 ? 'reset' : 'blackhole');
            proxy!.resetAll();
            // writes go on meanwhile
            for (let k = 0; k < 20; k++) await writer.step();
            proxy!.setMode('pass');
          }
          await writer.step();
        }
        marks.push('writes done');
        const st = await waitFor(
          async () => {
            const s = await replicationStatus(src, 'g');
            if (s.state === 'suspended') return s;
            return s.pending_records === 0 && s.state === 'idle' && s.cursor_lsn >= s.log_last_lsn
              ? s
              : false;
          },
          { timeoutMs: 120_000, intervalMs: 100, message: 'group replication caught up' },
        );
        assert.notEqual(st.state, 'suspended', `suspended: ${st.state_reason}`);
        // a last round of reads once everything is there
        await sleep(200);
        await reader.stop();
        assert.equal(reader.violation, null, `${reader.violation} (${REPLAY}; ${marks.join('; ')})`);
        assert.ok(reader.polls > 50, `the reader polled ${reader.polls} times`);
        for (const m of MEMBERS) await assertSameBuckets(src, m, dst, PREFIX + m);
        console.log(
          `group crash [${kind}]: ${writer.seq} records, ${reader.polls} reads checked; ${marks.join('; ')}`,
        );
      } finally {
        await proxy?.close();
        await src.destroy();
        if (dst !== src) await dst.destroy();
      }
    },
  );
}
