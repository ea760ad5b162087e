/**
 * Server-wide modes: authentication disabled (§5.2), `RS_INSTANCE_ROLE=REPLICA` (§7.5), the
 * `$system` bucket with its audit trail (§14.2), readiness and shutdown (§6).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { Client } from 'reduct-js';
import { loadConfig } from '../src/config/load-config.js';
import { parseJson } from '../src/protocol/json.js';
import { startFerry, type RunningFerry } from '../src/server.js';
import { waitFor } from './helpers/wait.js';

async function withServer(
  env: Record<string, string>,
  fn: (ferry: RunningFerry) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-api-roles-'));
  const ferry = await startFerry(
    loadConfig({
      RS_DATA_PATH: dir,
      RS_HOST: '127.0.0.1',
      RS_PORT: '0',
      RS_SYSTEM_EVENTS_ENABLED: 'false',
      ...env,
    }),
    { log: () => undefined },
  );
  try {
    await fn(ferry);
  } finally {
    await ferry.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('authentication disabled: AUTHENTICATION-DISABLED principal, empty token list, 400 on token routes', async () => {
  await withServer({ RS_DISABLE_AUTH: 'true' }, async (ferry) => {
    const client = new Client(ferry.url);
    assert.equal((await client.me()).name, 'AUTHENTICATION-DISABLED');
    assert.deepEqual(await client.getTokenList(), []);
    const res = await fetch(`${ferry.url}/api/v1/tokens/x`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('x-reduct-error'), 'Authentication is disabled');
  });
});

test('REPLICA role: reads work, every mutation answers 403', async () => {
  await withServer({ RS_API_TOKEN: 't', RS_INSTANCE_ROLE: 'REPLICA' }, async (ferry) => {
    const headers = { authorization: 'Bearer t' };
    const base = `${ferry.url}/api/v1/`;
    let res = await fetch(`${base}info`, { headers });
    assert.equal(res.status, 200);
    assert.equal((parseJson(await res.text()) as { instance_role: string }).instance_role, 'REPLICA');
    for (const [method, path] of [
      ['POST', 'b/new'],
      ['POST', 'b/new/entry?ts=1'],
      ['POST', 'io/new/write'],
      ['DELETE', 'b/new'],
    ] as const) {
      res = await fetch(base + path, { method, headers, body: method === 'POST' ? '' : undefined });
      assert.equal(res.status, 403, `${method} ${path}`);
    }
    res = await fetch(`${base}io/new/q`, {
      method: 'POST',
      headers,
      body: '{"query_type": "REMOVE", "start": 1}',
    });
    assert.equal(res.status, 403);
    // a read-only QUERY is not a mutation (the bucket does not exist → 404, not 403)
    res = await fetch(`${base}io/new/q`, { method: 'POST', headers, body: '{"query_type": "QUERY"}' });
    assert.equal(res.status, 404);
  });
});

test('$system: audit events appear for authenticated traffic; the bucket cannot be deleted', async () => {
  await withServer(
    { RS_API_TOKEN: 't', RS_SYSTEM_EVENTS_ENABLED: 'true', RS_INSTANCE_NAME: 'node-a' },
    async (ferry) => {
      const client = new Client(ferry.url, { apiToken: 't' });
      await client.getInfo();
      const entries = await waitFor(
        async () => {
          const names = (await (await client.getBucket('$system')).getEntryList()).map((e) => e.name);
          return names.some((e) => e.startsWith('audit/node-a/')) && names;
        },
        { timeoutMs: 6000, intervalMs: 100, message: "an 'audit/node-a/…' entry in $system" },
      );
      assert.ok(
        entries.some((e) => e.startsWith('audit/node-a/')),
        entries.join(','),
      );
      const res = await fetch(`${ferry.url}/api/v1/b/$system`, {
        method: 'DELETE',
        headers: { authorization: 'Bearer t' },
      });
      assert.equal(res.status, 409);
      assert.ok((await client.getBucketList()).some((b) => b.name === '$system'));
    },
  );
});

test('keep-alive connection stays usable after an early failure with an unread body', async () => {
  await withServer({ RS_API_TOKEN: 't' }, async (ferry) => {
    const agent = new Agent({ connections: 1, pipelining: 1 });
    // undici reconnects silently when the server closes a connection: count them.
    let connections = 0;
    agent.on('connect', () => connections++);
    try {
      const headers = { authorization: 'Bearer t' };
      const post = async (
        path: string,
        body: string | Buffer | undefined,
        status: number,
        extra: Record<string, string> = {},
      ): Promise<void> => {
        const r = await request(`${ferry.url}/api/v1/${path}`, {
          method: 'POST',
          headers: { ...headers, ...extra },
          body,
          dispatcher: agent,
        });
        assert.equal(r.statusCode, status, `POST ${path}`);
        await r.body.dump();
      };
      await post('b/ka', undefined, 200);
      // 404 before the body is read: the server drains it
      await post('b/missing/e?ts=1', Buffer.alloc(256 * 1024, 1), 404);
      await post('b/ka/e?ts=1', 'abc', 200);
      const r = await request(`${ferry.url}/api/v1/b/ka/e?ts=1`, { headers, dispatcher: agent });
      assert.equal(await r.body.text(), 'abc');
      // 409 from storage after the body reader was set up: the rest of the body is drained too
      await post('b/ka/e?ts=1', Buffer.alloc(512 * 1024, 2), 409);
      // 400 after part of the body was read: the rest is drained as well
      await post('b/ka/e?ts=3', Buffer.alloc(300 * 1024, 3), 400, { 'x-reduct-content-length': '2' });
      await post('b/ka/e?ts=2', 'def', 200);
      assert.equal(connections, 1, 'every request went over the one keep-alive connection');
    } finally {
      await agent.close();
    }
  });
});

test('close() stops the server and releases the port; /ready is 200 once started', async () => {
  let url = '';
  await withServer({ RS_API_TOKEN: 't' }, async (ferry) => {
    url = ferry.url;
    const res = await fetch(`${url}/api/v1/ready`);
    assert.equal(res.status, 200);
  });
  await assert.rejects(fetch(`${url}/api/v1/alive`));
});
