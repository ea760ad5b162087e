/**
 * Runs every benchmark module that exists (`npm run bench`), each in its own process so that one
 * benchmark's memory and servers cannot influence the next. Exit code 1 if any of them failed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MODULES = ['store', 'when', 'replication'];

let failed = 0;
for (const name of MODULES) {
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  if (!existsSync(file)) {
    console.log(`\n=== bench:${name} — not present, skipped ===`);
    continue;
  }
  console.log(`\n=== bench:${name} ===`);
  const r = spawnSync(process.execPath, [file], { stdio: 'inherit', env: process.env });
  if (r.status !== 0) {
    failed++;
    console.log(`=== bench:${name} failed (exit ${r.status ?? r.signal}) ===`);
  }
}
process.exit(failed > 0 ? 1 : 0);
