/**
 * Runs every benchmark module in this directory (`npm run bench`): store, when and replication first,
 * then any other top-level module alphabetically. Each runs in its own process so that one
 * benchmark's memory and servers cannot influence the next. Names given as arguments restrict the
 * run (`node dist/bench/all.js store when`). Exit code 1 if any of them failed.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIRST = ['store', 'when', 'replication'];
const dir = fileURLToPath(new URL('.', import.meta.url));
const present = readdirSync(dir)
  .filter((f) => f.endsWith('.js') && f !== 'all.js')
  .map((f) => f.slice(0, -'.js'.length));
const order = [
  ...FIRST.filter((n) => present.includes(n)),
  ...present.filter((n) => !FIRST.includes(n)).sort(),
];
const wanted = process.argv.slice(2);
const modules = wanted.length > 0 ? order.filter((n) => wanted.includes(n)) : order;

let failed = 0;
for (const name of modules) {
  console.log(`\n=== bench:${name} ===`);
  const r = spawnSync(process.execPath, [fileURLToPath(new URL(`./${name}.js`, import.meta.url))], {
    stdio: 'inherit',
    env: process.env,
  });
  if (r.status !== 0) {
    failed++;
    console.log(`=== bench:${name} failed (exit ${r.status ?? r.signal}) ===`);
  }
}
if (modules.length === 0) console.log('no benchmark modules found');
process.exit(failed > 0 ? 1 : 0);
