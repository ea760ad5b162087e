/**
 * Every route authenticates and authorises before it reads a body (issue 8 item 3): strangers'
 * uploads are answered 401 at once, the server stops reading them after a few KiB, and `/alive`
 * stays fast while ten 16 MB JSON bodies are thrown at the query routes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-auth-first-token';
let server: TestServer | undefined;
let node: ApiNode;
let port: number;
let otherToken: string;

const BODY_BYTES = 16_000_000;
/** A QueryEntry of 16 MB: valid JSON that takes the parser a long time. */
const BIG_JSON = (() => {
  const head = '{"query_type":"QUERY","entries":[';
  const item = '"a",';
  const count = Math.floor((BODY_BYTES - head.length - 5) / item.length);
  const text = head + item.repeat(count) + '"a"]}';
  return Buffer.from(text.padEnd(BODY_BYTES, ' '));
})();

before(async () => {
  server = await startTestServer('api-auth-first', TOKEN);
  node = { url: server.ferry.url, token: TOKEN };
  port = server.ferry.port;
  assert.equal((await call(node, 'POST', '/b/af')).status, 200);
  assert.equal((await call(node, 'POST', '/b/af/e?ts=1', 'x')).status, 200);
  const created = await call(node, 'POST', '/tokens/other', { permissions: { read: ['elsewhere'] } });
  otherToken = (created.json as { value: string }).value;
});

after(() => stopTestServer(server));

interface Upload {
  status: number;
  /** ms from the first header byte to the first answer byte */
  answeredAfterMs: number;
  /** the answer came before the last body byte was handed to the socket */
  answeredBeforeSent: boolean;
  /** every body byte was accepted by the connection */
  sentAll: boolean;
}

/**
 * Sends `POST path` with BIG_JSON in 1 MB pieces, `pauseMs` apart, over a raw socket and watches
 * when the answer arrives relative to the body.
 */
async function upload(
  path: string,
  headers: Record<string, string>,
  pauseMs: number,
  method = 'POST',
): Promise<Upload> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const started = Date.now();
  let answer = '';
  let answeredAt: number | undefined;
  let closed = false;
  socket.on('data', (c: Buffer) => {
    answeredAt ??= Date.now();
    answer += c.toString('latin1');
  });
  socket.on('error', () => undefined);
  // events.once() would reject on the ECONNRESET that the cut causes: listen plainly
  const closedP = new Promise<void>((resolve) =>
    socket.on('close', () => {
      closed = true;
      resolve();
    }),
  );
  const head =
    `${method} ${path.startsWith('/api/') || path === '/' ? path : `/api/v1${path}`} HTTP/1.1\r\n` +
    'Host: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    `Content-Length: ${BIG_JSON.length}\r\n\r\n`;
  socket.write(head);
  const piece = 1_000_000;
  let sentAll = true;
  for (let off = 0; off < BIG_JSON.length; off += piece) {
    if (closed || socket.destroyed) {
      sentAll = false;
      break;
    }
    if (!socket.write(BIG_JSON.subarray(off, off + piece))) {
      await Promise.race([once(socket, 'drain').catch(() => undefined), closedP]);
    }
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
  const sentAt = Date.now();
  if (closed || socket.destroyed) sentAll = false;
  // wait for the answer (the server may keep the connection open after a complete exchange)
  const deadline = Date.now() + 60_000;
  while (!/\r\n\r\n/.test(answer) && !closed && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  socket.destroy();
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
  return {
    status,
    answeredAfterMs: (answeredAt ?? Date.now()) - started,
    answeredBeforeSent: answeredAt !== undefined && answeredAt < sentAt,
    sentAll,
  };
}

for (const path of ['/io/af/q', '/b/af/e/q']) {
  test(`POST ${path}: 401 / 403 before the body is read, the stranger's upload is cut`, async () => {
    for (const [headers, status] of [
      [{}, 401],
      [{ authorization: 'Bearer wrong-token' }, 401],
      [{ authorization: `Bearer ${otherToken}` }, 403],
    ] as Array<[Record<string, string>, number]>) {
      const r = await upload(path, headers, 25);
      assert.equal(r.status, status, JSON.stringify(r));
      assert.ok(r.answeredBeforeSent, `answered before the client finished sending: ${JSON.stringify(r)}`);
      if (status === 401) assert.equal(r.sentAll, false, 'the server stopped reading the stranger');
    }
  });
}

test("anonymous routes (preflight, /, /alive) read no more of a stranger's body either", async () => {
  for (const [method, path] of [
    ['OPTIONS', '/b/af'],
    ['GET', '/'],
    ['GET', '/alive'],
  ] as const) {
    const r = await upload(path, {}, 25, method);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r)}`);
    assert.equal(r.sentAll, false, `${method} ${path}: the server stopped reading`);
  }
});

test('/alive stays fast while ten unauthenticated 16 MB JSON bodies hit the query routes', async () => {
  const uploads = Array.from({ length: 10 }, (_, i) => upload(i % 2 ? '/io/af/q' : '/b/af/e/q', {}, 0));
  const latencies: number[] = [];
  let done = false;
  const all = Promise.all(uploads).finally(() => (done = true));
  while (!done) {
    const t0 = Date.now();
    assert.equal((await call({ url: node.url, token: '' }, 'GET', '/alive')).status, 200);
    latencies.push(Date.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  const results = await all;
  for (const r of results) assert.equal(r.status, 401, JSON.stringify(r));
  const worst = Math.max(...latencies);
  assert.ok(worst < 1500, `/alive latencies ${latencies.join(',')} ms (worst ${worst})`);
  // and the server still serves its users
  assert.equal((await call(node, 'POST', '/io/af/q', { query_type: 'QUERY' })).status, 200);
});
