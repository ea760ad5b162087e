/**
 * Label values that the batch header grammar (api.md §10, §11) cannot carry as they are — a value
 * with both a comma and a double quote, or one that starts with a double quote — arrive at the
 * destination unchanged, on writes and on label updates, for both destination kinds.
 */
import assert from 'node:assert/strict';
import { forEachTarget, readText, statusOf, writeText } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

const AWKWARD: Record<string, string> = {
  both: 'north, "x"',
  quoted: '"quoted"',
  inner: 'a"b',
  comma: 'a,b',
  eq: 'k=v,w',
};

forEachTarget('label values the batch grammar cannot carry arrive unchanged', async (env) => {
  await env.replicate('r');
  // several entries at once (joined requests) and one alone
  await Promise.all([
    writeText(env.storage, 'src', 'a', 1n, 'one', AWKWARD),
    writeText(env.storage, 'src', 'b', 1n, 'two', { plain: 'x' }),
    writeText(env.storage, 'src', 'c', 1n, 'three', { both: AWKWARD.both! }),
  ]);
  await writeText(env.storage, 'src', 'a', 2n, 'four', { quoted: AWKWARD.quoted! });
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 4, {
    timeoutMs: 15_000,
    message: 'four records written',
  });
  const labelsOf = async (entry: string) => (await readText(env.dst, 'dst', entry)).map((r) => r.labels);
  assert.deepEqual(await labelsOf('a'), [AWKWARD, { quoted: AWKWARD.quoted }]);
  assert.deepEqual(await labelsOf('b'), [{ plain: 'x' }]);
  assert.deepEqual(await labelsOf('c'), [{ both: AWKWARD.both }]);

  // label updates: set awkward values, remove one
  await env.storage.bucket('src').updateLabels('b', 1n, { plain: null, both: AWKWARD.both!, quoted: '"q"' });
  await env.storage.bucket('src').updateLabels('a', 2n, { quoted: 'plain now', inner: AWKWARD.inner! });
  await waitFor(() => statusOf(env.manager, 'r').counters.label_updates_written >= 2, {
    timeoutMs: 15_000,
    message: 'two label updates written',
  });
  await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, {
    timeoutMs: 15_000,
    message: 'nothing pending',
  });
  assert.deepEqual(await labelsOf('b'), [{ both: AWKWARD.both, quoted: '"q"' }]);
  assert.deepEqual(await labelsOf('a'), [AWKWARD, { quoted: 'plain now', inner: AWKWARD.inner }]);
});

forEachTarget(
  'a record no request can carry exactly is refused visibly, never stored altered',
  async (env) => {
    // upper-case names keep their case only in batches, and the awkward value only travels alone
    const labels = { Foo: '1', bar: '"x' };
    await env.replicate('r');
    await writeText(env.storage, 'src', 'a', 1n, 'one', labels);
    if (env.kind === 'local') {
      await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1, { message: 'written' });
      assert.deepEqual((await readText(env.dst, 'dst', 'a'))[0]!.labels, labels);
      return;
    }
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
    assert.match(statusOf(env.manager, 'r').state_reason ?? '', /\(422\)/);
    assert.equal(
      env.dst.hasBucket('dst') && env.dst.bucket('dst').hasEntry('a'),
      false,
      'nothing stored altered',
    );
  },
);
