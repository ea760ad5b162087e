/**
 * The records-table batch codec (protocol/records-table.ts): what the sender encodes is what the
 * destination decodes, for any record the store can hold, and every malformed table is refused
 * with a 422 that names the problem before any record is stored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import './helpers/property-config.js';
import { isFerryError } from '../src/protocol/errors.js';
import {
  decodeRecordsTable,
  tableCarries,
  encodeRecordsTable,
  MAX_TABLE_RECORDS,
  TABLE_PREFIX_BYTES,
  tableLength,
  type TableRecord,
} from '../src/protocol/records-table.js';
import { MAX_LABELS_PER_RECORD } from '../src/protocol/limits.js';

const labelName = fc.stringMatching(/^[A-Za-z0-9_.~-]{1,12}$/);
/** Characters a header carries (what a stored label or content type is made of). */
const headerChar = fc.oneof(
  fc.constant('\t'),
  fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)),
);
const headerText = (maxLength: number) => fc.string({ unit: headerChar, maxLength });
/** Values a header list cannot carry are the interesting ones: quotes, commas, `=`, 8-bit. */
const labelValue = fc.oneof(
  headerText(20),
  headerText(200),
  fc.constantFrom('"quoted"', 'north, "x"', 'a"b', 'k=v,w', '', 'ünï', '"'),
);
const labels = fc.dictionary(labelName, labelValue, { maxKeys: 6 });
const contentType = fc.oneof(fc.constantFrom('', 'text/plain', 'a/b; x="1,2"', 'image/jpeg'), headerText(80));

/** The table's bytes after its prefix. */
const body = (records: readonly TableRecord[]): Buffer => {
  const enc = encodeRecordsTable(records);
  return enc.subarray(TABLE_PREFIX_BYTES, TABLE_PREFIX_BYTES + tableLength(enc));
};

test('what is encoded decodes to the same records (property)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          gap: fc.bigInt({ min: 1n, max: 1n << 40n }),
          size: fc.oneof(fc.nat(2048), fc.constant(2 ** 53 - 1)),
          contentType,
          labels,
          digest: fc.option(fc.uint8Array({ minLength: 16, maxLength: 16 }), { nil: undefined }),
          sameLabels: fc.boolean(),
        }),
        { maxLength: 40 },
      ),
      (drawn) => {
        let ts = -1n;
        const records: TableRecord[] = [];
        for (const d of drawn) {
          ts += d.gap;
          const prev = records[records.length - 1];
          records.push({
            ts,
            size: d.size,
            contentType: d.contentType,
            // the same object as the record before: encoded from the same bytes
            labels: d.sameLabels && prev ? prev.labels : d.labels,
            digest: d.digest ? Buffer.from(d.digest) : undefined,
          });
        }
        assert.ok(records.every(tableCarries));
        const got = decodeRecordsTable(body(records));
        assert.equal(got.records.length, records.length);
        assert.equal(
          got.totalSize,
          records.reduce((n, r) => n + r.size, 0),
        );
        got.records.forEach((r, i) => {
          const want = records[i]!;
          assert.equal(r.ts, want.ts);
          assert.equal(r.size, want.size);
          assert.equal(
            r.contentType,
            want.contentType === '' ? 'application/octet-stream' : want.contentType,
          );
          assert.deepEqual({ ...r.labels }, { ...want.labels });
          assert.deepEqual(r.digest ? [...r.digest] : undefined, want.digest ? [...want.digest] : undefined);
        });
      },
    ),
  );
});

/** The 422 message of decoding `table`, or fails when it is accepted. */
function refusal(table: Buffer): string {
  try {
    decodeRecordsTable(table);
  } catch (e) {
    assert.ok(isFerryError(e), `a FerryError, not ${String(e)}`);
    assert.equal(e.status, 422);
    return e.message;
  }
  assert.fail('the table was accepted');
}

