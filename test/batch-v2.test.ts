import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import './helpers/property-config.js';
import {
  decodeHeaderComponent,
  encodeHeaderComponent,
  encodeV2Batch,
  parseV2Batch,
  v2ErrorHeader,
  type V2OutRecord,
} from '../src/protocol/batch-v2.js';
import { Errors, FerryError } from '../src/protocol/errors.js';

const is422 = (msg: string) => (e: unknown) =>
  e instanceof FerryError && e.status === 422 && e.message === msg;
const raw = (h: Record<string, string>): string[] => Object.entries(h).flat();

test('§11.8 worked example: write decode, then read encode', () => {
  const body = Buffer.from('AABBB');
  const req = parseV2Batch([
    'content-length',
    '5',
    'x-reduct-entries',
    'x-0,x-1',
    'x-reduct-start-ts',
    '1000',
    'x-reduct-0-10',
    '2,text/plain',
    'x-reduct-1-0',
    '3,text/plain',
  ]);
  assert.equal(req.totalSize, 5);
  let offset = 0;
  const stored = req.records.map((r) => {
    const payload = body.subarray(offset, offset + r.size).toString();
    offset += r.size;
    return { entry: r.entry, ts: r.ts, size: r.size, contentType: r.contentType, labels: r.labels, payload };
  });
  assert.deepEqual(
    stored.map((r) => [r.entry, r.ts, r.payload]),
    [
      ['x-0', 1010n, 'AA'],
      ['x-1', 1000n, 'BBB'],
    ],
  );

  // the query merges in timestamp order: x-1@1000 then x-0@1010
  const merged = [stored[1]!, stored[0]!];
  const out = encodeV2Batch(merged);
  assert.deepEqual(out.headers, {
    'x-reduct-entries': 'x-1,x-0',
    'x-reduct-start-ts': '1000',
    'x-reduct-0-0': '3,text/plain',
    'x-reduct-1-10': '2,text/plain',
  });
  assert.equal(out.totalSize, 5);
  assert.equal(out.order.map((i) => merged[i]!.payload).join(''), 'BBBAA');
});

test('interleaved entries: body grouped by entry index then time', () => {
  const recs: V2OutRecord[] = [
    { entry: 'b', ts: 1n, size: 1, contentType: 'x', labels: {} },
    { entry: 'a', ts: 1n, size: 2, contentType: 'x', labels: {} },
    { entry: 'b', ts: 2n, size: 3, contentType: 'x', labels: {} },
    { entry: 'a', ts: 3n, size: 4, contentType: 'x', labels: {} },
  ];
  const out = encodeV2Batch(recs);
  assert.equal(out.headers['x-reduct-entries'], 'a,b'); // tie on first ts broken by name
  assert.deepEqual(out.order, [1, 3, 0, 2]);
  assert.equal(out.headers['x-reduct-0-0'], '2,x');
  assert.equal(out.headers['x-reduct-0-2'], '4');
  assert.equal(out.headers['x-reduct-1-0'], '1,x');
  assert.equal(out.headers['x-reduct-1-1'], '3');
  // decoding the encoded request gives back the records in body order
  const dec = parseV2Batch(raw(out.headers));
  assert.deepEqual(
    dec.records.map((r) => [r.entry, r.ts, r.size]),
    out.order.map((i) => [recs[i]!.entry, recs[i]!.ts, recs[i]!.size]),
  );
});

test('encoder: minimal deltas with the label dictionary', () => {
  const recs: V2OutRecord[] = [
    { entry: 'e', ts: 10n, size: 1, contentType: 'text/plain', labels: { a: '1', b: 'x,y' } },
    { entry: 'e', ts: 11n, size: 1, contentType: 'text/plain', labels: { a: '1', b: 'x,y' } },
    { entry: 'e', ts: 12n, size: 1, contentType: 'text/csv', labels: { a: '1', b: 'x,y' } },
    { entry: 'e', ts: 13n, size: 1, contentType: 'text/csv', labels: { a: '2', c: '' } },
    { entry: 'e', ts: 14n, size: 1, contentType: 'image/png', labels: { a: '2', d: '4' } },
  ];
  const out = encodeV2Batch(recs);
  assert.deepEqual(out.headers, {
    'x-reduct-entries': 'e',
    'x-reduct-start-ts': '10',
    'x-reduct-labels': 'a,b,d',
    'x-reduct-0-0': '1,text/plain,0=1,1="x,y"',
    'x-reduct-0-1': '1',
    'x-reduct-0-2': '1,text/csv',
    'x-reduct-0-3': '1,,0=2,1=',
    'x-reduct-0-4': '1,image/png,2=4',
  });
});

