import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { DigestPool } from '../src/storage/digest-pool.js';

const sha16 = (b: Buffer): string => createHash('sha256').update(b).digest().subarray(0, 16).toString('hex');

test('batch digests from the worker equal SHA-256 of each payload, in order, for any batch size', async () => {
  const pool = new DigestPool();
  try {
    for (const n of [1, 31, 32, 500]) {
      // Mixed sizes, including empty payloads and views into a larger buffer.
      const big = randomBytes(64 * 1024);
      const payloads = Array.from({ length: n }, (_, i) =>
        i % 7 === 0 ? Buffer.alloc(0) : big.subarray(i * 13, i * 13 + (i % 3000)),
      );
      const digests = await pool.digestMany(payloads);
      assert.equal(digests.length, n);
      digests.forEach((d, i) => assert.equal(d.toString('hex'), sha16(payloads[i]!), `payload ${i} of ${n}`));
    }
  } finally {
    await pool.close();
  }
});

test('after the worker is gone, digests are still computed (inline)', async () => {
  const pool = new DigestPool();
  await pool.close();
  const payloads = Array.from({ length: 64 }, () => randomBytes(100));
  const digests = await pool.digestMany(payloads);
  digests.forEach((d, i) => assert.equal(d.toString('hex'), sha16(payloads[i]!)));
});
