/**
 * A copy sent again to a destination that holds part of it already (as after a lost answer or a
 * crash): large batches of one entry, which a Ferry destination takes as records tables with
 * their digests. Identical records count as already present, a record with other content under
 * the same timestamp is a conflict that stops the replication naming it, and nothing at the
 * destination is overwritten. Local and remote alike.
 */
import assert from 'node:assert/strict';
import { forEachTarget, readText, statusOf } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

const RECORDS = 2000;
const CONFLICT = 1500;
const body = (i: number): Buffer => Buffer.from(`payload-${i}-`.repeat(1 + (i % 7)));
const labelsOf = (i: number): Record<string, string> => ({
  n: String(i % 10),
  Kind: i % 2 ? '"odd"' : 'a,b',
});

forEachTarget(
  'a copy sent again finds what is there present and stops at the one real conflict',
  async (env) => {
    await env.storage.createBucket('src');
    const src = env.storage.bucket('src');
    for (let i = 0; i < RECORDS; i += 200)
      await Promise.all(
        Array.from({ length: 200 }, (_, k) => {
          const b = body(i + k);
          return src.write('e', BigInt(1000 + i + k), { size: b.length, labels: labelsOf(i + k) }, b);
        }),
      );
    // the destination holds the first half identically, and other content at one timestamp
    if (!env.dst.hasBucket('dst')) await env.dst.createBucket('dst');
    const dst = env.dst.bucket('dst');
    for (let i = 0; i < RECORDS / 2; i++) {
      const b = body(i);
      await dst.write(
        'e',
        BigInt(1000 + i),
        { size: b.length, labels: labelsOf(i), origin: env.storage.instanceId },
        b,
      );
    }
    const other = Buffer.from('other content');
    await dst.write('e', BigInt(1000 + CONFLICT), { size: other.length, labels: {} }, other);

    await env.replicate('r', { since: 0, continuous: false, on_write_failure: 'stop' });
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', {
      timeoutMs: 30_000,
      message: 'the copy stopped at the conflict',
    });
    const st = statusOf(env.manager, 'r');
    assert.equal(st.counters.records_already_present, RECORDS / 2);
    assert.equal(st.counters.records_written, RECORDS / 2 - 1);
    assert.match(st.state_reason ?? '', new RegExp(`record ${1000 + CONFLICT} of entry 'e' \\(409\\)`));
    const stored = await readText(env.dst, 'dst', 'e');
    assert.equal(stored.length, RECORDS);
    stored.forEach((r, i) => {
      if (i === CONFLICT) assert.equal(r.body, 'other content', 'the conflicting record is left as it was');
      else {
        assert.equal(r.body, body(i).toString(), `record ${i}`);
        assert.deepEqual(r.labels, labelsOf(i), `labels of record ${i}`);
      }
    });
  },
);