test('encoder output decodes to the exact metadata (property)', () => {
  const rec = fc.record({
    entry: fc.constantFrom('a', 'b/c', 'd/$meta', 'é'),
    ts: fc.bigInt({ min: 0n, max: 50n }),
    size: fc.nat(1000),
    contentType: fc.constantFrom('application/octet-stream', 'text/plain', 'a/b;c=d'),
    labels: fc.dictionary(
      fc.constantFrom('k', 'key', '1', 'x-y', 'a.b', 'c_d', 'Z~'),
      fc.constantFrom('v', '1,2', '', ' spaced', '[a, b]', 'x=y'),
      { maxKeys: 4 },
    ),
  });
  fc.assert(
    fc.property(fc.array(rec, { maxLength: 12 }), (input) => {
      // one record per (entry, ts)
      const seen = new Set<string>();
      const recs = input.filter((r) => !seen.has(`${r.entry}@${r.ts}`) && seen.add(`${r.entry}@${r.ts}`));
      const out = encodeV2Batch(recs);
      if (recs.length === 0) return;
      const dec = parseV2Batch(raw(out.headers));
      assert.equal(dec.records.length, recs.length);
      dec.records.forEach((d, k) => {
        const src = recs[out.order[k]!]!;
        const expectLabels = Object.fromEntries(
          Object.entries(src.labels)
            .filter(([, v]) => v.trim() !== '')
            .map(([n, v]) => [n, v.trim()]),
        );
        assert.equal(d.entry, src.entry);
        assert.equal(d.ts, src.ts);
        assert.equal(d.size, src.size);
        assert.equal(d.contentType, src.contentType);
        assert.deepEqual(d.labels, expectLabels);
      });
      assert.equal(dec.totalSize, out.totalSize);
    }),
    { numRuns: 300 },
  );
});

test('empty batch', () => {
  const out = encodeV2Batch([]);
  assert.deepEqual(out.headers, { 'x-reduct-entries': '', 'x-reduct-start-ts': '0' });
  assert.equal(out.totalSize, 0);
  assert.deepEqual(parseV2Batch(raw(out.headers)).records, []);
});

test('percent encoding exactly as §11.1', () => {
  assert.equal(encodeHeaderComponent('a/x/y/$meta'), 'a%2Fx%2Fy%2F$meta');
  assert.equal(encodeHeaderComponent("!#$%&'*+-.^_`|~Az09"), "!#$%&'*+-.^_`|~Az09");
  assert.equal(encodeHeaderComponent('a b,c=é'), 'a%20b%2Cc%3D%C3%A9');
  assert.equal(decodeHeaderComponent('a%2fb%2F$meta'), 'a/b/$meta');
  assert.equal(decodeHeaderComponent('a%2'), undefined);
  assert.equal(decodeHeaderComponent('a%ZZ'), undefined);
  assert.equal(decodeHeaderComponent('%FF'), undefined);
});

test('decoder: value forms and per-entry state', () => {
  const b = parseV2Batch([
    'X-Reduct-Entries',
    'a%2Fb,c',
    'x-reduct-start-ts',
    '100',
    'x-reduct-labels',
    'x,y-z',
    'x-reduct-0-5',
    '2',
    'x-reduct-0-0',
    '1,text/plain,0=1,1="p,q",w=3',
    'x-reduct-1-1',
    '4,,x=9',
    'x-reduct-0-7',
    '3,,0=,w=4',
    'x-reduct-0-9',
    '5,image/png',
    'x-reduct-1-2',
    '6,text/csv',
    'x-reduct-1-3',
    '7,,x=',
    'x-reduct-content-length',
    '28',
  ]);
  assert.deepEqual(b.entries, ['a/b', 'c']);
  assert.deepEqual(b.labelNames, ['x', 'y-z']);
  assert.equal(b.totalSize, 28);
  assert.deepEqual(
    b.records.map((r) => [r.entry, r.ts, r.delta, r.size, r.contentType, r.labels, r.removed]),
    [
      ['a/b', 100n, 0n, 1, 'text/plain', { x: '1', 'y-z': 'p,q', w: '3' }, []],
      ['a/b', 105n, 5n, 2, 'text/plain', { x: '1', 'y-z': 'p,q', w: '3' }, []],
      ['a/b', 107n, 7n, 3, 'text/plain', { 'y-z': 'p,q', w: '4' }, ['x']],
      ['a/b', 109n, 9n, 5, 'image/png', { 'y-z': 'p,q', w: '4' }, ['x']],
      ['c', 101n, 1n, 4, 'application/octet-stream', { x: '9' }, []],
      ['c', 102n, 2n, 6, 'text/csv', { x: '9' }, []],
      ['c', 103n, 3n, 7, 'text/csv', {}, ['x']],
    ],
  );
});

