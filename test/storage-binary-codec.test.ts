/**
 * The binary codec of WAL frames and metadata files round-trips every string exactly: the short
 * ASCII fast paths (writer and reader) and the UTF-8 path must agree byte for byte, whatever the
 * length or the characters (a wrong byte here is a corrupt WAL or a wrong label after restart).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BinaryReader, BinaryWriter } from '../src/storage/binary-codec.js';
import { seededRandom } from './helpers/seed.js';

const ALPHABET = ['a', 'Z', '0', '=', ' ', '\u007f', 'é', 'ß', '中', '😀', '\u0000'];

function randomString(rnd: () => number): string {
  const len = Math.floor(rnd() * 80);
  const ascii = rnd() < 0.6;
  let s = '';
  for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(rnd() * (ascii ? 6 : ALPHABET.length))];
  return s;
}

test('strings and labels round-trip through the writer and reader, UTF-8 exactly', () => {
  const rnd = seededRandom('binary-codec');
  const cases = ['', 'a', 'x'.repeat(12), 'y'.repeat(13), 'z'.repeat(64), 'w'.repeat(65), 'é', 'aé', '😀'];
  for (let i = 0; i < 500; i++) cases.push(randomString(rnd));
  const w = new BinaryWriter(16); // small: the fast paths must grow the buffer too
  for (const s of cases)
    w.str16(s)
      .str32(s)
      .labels({ [s || 'k']: s, n: String(s.length) });
  const bytes = Buffer.from(w.view());
  // the reference encoding: length prefix, then Buffer's UTF-8
  const prefixed = (s: string, width: 2 | 4): Buffer => {
    const u = Buffer.from(s, 'utf8');
    const h = Buffer.alloc(width);
    if (width === 2) h.writeUInt16LE(u.length);
    else h.writeUInt32LE(u.length);
    return Buffer.concat([h, u]);
  };
  const ref: Buffer[] = [];
  for (const s of cases) {
    ref.push(prefixed(s, 2), prefixed(s, 4), Buffer.from([2, 0]));
    ref.push(prefixed(s || 'k', 2), prefixed(s, 4), prefixed('n', 2), prefixed(String(s.length), 4));
  }
  assert.ok(bytes.equals(Buffer.concat(ref)), 'the writer emits plain length-prefixed UTF-8');
  const r = new BinaryReader(bytes);
  for (const s of cases) {
    assert.equal(r.str16(), s);
    assert.equal(r.str32(), s);
    assert.deepEqual(r.labels(), { [s || 'k']: s, n: String(s.length) });
  }
  assert.equal(r.pos, bytes.length);
});
