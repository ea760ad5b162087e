/**
 * Label values that the batch header grammar (api.md §10, §11) cannot carry as they are — a value
 * with both a comma and a double quote, or one that starts with a double quote — arrive at the
 * destination unchanged, on writes and on label updates, for both destination kinds. (Toward a
 * ReductStore, which takes no records table, a record with upper-case names and such a value is
 * refused visibly: nothing there carries it.)
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
  'upper-case label names with a value no header list carries arrive exactly, written and updated (records table)',
  async (env) => {
    // no v1/v2 header form carries both; a Ferry destination takes them in a records table
    const labels = { Foo: '1', bar: '"x', Baz: 'north, "y"' };
    await env.replicate('r');
    await writeText(env.storage, 'src', 'a', 1n, 'one', labels);
    await writeText(env.storage, 'src', 'a', 2n, 'two', { Only: '"q"' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 2, { message: 'written' });
    const got = await readText(env.dst, 'dst', 'a');
    assert.deepEqual(
      got.map((r) => r.labels),
      [labels, { Only: '"q"' }],
    );
    assert.equal(statusOf(env.manager, 'r').state_reason, null);
    // label updates too: an upper-case name gets an awkward value, another is removed
    await env.storage.bucket('src').updateLabels('a', 1n, { Foo: '"changed", yes', Baz: null });
    await waitFor(() => statusOf(env.manager, 'r').counters.label_updates_written === 1, {
      message: 'the label update written',
    });
    assert.deepEqual((await readText(env.dst, 'dst', 'a'))[0]!.labels, { Foo: '"changed", yes', bar: '"x' });
    assert.equal(statusOf(env.manager, 'r').state_reason, null);
  },
);
