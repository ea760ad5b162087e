/**
 * Remotes through an HTTP CONNECT proxy (replication.md §5): a real proxy process on loopback
 * (test/helpers/connect-proxy.ts) between a source and its destination, with proxy credentials.
 * Records travel through the proxy's tunnels only, to a plain and to an HTTPS destination (TLS
 * inside the tunnel, the remote's own `ca`); wrong proxy credentials leave the remote down with the
 * proxy's refusal and no secret in any answer.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RemoteJson } from '../src/protocol/remotes.js';
import type { ReplicationStatus } from '../src/protocol/replication-status.js';
import { api, call, type ApiNode } from './helpers/ferry-api.js';
import { startConnectProxy, type ConnectProxy } from './helpers/connect-proxy.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { selfSignedCert } from './helpers/tls-cert.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'proxy-test-token';
const PROXY_USER = 'ferry';
const PROXY_PASSWORD = 'proxy-SECRET-5e8b';
let proxy: ConnectProxy;
let src: TestServer;
let srcNode: ApiNode;
let ts = 1_000_000;

before(async () => {
  proxy = await startConnectProxy(`${PROXY_USER}:${PROXY_PASSWORD}`);
  src = await startTestServer('proxy-src', TOKEN, { FERRY_DURABILITY: 'none' });
  srcNode = { url: src.ferry.url, token: TOKEN };
  await api(srcNode, 'POST', '/b/src');
});
after(async () => {
  await stopTestServer(src);
  await proxy?.close();
});

const proxyUrl = (password = PROXY_PASSWORD): string =>
  `http://${PROXY_USER}:${password}@127.0.0.1:${proxy.port}`;
const remote = async (name: string): Promise<RemoteJson> =>
  (await api(srcNode, 'GET', `/remotes/${name}`)) as RemoteJson;

/** Replicates entry `name` through remote `name` and waits for one record at `dst`. */
async function shipOne(
  name: string,
  dst: ApiNode,
  dispatcherOpts?: Parameters<typeof call>[4],
): Promise<void> {
  await api(srcNode, 'POST', `/replications/${name}`, {
    src_bucket: 'src',
    dst_bucket: name,
    entries: [name],
    remote: name,
    retry: { initial_ms: 20, max_ms: 200 },
  });
  const at = ts++;
  assert.equal((await call(srcNode, 'POST', `/b/src/${name}?ts=${at}`, 'through the proxy')).status, 200);
  await waitFor(
    async () => {
      const r = await call(dst, 'GET', `/b/${name}/${name}?ts=${at}`, undefined, dispatcherOpts);
      return r.status === 200 && r.text === 'through the proxy';
    },
    { timeoutMs: 15_000, message: `record at ${dst.url}` },
  );
}

test('a remote with a CONNECT proxy: probes and records go through its tunnels only', async () => {
  const dst = await startTestServer('proxy-dst', TOKEN);
  try {
    const dstNode = { url: dst.ferry.url, token: TOKEN };
    await api(srcNode, 'POST', '/remotes/plain', { url: dst.ferry.url, token: TOKEN, proxy: proxyUrl() });
    await waitFor(async () => (await remote('plain')).state === 'up', { message: 'up through the proxy' });
    await shipOne('plain', dstNode);
    const r = await remote('plain');
    assert.equal(r.proxy, `http://127.0.0.1:${proxy.port}`);
    assert.equal(r.proxy_has_credentials, true);
    assert.equal(r.identity.pinned_instance_id, dst.ferry.storage.instanceId);
    const target = `127.0.0.1:${dst.ferry.port}`;
    const tunnels = proxy.connects().filter((l) => l === `${target} 200`);
    assert.ok(tunnels.length >= 1);
    assert.equal(tunnels.length, r.pool.connections_opened, 'every connection of the pool is a tunnel');
    for (const text of [(await call(srcNode, 'GET', '/remotes')).text, JSON.stringify(r)])
      assert.ok(!text.includes(PROXY_PASSWORD), 'proxy credentials are never returned');
    assert.ok((await readFile(join(src.dir, '.ferry', 'remotes.json'), 'utf8')).includes(PROXY_PASSWORD));
    await api(srcNode, 'DELETE', '/replications/plain');
    await api(srcNode, 'DELETE', '/remotes/plain');
  } finally {
    await stopTestServer(dst);
  }
});

