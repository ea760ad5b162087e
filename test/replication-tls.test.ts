/**
 * Replication to an HTTPS destination (api.md §18, §20.5): certificates are verified by default,
 * `RS_REPLICATION_CA_PATH` adds a trusted CA, `RS_REPLICATION_VERIFY_SSL=false` turns checks off.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { startFerry, type RunningFerry } from '../src/server.js';
import { call as apiCall, type CallResult } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';
import { selfSignedCert } from './helpers/tls-cert.js';

const TOKEN = 'tls-test-token';
const running: RunningFerry[] = [];
let dir = '';

after(async () => {
  for (const f of running) await f.close();
  await agent?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(name: string, env: Record<string, string>): Promise<RunningFerry> {
  const f = await startFerry(
    loadConfig({
      RS_DATA_PATH: join(dir, name),
      RS_API_TOKEN: TOKEN,
      RS_HOST: '127.0.0.1',
      RS_PORT: '0',
      RS_SYSTEM_EVENTS_ENABLED: 'false',
      ...env,
    }),
    { log: () => undefined },
  );
  running.push(f);
  return f;
}

/** HTTP client for the test itself; trusts the test certificate once it exists. */
let agent: Agent | undefined;

/** `call` of ferry-api.ts with the test's token and agent. */
function call(
  f: RunningFerry,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<CallResult> {
  return apiCall({ url: f.url, token: TOKEN }, method, path, body, {
    headers,
    ...(agent && { dispatcher: agent }),
  });
}

test('replication to an HTTPS destination verifies its certificate, trusts a configured CA, or skips checks when told', async (t) => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-repl-tls-'));
  const tls = selfSignedCert(dir);
  if (!tls) {
    t.skip('openssl is not available');
    return;
  }
  const { cert, key } = tls;
  agent = new Agent({ connect: { ca: readFileSync(cert, 'utf8') } });
  const dst = await start('dst', { RS_CERT_PATH: cert, RS_CERT_KEY_PATH: key });
  assert.ok(dst.url.startsWith('https://'));
  const dstUrl = dst.url;

  const sources = {
    trusted: await start('trusted', { RS_REPLICATION_CA_PATH: cert }),
    strict: await start('strict', {}),
    unchecked: await start('unchecked', { RS_REPLICATION_VERIFY_SSL: 'false' }),
  };
  for (const [name, src] of Object.entries(sources)) {
    assert.equal((await call(src, 'POST', '/b/src')).status, 200);
    const created = await call(src, 'POST', '/replications/r', {
      src_bucket: 'src',
      dst_bucket: name,
      dst_host: dstUrl,
      dst_token: TOKEN,
    });
    assert.equal(created.status, 200, created.text);
    const w = await call(src, 'POST', '/b/src/e?ts=1000', Buffer.from('secret'), {
      'content-type': 'text/plain',
    });
    assert.equal(w.status, 200);
  }

  const arrived = async (bucket: string): Promise<boolean> =>
    (await call(dst, 'GET', `/b/${bucket}/e?ts=1000`)).text === 'secret';
  await waitFor(() => arrived('trusted'), {
    timeoutMs: 10_000,
    message: 'record over TLS with a trusted CA',
  });
  await waitFor(() => arrived('unchecked'), { timeoutMs: 10_000, message: 'record with verification off' });

  // Without the CA the self-signed certificate is refused: nothing arrives, and the status says why.
  const status = await waitFor(
    async () => {
      const s = (await call(sources.strict, 'GET', '/replications/r/status')).json as {
        pending_records: number;
        last_error: { message: string } | null;
      };
      return s.last_error ? s : undefined;
    },
    { timeoutMs: 10_000, message: 'a TLS error in the status' },
  );
  assert.match(status.last_error!.message, /certificate|self.signed|SSL|TLS/i);
  assert.equal(status.pending_records, 1);
  assert.equal((await call(dst, 'GET', '/b/strict')).status, 404);
});
