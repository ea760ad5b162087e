import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveClientIp } from '../src/auth/client-ip.js';
import { formatIp, normalizeIp, parseIp, parseIpRange, rangeContains } from '../src/auth/ip-address.js';

test('peer address is used when there are no forwarding headers', () => {
  assert.equal(resolveClientIp('203.0.113.9', {}), '203.0.113.9');
  assert.equal(resolveClientIp('::ffff:127.0.0.1', {}), '127.0.0.1');
  assert.equal(resolveClientIp('::1', {}), '::1');
  assert.equal(resolveClientIp(undefined, { 'x-forwarded-for': '1.2.3.4' }), undefined);
  assert.equal(resolveClientIp('not an ip', {}), undefined);
});

test('X-Forwarded-For from a trusted proxy: first address, ports and brackets stripped', () => {
  assert.equal(resolveClientIp('127.0.0.1', { 'x-forwarded-for': '198.51.100.7, 10.0.0.1' }), '198.51.100.7');
  assert.equal(
    resolveClientIp('::ffff:127.0.0.1', { 'x-forwarded-for': '198.51.100.7:5555' }),
    '198.51.100.7',
  );
  assert.equal(resolveClientIp('10.1.2.3', { 'x-forwarded-for': '[2001:db8::7]:443' }), '2001:db8::7');
  assert.equal(resolveClientIp('192.168.0.4', { 'x-forwarded-for': '2001:db8::8' }), '2001:db8::8');
  assert.equal(resolveClientIp('fe80::1', { 'x-forwarded-for': '::ffff:8.8.8.8' }), '8.8.8.8');
  assert.equal(resolveClientIp('169.254.1.1', { 'x-forwarded-for': ['5.6.7.8', '9.9.9.9'] }), '5.6.7.8');
  // Garbage falls back to the peer.
  assert.equal(resolveClientIp('127.0.0.1', { 'x-forwarded-for': 'unknown' }), '127.0.0.1');
});

test('forwarding headers from an untrusted peer are ignored', () => {
  assert.equal(resolveClientIp('203.0.113.9', { 'x-forwarded-for': '10.0.0.1' }), '203.0.113.9');
  assert.equal(resolveClientIp('203.0.113.9', { forwarded: 'for=10.0.0.1' }), '203.0.113.9');
  assert.equal(resolveClientIp('172.32.0.1', { 'x-forwarded-for': '10.0.0.1' }), '172.32.0.1');
});

test('RFC 7239 Forwarded wins over X-Forwarded-For', () => {
  const h = (forwarded: string) => resolveClientIp('127.0.0.1', { forwarded, 'x-forwarded-for': '9.9.9.9' });
  assert.equal(h('for=192.0.2.60;proto=http;by=203.0.113.43'), '192.0.2.60');
  assert.equal(h('For="[2001:db8:cafe::17]:4711"'), '2001:db8:cafe::17');
  assert.equal(h('for="192.0.2.43:47011", for=198.51.100.17'), '192.0.2.43');
  assert.equal(h('proto=https; for=198.51.100.17'), '198.51.100.17');
  // Obfuscated or unknown nodes fall back to X-Forwarded-For.
  assert.equal(h('for=unknown'), '9.9.9.9');
  assert.equal(h('for=_hidden'), '9.9.9.9');
});

test('address parsing and formatting', () => {
  assert.deepEqual(parseIp('::ffff:192.0.2.1'), parseIp('192.0.2.1'));
  assert.equal(normalizeIp('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
  assert.equal(normalizeIp('1:0:0:1:0:0:0:1'), '1:0:0:1::1');
  assert.equal(formatIp(parseIp('::') as never), '::');
  assert.equal(parseIp('1.2.3'), undefined);
  assert.equal(parseIp('::g'), undefined);
});

test('CIDR ranges', () => {
  const r = (s: string) => parseIpRange(s);
  const ip = (s: string) => parseIp(s) as NonNullable<ReturnType<typeof parseIp>>;
  assert.ok(rangeContains(r('10.1.2.0/24')!, ip('10.1.2.42')));
  assert.ok(!rangeContains(r('10.1.2.0/24')!, ip('10.1.3.1')));
  assert.ok(rangeContains(r('0.0.0.0/0')!, ip('8.8.8.8')));
  assert.ok(!rangeContains(r('0.0.0.0/0')!, ip('2001:db8::1')));
  assert.ok(rangeContains(r('2001:db8::/32')!, ip('2001:db8:ffff::1')));
  assert.ok(!rangeContains(r('2001:db8::/32')!, ip('2001:db9::1')));
  assert.ok(rangeContains(r('::ffff:10.0.0.0/104')!, ip('10.20.30.40')));
  assert.ok(rangeContains(r('1.2.3.4')!, ip('::ffff:1.2.3.4')));
  for (const bad of ['10.0.0.0/33', '2001:db8::/129', '10.0.0.0/abc', 'not-an-ip', '10.0.0.0/', '/8']) {
    assert.equal(parseIpRange(bad), undefined, bad);
  }
});

test('allow-list through a real HTTP request from 127.0.0.1 with X-Forwarded-For', async () => {
  const { createServer } = await import('node:http');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadConfig } = await import('../src/config/load-config.js');
  const { openTokenStore } = await import('../src/auth/token-store.js');
  const { isFerryError } = await import('../src/protocol/errors.js');

  const dir = mkdtempSync(join(tmpdir(), 'ferry-ip-'));
  const store = await openTokenStore(loadConfig({ RS_DATA_PATH: dir, RS_API_TOKEN: 'init' }));
  const { value } = await store.create('lan', { permissions: {}, ip_allowlist: ['192.168.10.0/24'] });
  const server = createServer((req, res) => {
    try {
      const ip = resolveClientIp(req.socket.remoteAddress, req.headers);
      res.end(store.authenticate(req.headers.authorization, ip).name);
    } catch (e) {
      res.statusCode = isFerryError(e) ? e.status : 500;
      res.end((e as Error).message);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const call = async (headers: Record<string, string>) => {
    const res = await fetch(`http://127.0.0.1:${port}/`, {
      headers: { authorization: `Bearer ${value}`, ...headers },
    });
    return `${res.status} ${await res.text()}`;
  };
  try {
    assert.equal(await call({ 'x-forwarded-for': '192.168.10.20' }), '200 lan');
    assert.equal(await call({ forwarded: 'for="192.168.10.21:999"' }), '200 lan');
    assert.equal(
      await call({ 'x-forwarded-for': '192.168.11.20' }),
      '401 Token is not allowed for client IP 192.168.11.20',
    );
    assert.equal(await call({}), '401 Token is not allowed for client IP 127.0.0.1');
  } finally {
    await new Promise((r) => server.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
