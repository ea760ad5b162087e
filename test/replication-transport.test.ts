/**
 * The remote transport against destinations that misbehave on the wire (issue 8 item 7):
 * `RS_REPLICATION_TIMEOUT` bounds connecting, waiting for headers and pauses in a body, so that a
 * destination that never answers shows an error within that time; a destination's error messages
 * are kept in status, diagnostics and the failure log only up to a bound, however long they are.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { stringifyJson } from '../src/protocol/json.js';
import { MAX_REPLICATION_MESSAGE_CHARS } from '../src/protocol/limits.js';
import { withReplEnv, statusOf, writeText } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

interface Fake {
  url: string;
  close(): Promise<void>;
}

async function listen(server: Server | ReturnType<typeof createServer>, sockets: Set<Socket>): Promise<Fake> {
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Accepts connections, reads what arrives and never answers. */
function silentDestination(): Promise<Fake> {
  const sockets = new Set<Socket>();
  return listen(
    createTcpServer((s) => s.resume()),
    sockets,
  );
}

/** An HTTP destination answering every request with `handler`. */
function httpDestination(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Fake> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  return listen(server, sockets);
}

const TIMEOUT_S = 1;

/** Writes one record and returns how long it took until the status showed a timeout error. */
async function timeToTimeoutError(destination: Fake): Promise<{ ms: number; message: string }> {
  let result: { ms: number; message: string } | undefined;
  await withReplEnv(
    'remote',
    async (env) => {
      await env.replicate('r', {
        dst_host: destination.url,
        retry: { initial_ms: 60_000, max_ms: 60_000 },
      });
      const t0 = performance.now();
      await writeText(env.storage, 'src', 'e', 1n, 'x');
      const err = await waitFor(() => statusOf(env.manager, 'r').last_error, {
        timeoutMs: 15_000,
        intervalMs: 10,
        message: 'an error in the status',
      });
      result = { ms: performance.now() - t0, message: err.message };
      const st = statusOf(env.manager, 'r');
      assert.equal(st.state, 'retrying');
      assert.equal(st.counters.records_written, 0);
    },
    { env: { RS_REPLICATION_TIMEOUT: String(TIMEOUT_S) } },
  );
  return result!;
}

/** The status shows a timeout error after the configured bound: not at once, not minutes later. */
async function assertTimesOut(destination: Fake): Promise<void> {
  const { ms, message } = await timeToTimeoutError(destination);
  assert.match(message, /timeout/i);
  assert.ok(ms >= TIMEOUT_S * 1000 * 0.9, `error after ${ms.toFixed(0)} ms`);
  assert.ok(ms < TIMEOUT_S * 1000 + 4000, `error after ${ms.toFixed(0)} ms`);
}

test(
  'a destination that never answers shows a timeout error within RS_REPLICATION_TIMEOUT',
  { timeout: 60_000 },
  async () => {
    const dst = await silentDestination();
    try {
      await assertTimesOut(dst);
    } finally {
      await dst.close();
    }
  },
);

test(
  'a destination that stops in the middle of its answer body times out within RS_REPLICATION_TIMEOUT',
  { timeout: 60_000 },
  async () => {
    // A ReductStore-like destination (no instance id) that already holds the record: the source
    // reads it back to compare digests, and the read stops after one byte.
    const dst = await httpDestination((req, res) => {
      const headers: Record<string, string> = { 'x-reduct-api': '1.21' };
      if (req.method === 'POST') headers['x-reduct-error-1'] = '409,A record with timestamp 1 already exists';
      if (req.method === 'HEAD' || (req.method === 'GET' && req.url?.includes('?ts='))) {
        res.writeHead(200, { ...headers, 'content-length': '1' });
        if (req.method === 'HEAD') res.end();
        return; // GET: headers only, the body never comes
      }
      res.writeHead(200, headers);
      res.end();
    });
    try {
      await assertTimesOut(dst);
    } finally {
      await dst.close();
    }
  },
);

const HUGE = 'E'.repeat(200_000);

test('a 200 kB error message of a destination is kept cut in state_reason and last_error', async () => {
  const dst = await httpDestination((_req, res) => {
    res.writeHead(500, { 'x-reduct-error': HUGE, 'x-reduct-api': '1.21' });
    res.end();
  });
  try {
    await withReplEnv('remote', async (env) => {
      await env.replicate('r', { dst_host: dst.url, retry: { initial_ms: 50, max_ms: 100 } });
      await writeText(env.storage, 'src', 'e', 1n, 'x');
      const st = await waitFor(
        () => {
          const s = statusOf(env.manager, 'r');
          return s.retries >= 2 ? s : false;
        },
        { timeoutMs: 20_000, message: 'retries against the failing destination' },
      );
      const bound = MAX_REPLICATION_MESSAGE_CHARS + 100;
      assert.ok((st.state_reason ?? '').length <= bound, `state_reason of ${st.state_reason?.length}`);
      assert.ok(st.last_error!.message.length <= bound, `last_error of ${st.last_error!.message.length}`);
      assert.match(st.last_error!.message, /EEEE… \(\d+ more characters\)$/);
      // the whole GET answers (compatible and Ferry's view with the status) stay small
      for (const view of [env.manager.get('r'), env.manager.inspect('r')]) {
        const size = stringifyJson(view).length;
        assert.ok(size < 4 * MAX_REPLICATION_MESSAGE_CHARS + 4000, `GET answer of ${size} characters`);
      }
    });
  } finally {
    await dst.close();
  }
});

test('a 200 kB per-record refusal is kept cut in the failure log and the diagnostics', async () => {
  const dst = await httpDestination((req, res) => {
    const headers: Record<string, string> = { 'x-reduct-api': '1.21' };
    if (req.method === 'POST' && req.url?.endsWith('/batch')) headers['x-reduct-error-1'] = `422,${HUGE}`;
    res.writeHead(200, headers);
    res.end();
  });
  try {
    await withReplEnv('remote', async (env) => {
      await env.replicate('r', { dst_host: dst.url, on_write_failure: 'skip' });
      await writeText(env.storage, 'src', 'e', 1n, 'x');
      await waitFor(() => statusOf(env.manager, 'r').counters.records_failed === 1, {
        timeoutMs: 20_000,
        message: 'the record skipped into the failure log',
      });
      const f = (await env.manager.failures('r')) as { failures: Array<{ message: string }> };
      assert.equal(f.failures.length, 1);
      const bound = MAX_REPLICATION_MESSAGE_CHARS + 100;
      assert.ok(
        f.failures[0]!.message.length <= bound,
        `failure log message of ${f.failures[0]!.message.length}`,
      );
      const diag = (
        env.manager.get('r') as {
          diagnostics: { hourly: { errors: Record<string, { last_message: string }> } };
        }
      ).diagnostics.hourly.errors;
      assert.ok(diag['422'], 'the refusal is in the diagnostics');
      assert.ok(diag['422'].last_message.length <= bound);
    });
  } finally {
    await dst.close();
  }
});
