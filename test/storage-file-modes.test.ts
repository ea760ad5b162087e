// Data files are readable by the server's user only (issue 8 item 12): files 0600, directories 0700.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { startTestServer, stopTestServer } from './helpers/test-server.js';
import { call } from './helpers/ferry-api.js';

/** Paths under `dir` that a user other than the owner could read, write or enter. */
function openToOthers(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if ((st.mode & 0o077) !== 0) out.push(`${relative(dir, p)} ${(st.mode & 0o777).toString(8)}`);
    if (st.isDirectory()) for (const q of openToOthers(p)) out.push(`${name}/${q}`);
  }
  return out;
}

test('every file and directory a server creates in its data directory is private to its user', async () => {
  // With no umask to hide it, a mode left to the default would show as world-readable.
  const umask = process.umask(0);
  const token = 'modes-token';
  const server = await startTestServer('modes', token);
  try {
    const node = { url: server.ferry.url, token };
    const ok = (r: { status: number; error: string | null }, what: string): void =>
      assert.equal(r.status, 200, `${what}: ${r.status} ${r.error ?? ''}`);
    ok(await call(node, 'POST', '/b/data'), 'bucket');
    for (let ts = 1; ts <= 5; ts++) {
      ok(
        await call(node, 'POST', `/b/data/a/b?ts=${ts}`, Buffer.from(`r${ts}`), {
          headers: { 'x-reduct-label-k': 'v' },
        }),
        'write',
      );
    }
    ok(await call(node, 'PATCH', '/b/data/a/b?ts=1', '', { headers: { 'x-reduct-label-k': 'w' } }), 'update');
    ok(
      await call(node, 'POST', '/tokens/reader', { permissions: { full_access: false, read: ['data'] } }),
      'token',
    );
    await (server.ferry.storage as unknown as { checkpoint(): Promise<void> }).checkpoint();
    await server.ferry.close();
    assert.deepEqual(openToOthers(server.dir), []);
  } finally {
    process.umask(umask);
    await stopTestServer(server).catch(() => undefined);
  }
});
