/**
 * One bucket-settings parser (issue 9 item 3): the bucket routes, storage, the RS_* variables and a
 * replication's `target_settings` refuse the same malformed settings with the same 422 message,
 * naming the field as each path spells it; valid `target_settings` shape the bucket a replication
 * creates, for both destination kinds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config/load-config.js';
import { FerryError } from '../src/protocol/errors.js';
import { parseJson } from '../src/protocol/json.js';
import type { BucketSettingsPatch } from '../src/storage/types.js';
import { forEachTarget, writeText } from './helpers/replication-env.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'bucket-settings-token';
let server: TestServer | undefined;

before(async () => {
  server = await startTestServer('bucket-settings', TOKEN);
  await server.ferry.storage.createBucket('src');
  await server.ferry.storage.createBucket('existing');
});
after(() => stopTestServer(server));

const U64_MAX = '18446744073709551615';

/**
 * Malformed settings: the field, its JSON text, its environment value (null when the value has no
 * spelling as a variable, such as a negative or fractional number) and why it is refused.
 */
const CASES: Array<{ field: string; json: string; env: string | null; why: string }> = [
  { field: 'max_block_records', json: '0', env: '0', why: `must be an integer from 1 to ${U64_MAX}` },
  { field: 'max_block_size', json: '0', env: '0', why: `must be an integer from 1 to ${U64_MAX}` },
  {
    field: 'quota_type',
    json: '"SOFT"',
    env: 'SOFT',
    why: "unknown value 'SOFT', expected one of NONE, FIFO, HARD",
  },
  { field: 'quota_type', json: '7', env: null, why: "unknown value '7', expected one of NONE, FIFO, HARD" },
  { field: 'quota_size', json: '-1', env: null, why: `must be an integer from 0 to ${U64_MAX}` },
  {
    field: 'quota_size',
    json: '18446744073709551616',
    env: null,
    why: `must be an integer from 0 to ${U64_MAX}`,
  },
  { field: 'max_block_size', json: '1.5', env: null, why: `must be an integer from 1 to ${U64_MAX}` },
  { field: 'max_block_records', json: '"10"', env: null, why: `must be an integer from 1 to ${U64_MAX}` },
  { field: 'max_block_records', json: 'true', env: null, why: `must be an integer from 1 to ${U64_MAX}` },
];

async function send(method: string, path: string, body: string): Promise<{ status: number; error: string }> {
  const res = await fetch(`${server!.ferry.url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
    ...(body === '' ? {} : { body }),
  });
  await res.arrayBuffer();
  return { status: res.status, error: String(res.headers.get('x-reduct-error')) };
}

test('every path refuses the same malformed bucket settings with the same 422', async () => {
  for (const c of CASES) {
    const what = `${c.field}: ${c.json}`;
    const message = (name: string): string => `Invalid bucket setting '${name}': ${c.why}`;
    const body = `{"${c.field}": ${c.json}}`;
    // a replication's target_settings: refused at POST, never retried against the destination
    const repl = `{"src_bucket": "src", "dst_bucket": "dst", "dst_host": "", "target_settings": ${body}}`;
    assert.deepEqual(
      await send('POST', 'replications/r', repl),
      { status: 422, error: message(`target_settings.${c.field}`) },
      what,
    );

    assert.deepEqual(
      await send('POST', 'b/new-bucket', body),
      { status: 422, error: message(c.field) },
      what,
    );
    assert.deepEqual(await send('PUT', 'b/existing', body), { status: 422, error: message(c.field) }, what);
    assert.equal(server!.ferry.storage.hasBucket('new-bucket'), false, what);

    // storage checks again whatever a caller hands it
    const patch = parseJson(body) as BucketSettingsPatch;
    await assert.rejects(
      server!.ferry.storage.createBucket('direct', patch),
      (e: unknown) => e instanceof FerryError && e.status === 422 && e.message === message(c.field),
      what,
    );

    if (c.env === null) continue;
    const variable = c.field.toUpperCase();
    for (const prefix of ['RS_BUCKET_A_', 'RS_DEFAULTS_BUCKET_']) {
      const env = { RS_DATA_PATH: '/nonexistent', RS_BUCKET_A_NAME: 'b', [`${prefix}${variable}`]: c.env };
      assert.throws(
        () => loadConfig(env),
        (e: unknown) => e instanceof Error && e.message === message(`${prefix}${variable}`),
        `${prefix}${variable}=${c.env}`,
      );
    }
  }
  assert.equal((await send('GET', 'replications/r', '')).status, 404, 'no replication was created');
  for (const body of ['[1]', '5', '"FIFO"']) {
    const want = { status: 422, error: 'Invalid bucket settings: expected an object' };
    assert.deepEqual(await send('POST', 'b/new-bucket', body), want, body);
    assert.deepEqual(await send('PUT', 'b/existing', body), want, body);
  }
});

test('valid settings in any spelling of a path are accepted alike', async () => {
  const body = '{"quota_type": "FIFO", "quota_size": 1000000, "max_block_size": 1, "max_block_records": 1}';
  assert.equal((await send('POST', 'b/ok-bucket', body)).status, 200);
  assert.deepEqual(server!.ferry.storage.bucket('ok-bucket').settings(), {
    quota_type: 'FIFO',
    quota_size: 1_000_000n,
    max_block_size: 1n,
    max_block_records: 1n,
  });
  const config = loadConfig({
    RS_DATA_PATH: '/nonexistent',
    RS_BUCKET_A_NAME: 'b',
    RS_BUCKET_A_QUOTA_TYPE: 'fifo',
    RS_BUCKET_A_QUOTA_SIZE: '1MB',
    RS_BUCKET_A_MAX_BLOCK_RECORDS: '1',
  });
  assert.deepEqual(config.buckets[0]?.settings, {
    quota_type: 'FIFO',
    quota_size: 1_000_000n,
    max_block_records: 1n,
  });
  // unknown fields are ignored by the bucket routes (ReductStore's rule) and null keeps a value
  assert.equal((await send('PUT', 'b/ok-bucket', '{"quota_type": null, "colour": "red"}')).status, 200);
  assert.equal(server!.ferry.storage.bucket('ok-bucket').settings().quota_type, 'FIFO');
});

forEachTarget('target_settings shape the destination bucket the replication creates', async (env) => {
  await env.replicate('r', {
    target_settings: { quota_type: 'FIFO', quota_size: 5_000_000, max_block_records: 2 },
  });
  for (let ts = 1n; ts <= 5n; ts++) await writeText(env.storage, 'src', 'e', ts, `record ${ts}`);
  await waitFor(() => env.dst.hasBucket('dst') && env.dst.bucket('dst').info().entry_count === 1n, {
    timeoutMs: 20_000,
    message: 'the destination bucket created with its first record',
  });
  assert.deepEqual(env.dst.bucket('dst').settings(), {
    quota_type: 'FIFO',
    quota_size: 5_000_000n,
    max_block_size: 64_000_000n,
    max_block_records: 2n,
  });
  // an unknown field of target_settings is a typo: refused, unlike in the bucket routes
  await assert.rejects(
    env.manager.create('typo', {
      src_bucket: 'src',
      dst_bucket: 'dst2',
      ...env.destination,
      target_settings: { max_block_record: 2 },
    }),
    { status: 422, message: "Invalid replication setting 'target_settings.max_block_record': unknown field" },
  );
});
