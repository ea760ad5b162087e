/**
 * One fdatasync of a file at a time (storage/sync-point.ts): callers covered by a sync under way
 * share it, none runs two at once, and after a failed sync nothing is called durable again, even
 * when the next fdatasync would succeed (Linux reports a writeback error once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncPoint } from '../src/storage/sync-point.js';

test('concurrent callers share one sync at a time; a failed sync fails every later one', async () => {
  let runs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let failNext = false;
  const p = new SyncPoint(async () => {
    runs++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 5));
    inFlight--;
    if (failNext) {
      failNext = false;
      throw new Error('EIO');
    }
  });
  const w1 = p.wrote();
  const w2 = p.wrote();
  await Promise.all([p.syncTo(w1), p.syncTo(w2), p.syncTo(w2)]);
  assert.equal(runs, 1, 'one sync covers all three callers');
  assert.ok(p.clean());
  const w3 = p.wrote();
  const first = p.syncTo(w3);
  const w4 = p.wrote(); // written during the first sync: needs a second one, after it
  await Promise.all([first, p.syncTo(w4)]);
  assert.equal(runs, 3);
  assert.equal(maxInFlight, 1, 'never two syncs of the file at once');
  failNext = true;
  const w5 = p.wrote();
  await assert.rejects(p.syncTo(w5), /EIO/);
  const w6 = p.wrote();
  await assert.rejects(p.syncTo(w6), /EIO/, 'a later sync is refused, though fdatasync would pass now');
  assert.equal(runs, 4, 'no sync is run after the failure');
  assert.equal(p.clean(), false);
});
