/**
 * Where a test run's seed comes from: FERRY_TEST_SEED, else a fixed seed under CI=true, else a random
 * one. Free of side effects, so that `scripts/run-tests.mjs` can resolve the seed it prints and hands
 * to every test process (see `seed.ts`).
 */
import { randomInt } from 'node:crypto';

/** Seed used under CI=true when FERRY_TEST_SEED is not set, so that a CI run is repeatable. */
export const CI_SEED = 20261122;

/** A run's seed and where it came from. */
export interface ResolvedSeed {
  seed: number;
  from: 'FERRY_TEST_SEED' | 'fixed under CI' | 'drawn';
}

/** Reads FERRY_TEST_SEED (an integer from 0 to 2^32-1) or picks a seed; throws on an invalid value. */
export function resolveSeed(env: NodeJS.ProcessEnv = process.env): ResolvedSeed {
  const text = env.FERRY_TEST_SEED;
  if (text === undefined || text === '') {
    return env.CI ? { seed: CI_SEED, from: 'fixed under CI' } : { seed: randomInt(2 ** 31), from: 'drawn' };
  }
  if (!/^\d+$/.test(text) || Number(text) >= 2 ** 32) {
    throw new Error(`FERRY_TEST_SEED must be an integer from 0 to 2^32-1, got '${text}'`);
  }
  return { seed: Number(text), from: 'FERRY_TEST_SEED' };
}
