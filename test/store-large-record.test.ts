/**
 * A 1 GiB record streams through a real server process without being held in memory: written
 * with a chunked body, read back as a stream, identical by SHA-256, and the server's peak RSS
 * stays far below the record size.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { RssSampler } from '../bench/lib/rss.js';

const SIZE = 1024 * 1024 * 1024;
const CHUNK = 1024 * 1024;
let ferry: FerryProcess | undefined;

after(async () => {
  await ferry?.destroy();
});

/** Deterministic pseudo-random content, generated chunk by chunk (never the whole record). */
function* content(): Generator<Buffer> {
  for (let off = 0; off < SIZE; off += CHUNK) {
    // A fresh chunk each time: streams may hold several chunks before sending them.
    const chunk = Buffer.allocUnsafe(CHUNK);
    // a typed-array loop: writeUInt32LE per word cost the test 10 s of CPU for 1 GiB
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset, CHUNK / 4);
    for (let i = 0; i < words.length; i++) words[i] = Math.imul(off + i * 4, 2654435761 | 0);
    yield chunk;
  }
}

test('a 1 GiB record is streamed in and out with bounded server memory', { timeout: 180_000 }, async () => {
  ferry = await spawnFerry();
  const auth = { authorization: `Bearer ${ferry.token}` };
  const base = `${ferry.url}/api/v1`;
  assert.equal((await request(`${base}/b/big`, { method: 'POST', headers: auth })).statusCode, 200);

  const sampler = new RssSampler(ferry.pid, 25).start();
  const expected = createHash('sha256');
  const body = Readable.from(
    (async function* () {
      for (const c of content()) {
        expected.update(c);
        yield c;
      }
    })(),
  );
  const w = await request(`${base}/b/big/blob?ts=1000`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'x-reduct-content-length': String(SIZE) },
    body,
  });
  const wText = await w.body.text();
  assert.equal(w.statusCode, 200, `${w.headers['x-reduct-error']} ${wText}`);

  const r = await request(`${base}/b/big/blob?ts=1000`, { headers: auth });
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['content-length'], String(SIZE));
  const got = createHash('sha256');
  let n = 0;
  for await (const c of r.body) {
    got.update(c as Buffer);
    n += (c as Buffer).length;
  }
  const peak = sampler.stop();
  assert.equal(n, SIZE);
  assert.equal(got.digest('hex'), expected.digest('hex'));
  // A running Node server is well above 20 MiB: less means its RSS could not be read at all.
  assert.ok(peak > 20 * 1024 * 1024, `server peak RSS was measured (${peak} bytes)`);
  assert.ok(
    peak < 200 * 1024 * 1024,
    `server peak RSS ${Math.round(peak / 1048576)} MiB must stay < 200 MiB`,
  );
});
