import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { startFaultProxy, type FaultProxy, type FaultProxyOptions } from './helpers/fault-proxy.js';
import { ManualClock } from './helpers/manual-clock.js';
import { waitFor } from './helpers/wait.js';

interface Echo {
  server: Server;
  port: number;
  received: () => number;
  accepted: () => number;
  sockets: Set<Socket>;
}

async function startEcho(): Promise<Echo> {
  let received = 0;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    accepted++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length;
      sock.write(chunk);
    });
    sock.on('end', () => sock.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { server, port: addr.port, received: () => received, accepted: () => accepted, sockets };
}

async function withSetup(
  fn: (echo: Echo, proxy: FaultProxy) => Promise<void>,
  options: FaultProxyOptions = {},
): Promise<void> {
  const echo = await startEcho();
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: echo.port }, options);
  try {
    await fn(echo, proxy);
  } finally {
    await proxy.close();
    for (const sock of echo.sockets) sock.destroy();
    await new Promise<void>((resolve) => echo.server.close(() => resolve()));
  }
}

/** Connects to the proxy and collects whatever comes back. */
async function open(port: number): Promise<{
  sock: Socket;
  data: () => string;
  error: () => NodeJS.ErrnoException | undefined;
  closed: Promise<void>;
}> {
  const sock = connect(port, '127.0.0.1');
  let data = '';
  let error: NodeJS.ErrnoException | undefined;
  sock.setEncoding('utf8');
  sock.on('data', (s: string) => (data += s));
  sock.on('error', (e: NodeJS.ErrnoException) => (error = e));
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return { sock, data: () => data, error: () => error, closed };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('pass mode forwards both ways and counts bytes', async () => {
  await withSetup(async (_echo, proxy) => {
    const c = await open(proxy.port);
    c.sock.write('hello proxy');
    await waitFor(() => c.data() === 'hello proxy', { message: 'echo through proxy' });
    c.sock.end();
    await c.closed;
    const s = proxy.stats();
    assert.equal(s.connections, 1);
    assert.equal(s.bytesUp, 11);
    assert.equal(s.bytesDown, 11);
    assert.equal(s.resets, 0);
  });
});

test('HTTP requests work through the proxy with keep-alive', async () => {
  const server = createHttpServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(`got ${n}`));
  });
  let upstreamConnections = 0;
  server.on('connection', () => upstreamConnections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: addr.port });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${proxy.port}/x`, { method: 'POST', body: 'x'.repeat(100) });
      assert.equal(await res.text(), 'got 100');
    }
    assert.equal(
      proxy.stats().connections,
      upstreamConnections,
      'one upstream connection per client connection',
    );
    assert.ok(upstreamConnections < 3, 'keep-alive connections are reused');
  } finally {
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('latency holds each direction for exactly the set time (injected clock)', async () => {
  const clock = new ManualClock();
  await withSetup(
    async (echo, proxy) => {
      proxy.setLatency(100);
      const c = await open(proxy.port);
      c.sock.write('ping');
      await waitFor(() => clock.pending === 1, { message: 'the request waits in the latency queue' });
      // bytesUp and bytesDown count what the proxy wrote on, synchronously with the timers firing
      clock.advance(99);
      assert.equal(proxy.stats().bytesUp, 0, 'forwarded upstream before its latency passed');
      clock.advance(1);
      assert.equal(proxy.stats().bytesUp, 4);
      await waitFor(() => echo.received() === 4 && clock.pending === 1, {
        message: 'forwarded upstream after 100 ms; the echo waits in the queue',
      });
      clock.advance(99);
      assert.equal(proxy.stats().bytesDown, 0, 'delivered downstream before its latency passed');
      clock.advance(1);
      assert.equal(proxy.stats().bytesDown, 4);
      await waitFor(() => c.data() === 'ping', { message: 'delivered downstream after 100 ms more' });
      c.sock.destroy();
    },
    { clock },
  );
});

test('reset mode resets open and new connections; pass restores service', async () => {
  await withSetup(async (_echo, proxy) => {
    const c = await open(proxy.port);
    c.sock.write('a');
    await waitFor(() => c.data() === 'a');
    proxy.setMode('reset');
    await c.closed;
    assert.equal(c.error()?.code, 'ECONNRESET');

    const d = connect(proxy.port, '127.0.0.1');
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => d.once('error', resolve));
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(proxy.stats().resets, 2);

    proxy.setMode('pass');
    const e = await open(proxy.port);
    e.sock.write('back');
    await waitFor(() => e.data() === 'back');
    e.sock.destroy();
  });
});

test('stall holds data without closing, pass delivers it', async () => {
  await withSetup(async (echo, proxy) => {
    const c = await open(proxy.port);
    proxy.setMode('stall');
    c.sock.write('held');
    await sleep(200);
    assert.equal(echo.received(), 0);
    assert.equal(c.data(), '');
    assert.equal(c.sock.destroyed, false);
    proxy.setMode('pass');
    await waitFor(() => c.data() === 'held', { message: 'stalled data delivered after pass' });
    c.sock.destroy();
  });
});

test('blackhole accepts and never answers, and never reaches the target', async () => {
  await withSetup(async (echo, proxy) => {
    proxy.setMode('blackhole');
    const c = await open(proxy.port);
    c.sock.write('into the void');
    await waitFor(() => proxy.stats().bytesDiscarded === 13, { message: 'the proxy read the bytes' });
    assert.equal(c.data(), '');
    assert.equal(c.sock.destroyed, false);
    assert.equal(echo.accepted(), 0);
    assert.equal(proxy.stats().bytesUp, 0);
    c.sock.destroy();
  });
});

test('resetAfterBytes cuts a request after exactly N upstream bytes', async () => {
  let serverBytes = 0;
  let aborted = false;
  const server = createHttpServer((req, res) => {
    req.on('data', (c: Buffer) => (serverBytes += c.length));
    req.on('aborted', () => (aborted = true));
    req.on('error', () => (aborted = true));
    req.on('end', () => res.end('complete'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: addr.port });
  try {
    const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n';
    proxy.resetAfterBytes(head.length + 5000);
    const clientErr = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const sock = connect(proxy.port, '127.0.0.1');
      sock.on('error', resolve);
      sock.on('data', () => resolve(new Error('unexpected response')));
      sock.write(head);
      sock.write(Buffer.alloc(100000, 1));
    });
    assert.equal(clientErr.code, 'ECONNRESET');
    await waitFor(() => aborted, { message: 'server saw the aborted request' });
    assert.equal(serverBytes, 5000);
    const s = proxy.stats();
    assert.equal(s.resets, 1);
    assert.ok(s.bytesUp <= head.length + 5000 + 200, `forwarded ${s.bytesUp}`);

    proxy.resetAfterBytes(null);
    const res = await fetch(`http://127.0.0.1:${proxy.port}/`, { method: 'POST', body: 'ok' });
    assert.equal(await res.text(), 'complete');
  } finally {
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('resetAll resets open connections once and keeps the mode', async () => {
  await withSetup(async (_echo, proxy) => {
    const a = await open(proxy.port);
    const b = await open(proxy.port);
    proxy.resetAll();
    await Promise.all([a.closed, b.closed]);
    assert.equal(a.error()?.code, 'ECONNRESET');
    assert.equal(b.error()?.code, 'ECONNRESET');
    const c = await open(proxy.port);
    c.sock.write('still passing');
    await waitFor(() => c.data() === 'still passing');
    c.sock.destroy();
    assert.equal(proxy.stats().resets, 2);
  });
});