test("HTTPS through the proxy: TLS inside the tunnel, verified against the remote's own ca", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-proxy-tls-'));
  const tls = selfSignedCert(dir);
  if (!tls) {
    t.skip('openssl is not available');
    return;
  }
  const dst = await startTestServer('proxy-tls-dst', TOKEN, {
    RS_CERT_PATH: tls.cert,
    RS_CERT_KEY_PATH: tls.key,
  });
  try {
    const ca = await readFile(tls.cert, 'utf8');
    const { Agent } = await import('undici');
    const reader = new Agent({ connect: { ca } });
    const dstNode = { url: dst.ferry.url, token: TOKEN };
    assert.match(dst.ferry.url, /^https:/);
    // without the ca the certificate is refused, inside the tunnel
    await api(srcNode, 'POST', '/remotes/untrusted', { url: dst.ferry.url, token: TOKEN, proxy: proxyUrl() });
    const down = await waitFor(async () => {
      const r = await remote('untrusted');
      return r.state === 'down' ? r : false;
    });
    assert.match(down.last_error!.message, /certificate/i);
    await api(srcNode, 'DELETE', '/remotes/untrusted');

    await api(srcNode, 'POST', '/remotes/secure', {
      url: dst.ferry.url,
      token: TOKEN,
      proxy: proxyUrl(),
      ca,
    });
    await shipOne('secure', dstNode, { dispatcher: reader });
    assert.ok(proxy.connects().includes(`127.0.0.1:${dst.ferry.port} 200`));
    await api(srcNode, 'DELETE', '/replications/secure');
    await api(srcNode, 'DELETE', '/remotes/secure');
    await reader.close();
  } finally {
    await stopTestServer(dst);
    await rm(dir, { recursive: true, force: true });
  }
});

test("wrong proxy credentials: the remote is down with the proxy's 407, nothing shipped, no secret shown", async () => {
  const dst = await startTestServer('proxy-dst-407', TOKEN);
  try {
    const wrong = 'wrong-SECRET-0a1b';
    await api(srcNode, 'POST', '/remotes/refused', {
      url: dst.ferry.url,
      token: TOKEN,
      proxy: proxyUrl(wrong),
    });
    await api(srcNode, 'POST', '/replications/refused', {
      src_bucket: 'src',
      dst_bucket: 'refused',
      entries: ['refused'],
      remote: 'refused',
      retry: { initial_ms: 20, max_ms: 200 },
    });
    assert.equal((await call(srcNode, 'POST', `/b/src/refused?ts=${ts++}`, 'x')).status, 200);
    const r = await waitFor(async () => {
      const x = await remote('refused');
      return x.state === 'down' ? x : false;
    });
    assert.match(
      r.last_error!.message,
      /^Connection error: Proxy refused the tunnel to 127\.0\.0\.1:\d+: HTTP 407/,
    );
    const st = await waitFor(async () => {
      const s = (await api(srcNode, 'GET', '/replications/refused/status')) as ReplicationStatus;
      return s.last_error ? s : false;
    });
    assert.match(st.last_error!.message, /Proxy refused the tunnel .*HTTP 407/);
    assert.equal((await call({ url: dst.ferry.url, token: TOKEN }, 'GET', '/b/refused')).status, 404);
    for (const text of [JSON.stringify(r), JSON.stringify(st)]) assert.ok(!text.includes(wrong));
    await api(srcNode, 'DELETE', '/replications/refused');
    await api(srcNode, 'DELETE', '/remotes/refused');
  } finally {
    await stopTestServer(dst);
  }
});
