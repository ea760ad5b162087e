import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { DigestPool, eventLoopBusy, spareCore } from '../src/storage/digest-pool.js';

const sha16 = (b: Buffer): string => createHash('sha256').update(b).digest().subarray(0, 16).toString('hex');

/** `n` payloads of mixed sizes, including empty payloads and views into a larger buffer. */
function mixedPayloads(n: number): Buffer[] {
  const big = randomBytes(64 * 1024);
  return Array.from({ length: n }, (_, i) =>
    i % 7 === 0 ? Buffer.alloc(0) : big.subarray(i * 13, i * 13 + (i % 3000)),
  );
}

function assertDigests(digests: Buffer[], payloads: Buffer[], what: string): void {
  assert.equal(digests.length, payloads.length, what);
  digests.forEach((d, i) => assert.equal(d.toString('hex'), sha16(payloads[i]!), `${what}: payload ${i}`));
}

test('batch digests from the worker equal SHA-256 of each payload, in order, for any batch size', async () => {
  const pool = new DigestPool();
  try {
    // Below 32 payloads the batch is hashed inline; from 32 on the worker hashes it.
    for (const [n, offloaded] of [
      [1, false],
      [31, false],
      [32, true],
      [500, true],
    ] as const) {
      const payloads = mixedPayloads(n);
      const before = pool.offloadedBatches;
      const digests = await pool.digestMany(payloads);
      assertDigests(digests, payloads, `${n} payloads`);
      assert.equal(
        pool.offloadedBatches - before,
        offloaded ? 1 : 0,
        `a batch of ${n} is hashed ${offloaded ? 'by the worker' : 'inline'}`,
      );
    }
  } finally {
    await pool.close();
  }
});

test(
  'close() while batches are being hashed: they still settle with the right digests',
  { timeout: 30_000 },
  async () => {
    const pool = new DigestPool();
    const big = (): Buffer[] => Array.from({ length: 2000 }, () => randomBytes(16 * 1024));
    // Closed before the worker has started.
    const first = big();
    const cold = pool.digestMany(first);
    await pool.close();
    assertDigests(await cold, first, 'closed before the worker started');

    // Closed while a running worker hashes a large batch.
    const warmPool = new DigestPool();
    const warm = mixedPayloads(64);
    assertDigests(await warmPool.digestMany(warm), warm, 'warm-up batch');
    assert.equal(warmPool.offloadedBatches, 1, 'the warm-up batch went to the worker');
    const second = big();
    const busy = warmPool.digestMany(second);
    await warmPool.close();
    assertDigests(await busy, second, 'closed while the worker was busy');

    // A closed pool hashes inline from then on.
    for (const p of [pool, warmPool]) {
      const before = p.offloadedBatches;
      const after = mixedPayloads(64);
      assertDigests(await p.digestMany(after), after, 'after close');
      assert.equal(p.offloadedBatches, before, 'no batch goes to the worker after close()');
    }
  },
);

test('a pool closed before first use hashes inline', async () => {
  const pool = new DigestPool();
  await pool.close();
  const payloads = Array.from({ length: 64 }, () => randomBytes(100));
  const digests = await pool.digestMany(payloads);
  assertDigests(digests, payloads, 'closed before use');
  assert.equal(pool.offloadedBatches, 0);
});

test('a pool told the event loop is not busy hashes inline, with the same digests', async () => {
  let busy = false;
  const pool = new DigestPool(() => busy);
  try {
    const payloads = mixedPayloads(100);
    assertDigests(await pool.digestMany(payloads), payloads, 'not busy');
    assert.equal(pool.offloadedBatches, 0, 'hashed inline while the loop is not busy');
    busy = true;
    assertDigests(await pool.digestMany(payloads), payloads, 'busy');
    assert.equal(pool.offloadedBatches, 1, 'offloaded while the loop is busy');
  } finally {
    await pool.close();
  }
});

test('eventLoopBusy: false until a window passed, then whether the loop was busy in it', async () => {
  const busy = eventLoopBusy(0.5, 20);
  assert.equal(busy(), false);
  const until = performance.now() + 40;
  while (performance.now() < until); // a blocked loop
  assert.equal(busy(), true);
  await new Promise((r) => setTimeout(r, 60)); // an idle one
  assert.equal(busy(), false);
});

test('spareCore: true until a window passed, then whether that much CPU was idle in it', async () => {
  const never = spareCore(1000, 20); // no machine has 1000 idle cores
  const always = spareCore(0, 20);
  assert.equal(never(), true, 'no window measured yet');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(never(), false);
  assert.equal(always(), true);
});
