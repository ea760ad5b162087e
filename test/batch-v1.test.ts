import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeV1Headers,
  encodeV1RemoveHeaders,
  encodeV1UpdateHeaders,
  parseV1Batch,
  parseV1ErrorHeaders,
  parseV1RemoveBatch,
  parseV1UpdateBatch,
  v1ErrorHeader,
  type V1Record,
} from '../src/protocol/batch-v1.js';
import { Errors, FerryError } from '../src/protocol/errors.js';

const is422 = (msg: string) => (e: unknown) =>
  e instanceof FerryError && e.status === 422 && e.message === msg;
const raw = (h: Record<string, string>): string[] => Object.entries(h).flat();

test('§10.5 example: response headers', () => {
  const headers = encodeV1Headers([
    { ts: 1000n, size: 10, contentType: 'application/octet-stream', labels: {} },
    { ts: 1100n, size: 10, contentType: 'text/plain', labels: { x: '[a,b]' } },
  ]);
  assert.deepEqual(headers, {
    'x-reduct-time-1000': '10,application/octet-stream',
    'x-reduct-time-1100': '10,text/plain,x="[a,b]"',
  });
});

test('encoder sorts labels by name and always writes the content type', () => {
  const headers = encodeV1Headers([
    { ts: 5n, size: 0, contentType: '', labels: { b: '2', a: '1,2', c: 'x=y' } },
  ]);
  assert.deepEqual(headers, { 'x-reduct-time-5': '0,application/octet-stream,a="1,2",b=2,c=x=y' });
});

test('parse: sorted by timestamp, u64 timestamps, quoted values, defaults', () => {
  const big = 18446744073709551615n;
  const batch = parseV1Batch([
    'Content-Length',
    '13',
    `X-Reduct-Time-${big}`,
    '3,',
    'x-reduct-time-1100',
    '10, text/plain, x="[a, b]", y = 2',
    'x-reduct-time-1000',
    '0,,k=v',
    'x-reduct-label-a',
    'ignored',
  ]);
  assert.equal(batch.totalSize, 13);
  assert.deepEqual(batch.records, [
    { ts: 1000n, size: 0, contentType: 'application/octet-stream', labels: { k: 'v' } },
    { ts: 1100n, size: 10, contentType: 'text/plain', labels: { x: '[a, b]', y: '2' } },
    { ts: big, size: 3, contentType: 'application/octet-stream', labels: {} },
  ]);
});

test('parse: round trip of the encoder', () => {
  const records: V1Record[] = [
    { ts: 1n, size: 4, contentType: 'image/png', labels: { a: 'x,y,z', b: '', c: 'q' } },
    { ts: 2n, size: 0, contentType: 'text/plain', labels: {} },
  ];
  assert.deepEqual(parseV1Batch(raw(encodeV1Headers(records))).records, records);
});

test('parse: malformed headers → 422', () => {
  assert.throws(() => parseV1Batch(['x-reduct-time-1', '3']), is422('Invalid batched header'));
  assert.throws(() => parseV1Batch(['x-reduct-time-1', '']), is422('Invalid batched header'));
  assert.throws(() => parseV1Batch(['x-reduct-time-1', 'abc,']), is422('Invalid content length'));
  assert.throws(() => parseV1Batch(['x-reduct-time-1', '-1,']), is422('Invalid content length'));
  assert.throws(
    () => parseV1Batch(['x-reduct-time-1', '1,a,x="unterminated']),
    is422('Invalid batched header'),
  );
  const tsMsg = Errors.invalidBatchedTime().message;
  assert.throws(() => parseV1Batch(['x-reduct-time-abc', '1,']), is422(tsMsg));
  assert.throws(() => parseV1Batch(['x-reduct-time-18446744073709551616', '1,']), is422(tsMsg));
  assert.throws(() => parseV1Batch(['x-reduct-time--1', '1,']), is422(tsMsg));
});

test('accepts header records and pair iterables', () => {
  const fromRecord = parseV1Batch({ 'x-reduct-time-7': '1,text/plain', host: 'x' });
  const fromPairs = parseV1Batch(new Map([['x-reduct-time-7', '1,text/plain']]));
  assert.deepEqual(fromRecord, fromPairs);
  assert.equal(fromRecord.records[0]!.contentType, 'text/plain');
});

test('PATCH variant: k= deletes, length and content type ignored', () => {
  const updates = parseV1UpdateBatch([
    'x-reduct-time-2',
    '0,,x=z,a=,1=2',
    'x-reduct-time-1',
    '0,',
    'x-reduct-time-3',
    '5,text/plain,v="1,2"',
  ]);
  assert.deepEqual(updates, [
    { ts: 1n, changes: {} },
    { ts: 2n, changes: { x: 'z', a: null, 1: '2' } },
    { ts: 3n, changes: { v: '1,2' } },
  ]);
  assert.throws(() => parseV1UpdateBatch(['x-reduct-time-1', '0']), is422('Invalid batched header'));
  const headers = encodeV1UpdateHeaders([{ ts: 2n, changes: { x: 'z', a: null, v: '1,2' } }]);
  assert.deepEqual(headers, { 'x-reduct-time-2': '0,,a=,v="1,2",x=z' });
  assert.deepEqual(parseV1UpdateBatch(raw(headers)), [{ ts: 2n, changes: { x: 'z', a: null, v: '1,2' } }]);
});

test('DELETE variant: only timestamps matter', () => {
  assert.deepEqual(parseV1RemoveBatch(['x-reduct-time-9', '', 'x-reduct-time-3', '0,']), [3n, 9n]);
  assert.deepEqual(encodeV1RemoveHeaders([1n, 2n]), { 'x-reduct-time-1': '0,', 'x-reduct-time-2': '0,' });
});

test('error headers', () => {
  const [name, value] = v1ErrorHeader(1000000n, Errors.recordExists(1000000n));
  assert.equal(name, 'x-reduct-error-1000000');
  assert.equal(value, '409,A record with timestamp 1000000 already exists');
  assert.deepEqual(v1ErrorHeader(1n, new FerryError(500, 'bad\nline')), [
    'x-reduct-error-1',
    '500,Unparsable message',
  ]);
  const parsed = parseV1ErrorHeaders([
    name,
    value,
    'X-Reduct-Error-5',
    "404,Bucket 'x' is not found",
    'x-other',
    '1',
  ]);
  assert.equal(parsed.size, 2);
  assert.equal(parsed.get(1000000n)!.status, 409);
  assert.equal(parsed.get(1000000n)!.message, 'A record with timestamp 1000000 already exists');
  assert.equal(parsed.get(5n)!.message, "Bucket 'x' is not found");
});
