/**
 * Slow clients are dropped, legitimate ones are not (issue 8 item 4): bounded header time
 * (FERRY_HEADERS_TIMEOUT), keep-alive idle time (FERRY_KEEP_ALIVE_TIMEOUT), data gaps
 * (RS_IO_OPERATION_TIMEOUT) and connection count (FERRY_MAX_CONNECTIONS). The slowloris here is
 * bounded: loopback only, 60 sockets, a few seconds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Agent } from 'node:http';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { rawHttp } from './helpers/raw-http.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-slow-clients-token';
const MAX_CONNECTIONS = 30;
let server: TestServer | undefined;
let node: ApiNode;

before(async () => {
  server = await startTestServer('api-slow-clients', TOKEN, {
    FERRY_HEADERS_TIMEOUT: '1s',
    FERRY_KEEP_ALIVE_TIMEOUT: '1s',
    FERRY_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
    RS_IO_OPERATION_TIMEOUT: '1.5s',
    RS_IO_BATCH_TIMEOUT: '3s',
  });
  node = { url: server.ferry.url, token: TOKEN };
  assert.equal((await call(node, 'POST', '/b/slow')).status, 200);
});

after(() => stopTestServer(server));

interface Probe {
  socket: Socket;
  openedAt: number;
  closedAt?: number;
  stop(): void;
}

/** A loopback connection that sends nothing (`dripMs` undefined) or one header line every `dripMs`. */
function slowClient(port: number, dripMs?: number): Probe {
  const socket = connect(port, '127.0.0.1');
  const probe: Probe = { socket, openedAt: Date.now(), stop: () => undefined };
  socket.on('error', () => undefined);
  socket.on('close', () => (probe.closedAt = Date.now()));
  // silent ones read, so that they notice when the server closes; dripping ones never read
  // (they notice on their next write)
  if (dripMs === undefined) socket.resume();
  if (dripMs !== undefined) {
    socket.on('connect', () => {
      socket.write('GET /api/v1/alive HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      let n = 0;
      const timer = setInterval(() => {
        if (!socket.destroyed) socket.write(`x-drip-${n++}: 1\r\n`);
      }, dripMs);
      probe.stop = () => clearInterval(timer);
      socket.on('close', () => clearInterval(timer));
    });
  }
  return probe;
}

test('a bounded slowloris (silent and dripping sockets, twice the connection limit) does not lock out legitimate clients', async () => {
  const port = server!.ferry.port;
  const probes: Probe[] = [];
  for (let i = 0; i < 2 * MAX_CONNECTIONS; i++) probes.push(slowClient(port, i % 2 === 0 ? undefined : 200));
  try {
    // Legitimate clients keep being served, each on a new connection, while the sockets hang on.
    const deadline = Date.now() + 3000;
    let served = 0;
    while (Date.now() < deadline) {
      const t0 = Date.now();
      const r = await rawHttp('GET', `${node.url}/api/v1/info`, { authorization: `Bearer ${TOKEN}` }, [], {
        agent: new Agent({ keepAlive: false }),
      });
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t0 < 2000, `a legitimate request took ${Date.now() - t0} ms`);
      served++;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(served >= 10, `${served} legitimate requests served`);
    // Every slow socket is closed by the server within the header bound (plus Node's check interval).
    await waitFor(() => probes.every((p) => p.closedAt !== undefined), {
      timeoutMs: 5000,
      message: 'the server closes every slow connection',
    }).catch((e: Error) => {
      const open = probes.flatMap((p, i) => (p.closedAt === undefined ? [i] : []));
      throw new Error(`${e.message}; still open: ${open.join(',')}`);
    });
    const worst = Math.max(...probes.map((p) => p.closedAt! - p.openedAt));
    assert.ok(worst < 3500, `slow connections held for up to ${worst} ms (FERRY_HEADERS_TIMEOUT=1s)`);
  } finally {
    for (const p of probes) {
      p.stop();
      p.socket.destroy();
    }
  }
});

/** Sends `request` on a new raw connection; resolves with what came back and when the server closed it. */
async function rawExchange(request: string): Promise<{ answer: string; closedAfterMs: number }> {
  const socket = connect(server!.ferry.port, '127.0.0.1');
  let answer = '';
  let answeredAt = 0;
  socket.on('data', (c: Buffer) => {
    answer += c.toString('latin1');
    answeredAt ||= Date.now();
  });
  socket.on('error', () => undefined);
  socket.write(request);
  await new Promise((resolve) => socket.once('close', resolve));
  return { answer, closedAfterMs: Date.now() - answeredAt };
}

test('an idle keep-alive connection is closed after FERRY_KEEP_ALIVE_TIMEOUT', async () => {
  const r = await rawExchange('GET /api/v1/alive HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  assert.match(r.answer, /^HTTP\/1\.1 200/);
  assert.ok(
    r.closedAfterMs >= 500 && r.closedAfterMs < 2500,
    `closed ${r.closedAfterMs} ms after the answer`,
  );
});

test('when every connection has a request in progress, a new one is refused with 503', async () => {
  // Uploads that keep sending count as busy: they must not be evicted.
  const port = server!.ferry.port;
  const uploads: Socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      uploads.push(s);
      // One by one, each under way (100 Continue = the server is reading its body) before the next
      const continued = new Promise<void>((resolve) =>
        s.on('data', (c: Buffer) => {
          if (c.toString('latin1').startsWith('HTTP/1.1 100')) resolve();
        }),
      );
      s.write(
        `POST /api/v1/b/slow/busy-${i}?ts=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
          'Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n',
      );
      await continued;
      timers.push(setInterval(() => s.write('x'.repeat(100)), 200));
    }
    const refused = await waitFor(
      async () => {
        const r = await rawExchange('GET /api/v1/alive HTTP/1.1\r\nHost: x\r\n\r\n');
        return r.answer.startsWith('HTTP/1.1 503') && r.answer;
      },
      { timeoutMs: 5000, message: 'a 503 Too many connections' },
    );
    assert.match(refused, /x-reduct-error: Too many connections/);
    assert.ok(
      uploads.every((s) => !s.destroyed),
      'busy uploads are never evicted',
    );
  } finally {
    for (const t of timers) clearInterval(t);
    for (const s of uploads) s.destroy();
  }
  await waitFor(async () => (await call(node, 'GET', '/alive')).status === 200, { timeoutMs: 5000 });
});

test('long legitimate streams survive: an upload that keeps sending, a query read the server takes long to answer', async () => {
  // 16 pieces 250 ms apart: 4 s in all, longer than every bound, but no gap reaches one
  const pieces: Array<Buffer | number> = [];
  for (let i = 0; i < 16; i++) pieces.push(Buffer.alloc(64 * 1024, i), 250);
  const up = await rawHttp(
    'POST',
    `${node.url}/api/v1/b/slow/long?ts=1`,
    { authorization: `Bearer ${TOKEN}`, 'content-length': 16 * 64 * 1024 },
    pieces,
  );
  assert.equal(up.status, 200, String(up.headers['x-reduct-error']));
  // A continuous query with nothing to return: the server waits RS_IO_BATCH_TIMEOUT (3 s), twice
  // the data-gap bound, before it answers an empty batch. The connection must survive that.
  const q = await call(node, 'POST', '/io/slow/q', {
    query_type: 'QUERY',
    entries: ['none'],
    continuous: true,
  });
  const id = (q.json as { id: bigint }).id;
  const t0 = Date.now();
  const read = await call(node, 'GET', '/io/slow/read', undefined, {
    headers: { 'x-reduct-query-id': String(id) },
  });
  assert.ok(read.status === 200 || read.status === 204, `read ${read.status} ${read.error}`);
  assert.ok(Date.now() - t0 >= 2500, 'the server did wait');
});
