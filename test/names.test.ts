import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import './helpers/property-config.js';
import path from 'node:path';
import {
  isMetaEntry,
  isValidEntryName,
  metaParent,
  validateBucketName,
  validateEntryName,
} from '../src/protocol/names.js';
import { FerryError } from '../src/protocol/errors.js';

const BUCKET_MSG = 'Bucket or entry name can contain only letters, digests and [-,_] symbols';

test('bucket names: letters, digits, - and _ only', () => {
  for (const ok of ['bucket', 'B-1_x', '0', 'a-b-c']) validateBucketName(ok);
  for (const bad of ['', 'a/b', 'a.b', '..', 'a b', '$system', 'ä', 'a\\b', 'a\0']) {
    assert.throws(
      () => validateBucketName(bad),
      (e: unknown) => e instanceof FerryError && e.status === 422 && e.message === BUCKET_MSG,
      bad,
    );
  }
});

test('entry names: hierarchical segments', () => {
  for (const ok of ['e', 'a/b/c', 'cam-1/front_2']) validateEntryName(ok);
  for (const bad of [
    '',
    '/a',
    'a/',
    'a//b',
    'a/../b',
    '..',
    '.',
    'a/./b',
    'a b',
    'a\\b',
    'a/$meta',
    '$meta',
    'a/$meta/b',
  ]) {
    assert.throws(
      () => validateEntryName(bad),
      (e: unknown) =>
        e instanceof FerryError && e.status === 422 && e.message === `Invalid entry name '${bad}'`,
      bad,
    );
  }
});

test('$meta suffix only when allowed', () => {
  validateEntryName('a/$meta', { allowMeta: true });
  validateEntryName('a/b/$meta', { allowMeta: true });
  assert.equal(isValidEntryName('$meta', { allowMeta: true }), false);
  assert.equal(isValidEntryName('/$meta', { allowMeta: true }), false);
  assert.equal(isValidEntryName('a/$meta/$meta', { allowMeta: true }), false);
  assert.equal(isMetaEntry('a/b/$meta'), true);
  assert.equal(isMetaEntry('a/b'), false);
  assert.equal(metaParent('a/b/$meta'), 'a/b');
  assert.equal(metaParent('a/b'), 'a/b');
});

test('anything accepted stays inside the data directory', () => {
  const root = path.resolve('/data/bucket');
  fc.assert(
    fc.property(
      fc
        .array(fc.constantFrom('a', 'B', '1', '-', '_', '.', '..', '/', '$', '$meta', '\\', ' ', '%2F'), {
          maxLength: 8,
        })
        .map((p) => p.join('')),
      (name) => {
        if (!isValidEntryName(name, { allowMeta: true })) return;
        const resolved = path.resolve(root, name);
        assert.ok(resolved.startsWith(root + path.sep), name);
        assert.ok(!name.split('/').some((s) => s === '.' || s === '..' || s === ''));
      },
    ),
    { numRuns: 2000 },
  );
});
