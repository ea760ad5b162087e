import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileEntryPatterns, matchesWithMeta } from '../src/query/entry-pattern.js';

const ENTRIES = [
  'cam',
  'cam-front',
  'cam-back/raw',
  'sensors/temp',
  'sensors/a/b/temp',
  'sensors',
  'a/x/b',
  'a/b',
  'a/x/y/b',
  'excluded/one',
  'cam/$meta',
  'sensors/temp/$meta',
  'x.y',
  'xzy',
];

function selected(patterns: string[] | undefined): string[] {
  const match = compileEntryPatterns(patterns);
  return ENTRIES.filter(match);
}

const ALL_BUT_META = ENTRIES.filter((e) => !e.endsWith('$meta'));

test('omitted, empty or ["*"] selects every entry except $meta ones', () => {
  assert.deepEqual(selected(undefined), ALL_BUT_META);
  assert.deepEqual(selected([]), ALL_BUT_META);
  assert.deepEqual(selected(['*']), ALL_BUT_META);
  assert.deepEqual(selected(['**']), ALL_BUT_META);
});

test('exact names, with a leading slash ignored', () => {
  assert.deepEqual(selected(['cam', '/sensors/temp', 'nope']), ['cam', 'sensors/temp']);
  assert.deepEqual(selected(['x.y']), ['x.y']); // '.' is literal
});

test('flat pattern ending in * is a prefix match', () => {
  assert.deepEqual(selected(['cam-*']), ['cam-front', 'cam-back/raw']);
});

test('* stays within one segment, ** spans any number of segments', () => {
  assert.deepEqual(selected(['sensors/*']), ['sensors/temp']);
  assert.deepEqual(selected(['a/**/b']), ['a/x/b', 'a/b', 'a/x/y/b']);
  assert.deepEqual(selected(['sensors/**']), ['sensors/temp', 'sensors/a/b/temp', 'sensors']);
  assert.deepEqual(selected(['**/temp']), ['sensors/temp', 'sensors/a/b/temp']);
  assert.deepEqual(selected(['a/*/b']), ['a/x/b']);
});

test('exclusions apply after includes, and alone exclude from everything', () => {
  assert.deepEqual(selected(['sensors/**', '!sensors/a/**']), ['sensors/temp', 'sensors']);
  assert.deepEqual(selected(['!excluded/**', '!cam*', '!a/**', '!sensors/**']), ['x.y', 'xzy']);
});

test('$meta entries match only when named explicitly', () => {
  assert.deepEqual(selected(['cam/*']), []);
  assert.deepEqual(selected(['cam/$meta']), ['cam/$meta']);
  assert.deepEqual(selected(['**/$meta']), ['cam/$meta', 'sensors/temp/$meta']);
  assert.deepEqual(selected(['cam', 'cam/$meta']), ['cam', 'cam/$meta']);
});

test('for replication a $meta child follows its parent', () => {
  const match = compileEntryPatterns(['sensors/*']);
  assert.equal(matchesWithMeta(match, 'sensors/temp/$meta'), true);
  assert.equal(matchesWithMeta(match, 'cam/$meta'), false);
  assert.equal(matchesWithMeta(match, 'sensors/temp'), true);
  const all = compileEntryPatterns(undefined);
  assert.equal(matchesWithMeta(all, 'cam/$meta'), true);
  assert.equal(all('cam/$meta'), false);
});
