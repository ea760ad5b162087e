/** Real Ferry server child processes for tests; the implementation is shared with the benchmarks. */
export { spawnFerry, freePort } from '../../bench/lib/ferry-process.js';
export type { FerryProcess, SpawnFerryOptions } from '../../bench/lib/ferry-process.js';
