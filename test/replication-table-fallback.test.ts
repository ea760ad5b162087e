/**
 * A destination that does not say it takes records tables (a ReductStore, an older Ferry) gets the
 * header forms: a proxy in front of a real Ferry destination drops `x-ferry-features` from every
 * answer and records each request's content type. The replication then sends no records table,
 * its records still arrive whole, and a record no header form carries (upper-case label names
 * with a value that starts with `"`) is refused visibly, never stored altered. Remote only: the
 * negotiation is a matter of the wire (the local target has none).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FEATURES_HEADER, RECORDS_TABLE_CONTENT_TYPE } from '../src/protocol/records-table.js';
import { readText, statusOf, withReplEnv, writeText } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

/** A forwarding proxy to `target` that hides the features header; `types` lists request content types. */
async function hidingProxy(target: URL): Promise<{ url: string; types: string[]; server: Server }> {
  const types: string[] = [];
  const server = createServer((req, res) => {
    types.push(String(req.headers['content-type'] ?? ''));
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const headers = { ...answer.headers };
        delete headers[FEATURES_HEADER];
        res.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, types, server };
}

test('a destination that does not advertise records tables gets header batches, and nothing altered', async () => {
  await withReplEnv('remote', async (env) => {
    const proxy = await hidingProxy(new URL(env.destination.dst_host));
    try {
      await env.replicate('r', { dst_host: proxy.url, retry: { initial_ms: 50, max_ms: 200 } });
      const writes = [];
      for (let i = 1; i <= 300; i++)
        writes.push(writeText(env.storage, 'src', 'a', BigInt(i), `v${i}`, { k: '"q"' }));
      await Promise.all(writes);
      await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 300, {
        timeoutMs: 20_000,
        message: '300 records written through the header forms',
      });
      const got = await readText(env.dst, 'dst', 'a');
      assert.equal(got.length, 300);
      got.forEach((r, i) => {
        assert.equal(r.body, `v${i + 1}`);
        assert.deepEqual(r.labels, { k: '"q"' });
      });
      assert.ok(proxy.types.length > 0, 'the replication went through the proxy');
      assert.ok(!proxy.types.includes(RECORDS_TABLE_CONTENT_TYPE), 'no records table was sent');

      // no header form carries an upper-case name with such a value: refused, never stored altered
      await writeText(env.storage, 'src', 'b', 1n, 'x', { Up: '"x' });
      await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
      assert.match(statusOf(env.manager, 'r').state_reason ?? '', /\(422\)/);
      assert.equal(env.dst.bucket('dst').hasEntry('b'), false, 'nothing stored altered');
    } finally {
      await new Promise((resolve) => proxy.server.close(resolve));
    }
  });
});
