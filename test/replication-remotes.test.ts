/**
 * Remotes (replication.md §5, issue 10 item 1) on in-process servers: CRUD with every field
 * validated, secrets never echoed (answers, errors, status, logs) and kept in a 0600 file that
 * survives a restart, replications that name a remote, probe states of a live, a stopped and a
 * black-holed destination, identity pinning against another Ferry started on the same port,
 * one connection pool shared by several replications, delete refused while in use.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RemoteJson, RemoteList } from '../src/protocol/remotes.js';
import type { ReplicationStatus } from '../src/protocol/replication-status.js';
import { RemoteRegistry } from '../src/replication/remotes.js';
import type { RunningFerry } from '../src/server.js';
import { api, call, type ApiNode } from './helpers/ferry-api.js';
import { freePort } from './helpers/ferry-process.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { startFerryIn, startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const SRC_TOKEN = 'remotes-src-token';
const DST_TOKEN = 'remotes-dst-SECRET-4f1c9a';
const PROXY_SECRET = 'proxy-pass-SECRET-77d2';
/** Fast retries, so that a test does not wait for the default backoff. */
const FAST_RETRY = { retry: { initial_ms: 20, max_ms: 100 } };

let srcDir: string;
let src: RunningFerry;
let srcNode: ApiNode;
const srcLog: string[] = [];
let dst: TestServer;
let dstNode: ApiNode;
let ts = 1_000_000;

async function startSource(): Promise<void> {
  src = await startFerryIn(srcDir, SRC_TOKEN, { FERRY_DURABILITY: 'none' }, (line) => srcLog.push(line));
  srcNode = { url: src.url, token: SRC_TOKEN };
}

before(async () => {
  srcDir = await mkdtemp(join(tmpdir(), 'ferry-remotes-src-'));
  await startSource();
  dst = await startTestServer('remotes-dst', DST_TOKEN);
  dstNode = { url: dst.ferry.url, token: DST_TOKEN };
  await api(srcNode, 'POST', '/b/src');
});
after(async () => {
  await src?.close();
  await stopTestServer(dst);
  await rm(srcDir, { recursive: true, force: true });
});

const remote = async (name: string): Promise<RemoteJson> =>
  (await api(srcNode, 'GET', `/remotes/${name}`)) as RemoteJson;
const status = async (name: string): Promise<ReplicationStatus> =>
  (await api(srcNode, 'GET', `/replications/${name}/status`)) as ReplicationStatus;

async function write(entry: string, body = 'payload'): Promise<bigint> {
  const at = BigInt(ts++);
  const r = await call(srcNode, 'POST', `/b/src/${entry}?ts=${at}`, body);
  assert.equal(r.status, 200, String(r.error));
  return at;
}

/** Waits until `node` holds record `entry@at` in bucket `bucket` with `body`. */
async function arrived(
  node: ApiNode,
  bucket: string,
  entry: string,
  at: bigint,
  body = 'payload',
): Promise<void> {
  await waitFor(
    async () => {
      const r = await call(node, 'GET', `/b/${bucket}/${entry}?ts=${at}`);
      return r.status === 200 && r.text === body;
    },
    { timeoutMs: 15_000, message: `${entry}@${at} at ${node.url}` },
  );
}

