/**
 * Storage writes give their commit LSN (issue 9 item 1): a single write and every record of a batch
 * learn the change-log position they were committed at, which is where the change log lists them
 * (a sync writer waits for the delivery of exactly that position).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withStorage } from './helpers/temp-storage.js';

test('write and writeMany report the LSN at which the change log lists each record', () =>
  withStorage(async (s) => {
    const b = await s.createBucket('b');
    const one = { lsn: -1n };
    await b.write('e', 1n, { size: 1, commit: one }, Buffer.from('a'));
    const commits = [{ lsn: -1n }, { lsn: -1n }];
    await b.writeMany(
      commits.map((commit, i) => ({
        entry: 'f',
        ts: BigInt(10 + i),
        opts: { size: 1, commit },
        payload: Buffer.from('b'),
      })),
    );
    const changes = await s.changes.read(0n, 100);
    const at = (lsn: bigint) => changes.find((c) => c.lsn === lsn);
    assert.deepEqual([at(one.lsn)?.entry, at(one.lsn)?.ts], ['e', 1n]);
    assert.deepEqual([at(commits[0]!.lsn)?.ts, at(commits[1]!.lsn)?.ts], [10n, 11n]);
    assert.equal(commits[1]!.lsn, s.changes.lastLsn());
    // an idempotent repeat commits nothing and learns no LSN
    const again = { lsn: -1n };
    const digest = (await b.read('e', 1n)).meta.digest;
    assert.equal(
      await b.write('e', 1n, { size: 1, digest, commit: again }, Buffer.from('a')),
      'already_present',
    );
    assert.equal(again.lsn, -1n);
  }));
