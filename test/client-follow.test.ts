/**
 * `replications.follow()` against the events contract (issue 9: `status` snapshot on connect,
 * `state` at transitions, heartbeat comments, the stream ends after `completed`), served by a
 * scripted HTTP server so that broken connections and refusals happen exactly when the test says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { FerryClient, FerryError, type ReplicationEvent } from 'ferry/client';

type Script = (req: IncomingMessage, res: ServerResponse, attempt: number) => void;

async function scripted(script: Script): Promise<{ url: string; attempts: number[]; close(): void }> {
  const attempts: number[] = [];
  const server = createServer((req, res) => {
    attempts.push(Date.now());
    script(req, res, attempts.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    attempts,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const status = (state: string, pending: number): string =>
  `event: status\ndata: ${JSON.stringify({ name: 'r', state, pending_records: pending, cursor_lsn: 12345678901234567890n.toString() })}\n\n`.replace(
    '"12345678901234567890"',
    '12345678901234567890',
  );

function sse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

const summary = (evs: ReplicationEvent[]): string[] =>
  evs.map((e) => (e.type === 'status' ? `status:${e.status.state}` : `state:${e.state.from}>${e.state.to}`));

test('follow reconnects after a broken stream and ends after completed', async () => {
  const srv = await scripted((req, res, attempt) => {
    assert.equal(req.url?.startsWith('/api/v1/replications/r/events'), true);
    assert.equal(req.headers.authorization, 'Bearer tk');
    sse(res);
    if (attempt === 1) {
      res.write(status('replicating', 5));
      setTimeout(() => res.socket?.destroy(), 20); // a broken link, not a clean end
      return;
    }
    res.write(': heartbeat\n\n');
    res.write(status('replicating', 1));
    res.write('event: state\ndata: {"from":"replicating","to":"completed","reason":null,"at":"t"}\n\n');
    res.write(status('completed', 0));
    res.end();
  });
  try {
    const c = new FerryClient(srv.url, { token: 'tk' });
    const events: ReplicationEvent[] = [];
    for await (const ev of c.replications.follow('r', { backoffMs: 10 })) events.push(ev);
    assert.deepEqual(summary(events), [
      'status:replicating',
      'status:replicating',
      'state:replicating>completed',
      'status:completed',
    ]);
    assert.equal(srv.attempts.length, 2);
    const first = events[0]!;
    assert.equal(first.type === 'status' && first.status.cursor_lsn, 12345678901234567890n, 'u64 kept exact');
  } finally {
    srv.close();
  }
});

test('follow backs off between failed attempts (5xx and refused streams) and doubles the wait', async () => {
  const srv = await scripted((_req, res, attempt) => {
    if (attempt <= 3) {
      res.writeHead(503, { 'x-reduct-error': 'The server is starting up, please try again later' }).end();
      return;
    }
    sse(res);
    res.end(status('completed', 0));
  });
  try {
    const c = new FerryClient(srv.url);
    const events: ReplicationEvent[] = [];
    for await (const ev of c.replications.follow('r', { backoffMs: 60, maxBackoffMs: 1000 })) events.push(ev);
    assert.deepEqual(summary(events), ['status:completed']);
    const gaps = srv.attempts.slice(1).map((t, i) => t - srv.attempts[i]!);
    assert.equal(gaps.length, 3);
    // lower bounds only: a loaded machine may wait longer, never shorter
    assert.ok(gaps[0]! >= 55 && gaps[1]! >= 115 && gaps[2]! >= 235, `gaps ${gaps.join(', ')}`);
  } finally {
    srv.close();
  }
});

test('follow gives up after maxRetries and rethrows the last failure', async () => {
  const srv = await scripted((_req, res) => {
    res.writeHead(500, { 'x-reduct-error': 'boom' }).end();
  });
  try {
    const c = new FerryClient(srv.url);
    await assert.rejects(
      async () => {
        for await (const _ of c.replications.follow('r', { backoffMs: 5, maxRetries: 2 })) void _;
      },
      (e: unknown) => e instanceof FerryError && e.status === 500 && e.message === 'boom',
    );
    assert.equal(srv.attempts.length, 3);
  } finally {
    srv.close();
  }
});

test('follow of an unknown replication throws its 404 at once; an abort ends it quietly', async () => {
  const srv = await scripted((req, res) => {
    if (req.url?.includes('/nope/')) {
      res.writeHead(404, { 'x-reduct-error': "Replication 'nope' does not exist" }).end();
      return;
    }
    sse(res);
    res.write(status('idle', 0)); // a continuous replication: the stream stays open
  });
  try {
    const c = new FerryClient(srv.url);
    await assert.rejects(
      async () => {
        for await (const _ of c.replications.follow('nope', { backoffMs: 5 })) void _;
      },
      (e: unknown) =>
        e instanceof FerryError && e.status === 404 && e.message === "Replication 'nope' does not exist",
    );
    assert.equal(srv.attempts.length, 1);

    const ac = new AbortController();
    const events: ReplicationEvent[] = [];
    for await (const ev of c.replications.follow('r', { signal: ac.signal })) {
      events.push(ev);
      ac.abort();
    }
    assert.deepEqual(summary(events), ['status:idle']);
  } finally {
    srv.close();
  }
});