test('remote CRUD: every field validated (422 naming it), list sorted, PUT keeps the token, 404 and 409', async () => {
  const ok = { url: dst.ferry.url, token: DST_TOKEN };
  assert.equal((await call(srcNode, 'POST', '/remotes/crud-b', ok)).status, 200);
  assert.equal((await call(srcNode, 'POST', '/remotes/crud-a', { url: `${dst.ferry.url}/` })).status, 200);
  const dup = await call(srcNode, 'POST', '/remotes/crud-a', ok);
  assert.equal(dup.status, 409);
  assert.equal(dup.error, "Remote 'crud-a' already exists");

  const bad: Array<[unknown, string]> = [
    [{}, "Invalid remote setting 'url': is required"],
    [{ url: 'ftp://x' }, "Invalid remote setting 'url': must start with http:// or https://"],
    [{ url: `http://user:${DST_TOKEN}@h:1` }, "Invalid remote setting 'url': must not contain credentials"],
    [{ url: 'http://h:1/?q=1' }, "Invalid remote setting 'url': must not have a query or a fragment"],
    [{ url: `http://${'h'.repeat(3000)}` }, "Invalid remote setting 'url': must be at most 2048 characters"],
    [{ url: 'http://h:1', token: 'has space' }, "Invalid remote setting 'token': must be printable ASCII"],
    [{ url: 'http://h:1', token: 'x'.repeat(5000) }, "Invalid remote setting 'token': must be at most 4096"],
    [{ url: 'http://h:1', proxy: 'https://p:1' }, "Invalid remote setting 'proxy': must start with http://"],
    [{ url: 'http://h:1', proxy: 'http://p:1/path' }, "Invalid remote setting 'proxy': must be http://"],
    [
      { url: 'http://h:1', connect_timeout_ms: 0 },
      "Invalid remote setting 'connect_timeout_ms': must be an integer between 1 and 3600000",
    ],
    [
      { url: 'http://h:1', request_timeout_ms: 1.5 },
      "Invalid remote setting 'request_timeout_ms': must be an integer",
    ],
    [
      { url: 'http://h:1', request_timeout_ms: 3_600_001 },
      "Invalid remote setting 'request_timeout_ms': must be an integer",
    ],
    [{ url: 'http://h:1', verify_tls: 'yes' }, "Invalid remote setting 'verify_tls': must be a boolean"],
    [
      { url: 'http://h:1', ca: 'not a certificate' },
      "Invalid remote setting 'ca': must contain PEM certificates",
    ],
    [
      { url: 'http://h:1', ca: `-----BEGIN CERTIFICATE-----${'A'.repeat(70_000)}` },
      "Invalid remote setting 'ca': must be at most 65536",
    ],
    [{ url: 'http://h:1', colour: 'red' }, "Invalid remote setting 'colour': unknown field"],
  ];
  for (const [body, message] of bad) {
    const r = await call(srcNode, 'POST', '/remotes/crud-bad', body);
    assert.equal(r.status, 422, `${JSON.stringify(body).slice(0, 80)}: ${r.error}`);
    assert.ok(r.error?.startsWith(message), `${r.error} should start with ${message}`);
    assert.ok(!r.error!.includes(DST_TOKEN) && !r.text.includes(DST_TOKEN), 'a refused secret is not echoed');
  }
  const badName = await call(srcNode, 'POST', '/remotes/bad%20name', ok);
  assert.equal(badName.status, 422);
  assert.equal((await call(srcNode, 'GET', '/remotes/crud-bad')).status, 404);
  assert.equal((await call(srcNode, 'GET', '/remotes/crud-bad')).error, "Remote 'crud-bad' does not exist");

  const list = (await api(srcNode, 'GET', '/remotes')) as RemoteList;
  assert.deepEqual(
    list.remotes.map((r) => r.name).filter((n) => n.startsWith('crud-')),
    ['crud-a', 'crud-b'],
  );
  const b = await remote('crud-b');
  assert.equal(b.url, dst.ferry.url);
  assert.equal(b.has_token, true);
  assert.equal((await remote('crud-a')).url, dst.ferry.url, 'a trailing slash is dropped');
  assert.equal((await remote('crud-a')).has_token, false);
  assert.equal(b.connect_timeout_ms, 5000);
  assert.equal(b.verify_tls, true);

  // PUT: the token is kept when omitted, removed with "", every other field replaced
  assert.equal(
    (await call(srcNode, 'PUT', '/remotes/crud-b', { url: dst.ferry.url, request_timeout_ms: 1234 })).status,
    200,
  );
  assert.equal((await remote('crud-b')).has_token, true);
  assert.equal((await remote('crud-b')).request_timeout_ms, 1234);
  assert.equal(
    (await call(srcNode, 'PUT', '/remotes/crud-b', { url: dst.ferry.url, token: '' })).status,
    200,
  );
  assert.equal((await remote('crud-b')).has_token, false);
  assert.equal((await call(srcNode, 'PUT', '/remotes/crud-none', ok)).status, 404);

  assert.equal((await call(srcNode, 'DELETE', '/remotes/crud-a')).status, 200);
  assert.equal((await call(srcNode, 'DELETE', '/remotes/crud-b')).status, 200);
  assert.equal((await call(srcNode, 'DELETE', '/remotes/crud-b')).status, 404);
  assert.equal((await call(srcNode, 'DELETE', '/remotes/crud-x?force=maybe')).status, 422);
});

