/**
 * fast-check settings shared by the property tests: every property draws from the run's test seed
 * (`seed.ts`), so a failure that fast-check reports (with its seed and shrink path) is replayed by
 * running again with the FERRY_TEST_SEED that the run printed.
 */
import fc from 'fast-check';
import { TEST_SEED } from './seed.js';

fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: TEST_SEED });
