/** protocol/utf8.ts agrees with Node's UTF-8 encoder on any string, lone surrogates included. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { utf8Length } from '../src/protocol/utf8.js';
import './helpers/property-config.js';

test('utf8Length equals Buffer.byteLength', () => {
  for (const s of ['', 'a', 'é', '€', '😀', '\ud800', '\udc00x', 'a\ud83d']) {
    assert.equal(utf8Length(s), Buffer.byteLength(s, 'utf8'), JSON.stringify(s));
  }
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (s) => utf8Length(s) === Buffer.byteLength(s, 'utf8')),
    { numRuns: 2000 },
  );
});
