/**
 * The replication API through the reduct-js 1.20.0 SDK against real Ferry processes (api.md §17,
 * §20.2–§20.3): create, list, get, update (the token is kept), mode switches, delete — with records
 * really flowing to a second instance. (The exact §17.5 JSON over plain HTTP is checked in
 * api-replications.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'reduct-js';
import { spawnFerry } from './helpers/ferry-process.js';
import { waitFor } from './helpers/wait.js';

test(
  'reduct-js: create, list, get, update (token kept), mode, delete; records flow to a second instance',
  { timeout: 90_000 },
  async () => {
    const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
    const [A, B] = await Promise.all([spawnFerry({ env }), spawnFerry({ env })]);
    try {
      const a = new Client(A.url, { apiToken: A.token });
      const b = new Client(B.url, { apiToken: B.token });
      const src = await a.createBucket('src');

      // the SDK's own calls
      await a.createReplication('sdk', {
        srcBucket: 'src',
        dstBucket: 'copy',
        dstHost: B.url,
        dstToken: B.token,
        entries: ['cam-*'],
        mode: 'paused',
      });
      const listed = await a.getReplicationList();
      assert.equal(listed.length, 1);
      assert.equal(listed[0]!.name, 'sdk');
      assert.equal(listed[0]!.mode, 'paused');
      assert.equal(listed[0]!.isProvisioned, false);

      for (let i = 1; i <= 20; i++) {
        const w = await src.beginWrite(i % 2 ? 'cam-1' : 'other', {
          ts: BigInt(i),
          labels: { i: String(i) },
          contentType: 'text/plain',
        });
        await w.write(`record ${i}`);
      }
      // paused: logged, not sent
      await waitFor(async () => (await a.getReplication('sdk')).info.pendingRecords === 10n, {
        message: '10 pending',
      });
      await a.setReplicationMode('sdk', 'enabled');
      await waitFor(async () => (await a.getReplication('sdk')).info.pendingRecords === 0n, {
        timeoutMs: 20_000,
        message: 'delivered',
      });
      const full = await a.getReplication('sdk');
      assert.equal(full.info.isActive, true);
      assert.equal(full.settings.dstHost, B.url);
      assert.equal(full.settings.dstToken ?? null, null, 'the token is never returned');
      assert.deepEqual(full.settings.entries, ['cam-*']);
      assert.ok(Number(full.diagnostics.hourly.ok) > 0);
      const copy = await b.getBucket('copy');
      const got1: string[] = [];
      for await (const rec of copy.query('cam-1'))
        got1.push(`${rec.time}:${rec.labels.i}:${(await rec.read()).toString()}`);
      assert.equal(got1.length, 10);
      assert.equal(got1[0], '1:1:record 1');

      // update without a token keeps the stored one: records still arrive (now for every entry)
      await a.updateReplication('sdk', { srcBucket: 'src', dstBucket: 'copy', dstHost: B.url, entries: [] });
      const w = await src.beginWrite('other', { ts: 100n });
      await w.write('after update');
      await waitFor(
        async () =>
          (await a.getReplication('sdk')).info.pendingRecords === 0n &&
          (await copy.getEntryList()).some((e) => e.name === 'other'),
        {
          timeoutMs: 20_000,
          message: 'update delivered with the kept token',
        },
      );
      assert.deepEqual((await a.getReplication('sdk')).settings.entries, []);

      // disabled: ignored entirely, inactive
      await a.setReplicationMode('sdk', 'disabled');
      const disabled = await a.getReplication('sdk');
      assert.equal(disabled.info.mode, 'disabled');
      assert.equal(disabled.info.isActive, false);

      await a.deleteReplication('sdk');
      assert.deepEqual(await a.getReplicationList(), []);
      await assert.rejects(
        a.getReplication('sdk'),
        (e: { status?: number; message?: string }) =>
          e.status === 404 && /does not exist/.test(e.message ?? ''),
      );
    } finally {
      await Promise.all([A.destroy(), B.destroy()]);
    }
  },
);