test('a replication names a remote: records arrive, status shows the remote; with dst_host it is a 422, an unknown remote a 422', async () => {
  await api(srcNode, 'POST', '/remotes/main', { url: dst.ferry.url, token: DST_TOKEN });
  const both = await call(srcNode, 'POST', '/replications/both', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: dst.ferry.url,
    remote: 'main',
  });
  assert.equal(both.status, 422);
  assert.match(
    both.error!,
    /^Invalid replication setting 'remote': can't be combined with 'dst_host' or 'dst_token'/,
  );
  const withToken = await call(srcNode, 'POST', '/replications/both', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_token: DST_TOKEN,
    remote: 'main',
  });
  assert.equal(withToken.status, 422);
  assert.ok(!withToken.text.includes(DST_TOKEN) && !withToken.error!.includes(DST_TOKEN));
  const unknown = await call(srcNode, 'POST', '/replications/unknown', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    remote: 'nowhere',
  });
  assert.equal(unknown.status, 422);
  assert.equal(unknown.error, "Invalid replication setting 'remote': remote 'nowhere' does not exist");

  await api(srcNode, 'POST', '/replications/via-main', {
    src_bucket: 'src',
    dst_bucket: 'via-main',
    entries: ['main'],
    remote: 'main',
    ...FAST_RETRY,
  });
  const at = await write('main');
  await arrived(dstNode, 'via-main', 'main', at);
  const st = await status('via-main');
  assert.equal(st.remote?.name, 'main');
  assert.equal(st.destination.host, dst.ferry.url);
  const r = await remote('main');
  assert.deepEqual(r.replications, ['via-main']);
  await waitFor(async () => (await remote('main')).state === 'up', { message: 'remote up' });
  assert.equal((await status('via-main')).remote?.state, 'up');
  const detail = (await api(srcNode, 'GET', '/replications/via-main')) as {
    settings: Record<string, unknown>;
  };
  assert.equal(detail.settings.dst_token, null);

  // no secret in any answer or log line that mentions the remote
  const texts = [
    (await call(srcNode, 'GET', '/remotes')).text,
    (await call(srcNode, 'GET', '/remotes/main')).text,
    (await call(srcNode, 'GET', '/replications/via-main')).text,
    (await call(srcNode, 'GET', '/replications/via-main/status')).text,
    (await call(srcNode, 'GET', '/replications')).text,
    (await call(srcNode, 'GET', '/active_tasks')).text,
    srcLog.join('\n'),
  ];
  for (const t of texts) assert.ok(!t.includes(DST_TOKEN), `secret echoed in ${t.slice(0, 200)}`);
  await api(srcNode, 'DELETE', '/replications/via-main');
  await api(srcNode, 'DELETE', '/remotes/main');
});