test('decoder: numeric names are literal without a dictionary', () => {
  const b = parseV2Batch(['x-reduct-entries', 'e', 'x-reduct-start-ts', '0', 'x-reduct-0-0', '0,,1=2']);
  assert.deepEqual(b.records[0]!.labels, { 1: '2' });
});

test('decoder: malformed requests → 422', () => {
  const base = ['x-reduct-entries', 'e', 'x-reduct-start-ts', '10'];
  assert.throws(
    () => parseV2Batch(['x-reduct-start-ts', '1', 'x-reduct-0-0', '1,']),
    is422('x-reduct-entries header is required'),
  );
  assert.throws(
    () => parseV2Batch(['x-reduct-entries', '', 'x-reduct-0-0', '1,']),
    is422('x-reduct-entries header is required'),
  );
  assert.throws(
    () => parseV2Batch(['x-reduct-entries', 'e', 'x-reduct-0-0', '1,']),
    is422('x-reduct-start-ts header is required'),
  );
  assert.throws(
    () => parseV2Batch(['x-reduct-entries', 'e', 'x-reduct-start-ts', '-1']),
    is422('Invalid x-reduct-start-ts header'),
  );
  assert.throws(
    () => parseV2Batch(['x-reduct-entries', 'e%G1', 'x-reduct-start-ts', '1']),
    is422("Invalid entry encoding in header name: 'e%G1'"),
  );
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-labels', ' ']),
    is422('x-reduct-labels header is empty'),
  );
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-0-0', '10']),
    is422('Content-type and labels must be provided for the first record of an entry'),
  );
  assert.throws(() => parseV2Batch([...base, 'x-reduct-0-0', 'x,']), is422('Invalid batched header'));
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-0-0', '1,,@cpu=1']),
    is422("Label names must not start with '@': reserved for computed labels"),
  );
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-labels', 'a', 'x-reduct-0-0', '1,,1=1']),
    is422("Label index '1' is out of range"),
  );
  assert.throws(() => parseV2Batch([...base, 'x-reduct-0-0', '1,,novalue']), is422('Invalid batched header'));
  assert.throws(() => parseV2Batch([...base, 'x-reduct-0-0', '1,,a="x']), is422('Invalid batched header'));
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-1-0', '1,']),
    is422("Invalid header 'x-reduct-1-0': entry index out of range"),
  );
  assert.throws(
    () => parseV2Batch([...base, 'x-reduct-0-abc', '1,']),
    is422("Invalid header 'x-reduct-0-abc': must be an unix timestamp in microseconds"),
  );
  assert.throws(
    () =>
      parseV2Batch([
        'x-reduct-entries',
        'e',
        'x-reduct-start-ts',
        '18446744073709551615',
        'x-reduct-0-1',
        '1,',
      ]),
    is422("Invalid header 'x-reduct-0-1': must be an unix timestamp in microseconds"),
  );
});

test('error headers', () => {
  assert.deepEqual(v2ErrorHeader(1, 2n, Errors.recordNotFound(1002n, 'b1', 'e2')), [
    'x-reduct-error-1-2',
    '404,Record 1002 not found in entry b1/e2',
  ]);
});

test('decoder: label names that are not header tokens are refused (also through the dictionary)', () => {
  for (const [names, delta] of [
    ['y%2Cz', '0=1'],
    [undefined, 'a b=1'],
    [undefined, '=v'],
    ['%C3%BC', '0=1'],
  ] as const) {
    const headers = ['x-reduct-entries', 'e', 'x-reduct-start-ts', '1', 'x-reduct-0-0', `1,,${delta}`];
    if (names) headers.push('x-reduct-labels', names);
    assert.throws(
      () => parseV2Batch(headers),
      (e: unknown) => e instanceof FerryError && e.status === 422 && /Invalid label name/.test(e.message),
      delta,
    );
  }
});
