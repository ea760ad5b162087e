/**
 * One seed per test run. `scripts/run-tests.mjs` resolves it once (FERRY_TEST_SEED, else a fixed seed
 * under CI=true, else a random one), prints it and hands it to every test process in FERRY_TEST_SEED;
 * a test file run on its own resolves it the same way and prints it when it was not given. Every
 * random choice a test makes comes from a stream derived from this seed, so that
 * `FERRY_TEST_SEED=<n>` replays the choices of a failed run.
 */
import { createHash } from 'node:crypto';
import { mulberry32 } from '../../bench/lib/prng.js';
import { resolveSeed } from './seed-source.js';

const resolved = resolveSeed();
if (resolved.from !== 'FERRY_TEST_SEED') {
  console.log(`test seed ${resolved.seed} (${resolved.from}; FERRY_TEST_SEED=${resolved.seed} replays it)`);
}

/** This run's seed. */
export const TEST_SEED = resolved.seed;

/** `FERRY_TEST_SEED=<seed>`, for failure messages. */
export const REPLAY = `FERRY_TEST_SEED=${TEST_SEED}`;

/**
 * A pseudo-random number generator (mulberry32, values in [0, 1)) for one named purpose. The same
 * seed and name give the same sequence; concurrent users take different names so that the order in
 * which they happen to run does not shift each other's choices.
 */
export function seededRandom(name: string, seed: number = TEST_SEED): () => number {
  return mulberry32(createHash('sha256').update(`${seed}/${name}`).digest().readUInt32LE(0));
}

/** `n` bytes drawn from `random` (payloads that a seed reproduces). */
export function seededBytes(random: () => number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) out.writeUInt32LE(Math.floor(random() * 4294967296), i);
  for (; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}