const one = (over: Partial<TableRecord> = {}): TableRecord => ({
  ts: 10n,
  size: 3,
  contentType: 'text/plain',
  labels: { a: '1' },
  ...over,
});

test('malformed tables are refused with 422 naming the problem', () => {
  const good = body([one(), one({ ts: 11n })]);
  assert.match(refusal(good.subarray(0, good.length - 1)), /ends inside a record/);
  assert.match(refusal(Buffer.concat([good, Buffer.from([0])])), /1 bytes after the last record/);
  assert.match(refusal(body([one({ ts: 11n }), one({ ts: 10n })])), /ascend strictly \(10 after 11\)/);
  assert.match(refusal(body([one(), one()])), /ascend strictly \(10 after 10\)/);

  const count = Buffer.from(good);
  count.writeUInt32BE(MAX_TABLE_RECORDS + 1, 0);
  assert.match(refusal(count), /16385 records, at most 16384/);

  const flags = Buffer.from(good);
  flags[4 + 16] = 0x80;
  assert.match(refusal(flags), /unknown flags 128 of record 10/);

  const size = Buffer.from(good);
  size.writeUInt32BE(0x00200000, 4 + 8); // 2^53
  assert.match(refusal(size), /size of record 10 is beyond 2\^53/);

  assert.match(refusal(body([one({ contentType: 'x'.repeat(1025) })])), /Content-Type of record 10/);
  assert.match(refusal(body([one({ labels: { 'bad name': '1' } })])), /Invalid label name 'bad name'/);
  assert.match(refusal(body([one({ labels: { '@x': '1' } })])), /must not start with '@'/);
  assert.match(
    refusal(body([one({ labels: { a: 'x'.repeat(16 * 1024 + 1) } })])),
    /Value of label 'a' of record 10/,
  );
  const many = Object.fromEntries(Array.from({ length: MAX_LABELS_PER_RECORD + 1 }, (_, i) => [`l${i}`, '']));
  assert.match(refusal(body([one({ labels: many })])), /label/i);

  // a label name twice in one record (the encoder never writes it: built by hand)
  const twice = Buffer.from(body([one({ labels: { a: '1', b: '2' } })]));
  const at = twice.indexOf(Buffer.from([0, 1, 0x62])); // u16 length 1, 'b'
  twice[at + 2] = 0x61;
  assert.match(refusal(twice), /label 'a' twice of record 10/);
});

test('a table carries only what a header carries; control characters are refused', () => {
  assert.equal(tableCarries({ contentType: 'a/b', labels: { a: 'ünï\t"x,y"' } }), true);
  assert.equal(tableCarries({ contentType: 'a/b', labels: { a: '€' } }), false);
  assert.equal(tableCarries({ contentType: 'a/b', labels: { a: 'x\ny' } }), false);
  assert.equal(tableCarries({ contentType: 'a\u0000b', labels: {} }), false);
  // bytes no header carries, written by hand: refused, never stored
  const value = Buffer.from(body([one({ labels: { a: 'xy' } })]));
  value[value.length - 1] = 0x0a;
  assert.match(refusal(value), /value of label 'a' of record 10 holds a control character/);
  const type = Buffer.from(body([one({ contentType: 'ab', labels: {} })]));
  type[type.indexOf(Buffer.from('ab'))] = 0x7f;
  assert.match(refusal(type), /content type of record 10 holds a control character/);
});

test('the prefix is checked before the table is read', () => {
  const enc = encodeRecordsTable([one()]);
  assert.equal(tableLength(enc), enc.length - TABLE_PREFIX_BYTES);
  const wrong = Buffer.from(enc);
  wrong.write('XXXX', 0);
  assert.throws(() => tableLength(wrong), /must start with "FRT1"/);
  const huge = Buffer.from(enc);
  huge.writeUInt32BE(0xffffffff, 4);
  assert.throws(() => tableLength(huge), /must be 4 to 16777216 bytes/);
});
