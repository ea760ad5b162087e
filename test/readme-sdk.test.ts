/**
 * The README's SDK example runs as written: the `js` block of "## SDK (`ferry/client`)" is saved in
 * the package (so that `ferry/client` resolves as it does in a clone) and run against a real server
 * with the quick start's token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnFerry } from './helpers/ferry-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('the README SDK example runs and prints what it says', async () => {
  const text = await readFile(join(root, 'README.md'), 'utf8');
  const start = text.indexOf('\n## SDK (`ferry/client`)\n');
  assert.ok(start >= 0, 'README has the SDK section');
  const end = text.indexOf('\n## ', start + 1);
  const block = /^```js\n([\s\S]*?)^```$/m.exec(text.slice(start, end < 0 ? undefined : end));
  assert.ok(block, 'the SDK section has a js block');
  const server = await spawnFerry({ token: 'my-token' });
  const dir = await mkdtemp(join(root, 'dist', 'readme-sdk-'));
  try {
    await writeFile(join(dir, 'sdk.mjs'), block[1]!);
    const r = spawnSync(process.execPath, [join(dir, 'sdk.mjs')], {
      env: { PATH: process.env.PATH, FERRY_URL: server.url },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'refused by the server: 0');
    assert.match(lines[1]!, /^good: \d+n 21\.5$/);
    assert.match(lines[2]!, /^good: \d+n 21\.7$/);
    assert.equal(lines.filter((l) => l.startsWith('copied:')).length, 2);
    assert.ok(
      lines.every((l) => !l.includes('99.9')),
      'the bad reading is neither queried nor copied',
    );
    assert.equal(lines.at(-1), "404 Bucket 'no-such-bucket' is not found");
  } finally {
    await rm(dir, { recursive: true, force: true });
    await server.destroy();
  }
});