test('remotes survive a restart in a 0600 file, with their token and pinned identity', async () => {
  await api(srcNode, 'POST', '/remotes/kept', {
    url: dst.ferry.url,
    token: DST_TOKEN,
    proxy: `http://user:${PROXY_SECRET}@127.0.0.1:1`,
  });
  await api(srcNode, 'PUT', '/remotes/kept', { url: dst.ferry.url }); // no proxy; token kept
  await waitFor(async () => (await remote('kept')).identity.pinned_instance_id, { message: 'pinned' });
  const before = await remote('kept');
  assert.equal(before.identity.pinned_instance_id, dst.ferry.storage.instanceId);
  const file = join(srcDir, '.ferry', 'remotes.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);

  await src.close();
  await startSource();
  const after = await remote('kept');
  assert.equal(after.has_token, true);
  assert.equal(after.identity.pinned_instance_id, before.identity.pinned_instance_id);
  assert.equal(after.identity.pinned_at, before.identity.pinned_at);
  await api(srcNode, 'POST', '/replications/after-restart', {
    src_bucket: 'src',
    dst_bucket: 'after-restart',
    entries: ['kept'],
    remote: 'kept',
    ...FAST_RETRY,
  });
  const at = await write('kept');
  await arrived(dstNode, 'after-restart', 'kept', at); // the stored token still works
  assert.ok(!(await readFile(file, 'utf8')).includes(PROXY_SECRET), 'a replaced proxy secret is gone');
  await api(srcNode, 'DELETE', '/replications/after-restart');
  await api(srcNode, 'DELETE', '/remotes/kept');
});

test('deleting a remote in use is refused (409) unless forced; its replications then wait for it', async () => {
  await api(srcNode, 'POST', '/remotes/used', { url: dst.ferry.url, token: DST_TOKEN });
  for (const name of ['used-1', 'used-2'])
    await api(srcNode, 'POST', `/replications/${name}`, {
      src_bucket: 'src',
      dst_bucket: name,
      entries: [name],
      remote: 'used',
      ...FAST_RETRY,
    });
  const refused = await call(srcNode, 'DELETE', '/remotes/used');
  assert.equal(refused.status, 409);
  assert.equal(
    refused.error,
    "Remote 'used' is used by replication 'used-1', 'used-2'; remove or change them first, or delete with ?force=true",
  );
  assert.equal((await remote('used')).state !== undefined, true, 'still there');
  assert.equal((await call(srcNode, 'DELETE', '/remotes/used?force=true')).status, 200);
  const at = await write('used-1');
  const st = await waitFor(async () => {
    const s = await status('used-1');
    return s.state === 'retrying' ? s : false;
  });
  assert.match(st.last_error!.message, /Remote 'used' does not exist/);
  assert.equal(st.remote?.name, 'used');
  // created again under the same name: the replication goes on by itself
  await api(srcNode, 'POST', '/remotes/used', { url: dst.ferry.url, token: DST_TOKEN });
  await arrived(dstNode, 'used-1', 'used-1', at);
  for (const name of ['used-1', 'used-2']) await api(srcNode, 'DELETE', `/replications/${name}`);
  assert.equal((await call(srcNode, 'DELETE', '/remotes/used')).status, 200);
});

test('one pool per remote: the prober and three replications share its keep-alive connections', async () => {
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: dst.ferry.port });
  try {
    await api(srcNode, 'POST', '/remotes/shared', {
      url: `http://127.0.0.1:${proxy.port}`,
      token: DST_TOKEN,
    });
    await waitFor(async () => (await remote('shared')).state === 'up', { message: 'shared up' });
    const names = ['shared-1', 'shared-2', 'shared-3'];
    for (const name of names)
      await api(srcNode, 'POST', `/replications/${name}`, {
        src_bucket: 'src',
        dst_bucket: name,
        entries: [name],
        remote: 'shared',
        batch: { max_in_flight: 1 },
        ...FAST_RETRY,
      });
    // one after the other, so that the pool has idle connections for the next one: the first
    // replication may open a connection of its own, the others open none
    let afterFirst = 0;
    for (const name of names) {
      const at = await write(name);
      await arrived(dstNode, name, name, at);
      afterFirst ||= proxy.stats().connections;
    }
    const r = await remote('shared');
    assert.deepEqual(r.replications, names);
    assert.equal(proxy.stats().connections, afterFirst, 'the 2nd and 3rd replications reuse the pool');
    assert.ok(afterFirst <= 2, `${afterFirst} connections`);
    assert.equal(r.pool.connections_opened, proxy.stats().connections, 'every connection is of the one pool');
    for (const name of names) await api(srcNode, 'DELETE', `/replications/${name}`);
    await api(srcNode, 'DELETE', '/remotes/shared');
  } finally {
    await proxy.close();
  }
});

/** A listener that accepts connections and never answers. */
async function blackHole(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

test('probe states: up for a live destination, down for a stopped one and for a black hole (timeout)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-remotes-probe-'));
  const hole = await blackHole();
  const stoppedPort = await freePort();
  const flaky = await startFaultProxy({ host: '127.0.0.1', port: dst.ferry.port });
  const registry = await RemoteRegistry.open({
    dataPath: dir,
    sync: false,
    defaults: { timeoutMs: 5000, verifyTls: true },
    probeIntervalMs: 0, // no background probe: the test probes
  });
  try {
    await registry.create('live', { url: dst.ferry.url, token: DST_TOKEN });
    await registry.create('stopped', { url: `http://127.0.0.1:${stoppedPort}`, connect_timeout_ms: 500 });
    await registry.create('hole', { url: `http://127.0.0.1:${hole.port}`, request_timeout_ms: 300 });
    for (const n of ['live', 'stopped', 'hole']) assert.equal(registry.get(n).state, 'unknown');
    await Promise.all(['live', 'stopped', 'hole'].map((n) => registry.probeNow(n)));

    const live = registry.get('live');
    assert.equal(live.state, 'up', JSON.stringify(live.last_error));
    assert.equal(live.instance_id, dst.ferry.storage.instanceId);
    assert.match(live.version!, /^\d+\.\d+/);
    assert.ok(live.rtt_ms !== null && live.rtt_ms >= 0 && live.rtt_ms < 2500);
    assert.equal(live.last_error, null);
    assert.ok(live.last_ok_at !== null);

    const stopped = registry.get('stopped');
    assert.equal(stopped.state, 'down');
    assert.match(stopped.last_error!.message, /ECONNREFUSED/);
    assert.ok(!Number.isNaN(Date.parse(stopped.last_error!.at)));
    assert.equal(stopped.instance_id, null);

    const holed = registry.get('hole');
    assert.equal(holed.state, 'down');
    assert.match(holed.last_error!.message, /^Timeout/);

    // a flapping link: up, down, then degraded while the failure is among the last probes
    await registry.update('hole', { url: `http://127.0.0.1:${flaky.port}`, token: DST_TOKEN });
    await registry.probeNow('hole');
    assert.equal(registry.get('hole').state, 'up', 'new settings start a fresh history');
    flaky.setMode('reset');
    await registry.probeNow('hole');
    assert.equal(registry.get('hole').state, 'down');
    flaky.setMode('pass');
    await registry.probeNow('hole');
    assert.equal(registry.get('hole').state, 'degraded');
    assert.ok(registry.get('hole').last_error !== null, 'the last error stays visible');
    // a refused token: down, with the destination's message
    const token = await call(dstNode, 'GET', '/info', undefined, {
      headers: { authorization: 'Bearer wrong' },
    });
    assert.equal(token.status, 401);
    await registry.update('live', { url: dst.ferry.url, token: 'wrong-token' });
    await registry.probeNow('live');
    assert.equal(registry.get('live').state, 'down');
    assert.match(registry.get('live').last_error!.message, /^HTTP 401/);
  } finally {
    await registry.close();
    await flaky.close();
    await hole.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('identity pinning: another Ferry on the same port gets nothing until the remote is re-pinned', async () => {
  const port = await freePort();
  const dirA = await mkdtemp(join(tmpdir(), 'ferry-remotes-a-'));
  const dirB = await mkdtemp(join(tmpdir(), 'ferry-remotes-b-'));
  const env = { RS_PORT: String(port), FERRY_DURABILITY: 'none' };
  let a: RunningFerry | undefined = await startFerryIn(dirA, DST_TOKEN, env);
  let b: RunningFerry | undefined;
  try {
    const url = `http://127.0.0.1:${port}`;
    await api(srcNode, 'POST', '/remotes/pinned', { url, token: DST_TOKEN });
    await api(srcNode, 'POST', '/replications/pinned', {
      src_bucket: 'src',
      dst_bucket: 'pinned',
      entries: ['pinned'],
      remote: 'pinned',
      ...FAST_RETRY,
    });
    const first = await write('pinned', 'to-a');
    const aNode = { url, token: DST_TOKEN };
    await arrived(aNode, 'pinned', 'pinned', first, 'to-a');
    assert.equal((await remote('pinned')).identity.pinned_instance_id, a.storage.instanceId);

    // A goes away; B, another instance, takes its port
    await a.close();
    a = undefined;
    b = await startFerryIn(dirB, DST_TOKEN, env);
    const bId = b.storage.instanceId;
    const second = await write('pinned', 'to-b');
    const st = await waitFor(
      async () => {
        const s = await status('pinned');
        return s.last_error?.message.includes('remote identity mismatch') ? s : false;
      },
      { timeoutMs: 15_000, message: 'mismatch in the replication status' },
    );
    assert.equal(st.remote?.identity_mismatch, true);
    assert.equal(st.remote?.state, 'down');
    assert.ok(st.pending_records >= 1);
    const r = await remote('pinned');
    assert.equal(r.identity.mismatch, true);
    assert.equal(r.identity.seen_instance_id, bId);
    assert.equal(r.state, 'down');
    assert.match(r.last_error!.message, /^remote identity mismatch: remote 'pinned' is pinned to instance /);
    // nothing reached B: not even the bucket
    const bNode = { url, token: DST_TOKEN };
    assert.equal((await call(bNode, 'GET', '/b/pinned')).status, 404);

    // an explicit re-pin to a wrong id keeps refusing; re-pinning B lets the records go
    const wrong = (await api(srcNode, 'POST', '/remotes/pinned/pin', { instance_id: 'not-b' })) as RemoteJson;
    assert.equal(wrong.identity.pinned_instance_id, 'not-b');
    assert.equal(wrong.identity.mismatch, true);
    assert.equal((await call(bNode, 'GET', '/b/pinned')).status, 404);
    const repinned = (await api(srcNode, 'POST', '/remotes/pinned/pin')) as RemoteJson;
    assert.equal(repinned.identity.pinned_instance_id, bId);
    assert.equal(repinned.identity.mismatch, false);
    await arrived(bNode, 'pinned', 'pinned', second, 'to-b');
    await api(srcNode, 'DELETE', '/replications/pinned');
    await api(srcNode, 'DELETE', '/remotes/pinned');
  } finally {
    await a?.close();
    await b?.close();
    await rm(dirA, { recursive: true, force: true });
    await rm(dirB, { recursive: true, force: true });
  }
});
