import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config/load-config.js';
import { openTokenStore } from '../src/auth/token-store.js';
import { FerryError } from '../src/protocol/errors.js';
import type { TokenJson } from '../src/auth/types.js';

type Store = Awaited<ReturnType<typeof openTokenStore>>;

async function withStore(
  env: Record<string, string>,
  fn: (s: Store, dir: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tokens-'));
  const store = await openTokenStore(loadConfig({ RS_DATA_PATH: dir, ...env }));
  try {
    await fn(store, dir);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Asserts that fn throws (sync or async) a FerryError with this status and exact message. */
async function rejects(fn: () => unknown, status: number, message: string | RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof FerryError, `expected FerryError, got ${String(e)}`);
    assert.equal(e.status, status, e.message);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return;
  }
  assert.fail(`expected ${status} ${String(message)}`);
}

const bearer = (v: string) => `Bearer ${v}`;
const INIT = { RS_API_TOKEN: 'init-secret' };

test('RS_API_TOKEN provisions init-token with full access', async () => {
  await withStore(INIT, async (s) => {
    assert.equal(s.disabled, false);
    const p = s.authenticate(bearer('init-secret'), '127.0.0.1');
    assert.equal(p.name, 'init-token');
    assert.equal(p.fullAccess, true);
    const me = p.toJson();
    assert.deepEqual(Object.keys(me).sort(), [
      'created_at',
      'expires_at',
      'ip_allowlist',
      'is_expired',
      'is_provisioned',
      'last_access',
      'name',
      'permissions',
      'ttl',
      'value',
    ]);
    assert.equal(me.value, '');
    assert.equal(me.is_provisioned, true);
    assert.deepEqual(me.permissions, { full_access: true, read: [], write: [] });
    assert.equal(me.expires_at, null);
    assert.equal(me.ttl, null);
    assert.deepEqual(me.ip_allowlist, []);
    assert.equal(me.is_expired, false);
    assert.ok(!Number.isNaN(Date.parse(me.created_at)));
    await rejects(() => s.remove('init-token'), 409, "Can't remove provisioned token 'init-token'");
    await rejects(() => s.rotate('init-token'), 409, "Can't rotate provisioned token 'init-token'");
  });
});

test('authentication errors (§3.4)', async () => {
  await withStore(INIT, async (s) => {
    await rejects(() => s.authenticate(undefined, undefined), 401, 'No bearer token in request header');
    await rejects(() => s.authenticate('Basic abc', undefined), 401, 'No bearer token in request header');
    await rejects(
      () => s.authenticate('bearer init-secret', undefined),
      401,
      'No bearer token in request header',
    );
    await rejects(() => s.authenticate(bearer('nope'), undefined), 401, 'Invalid token');
    await rejects(() => s.authenticate(bearer(''), undefined), 401, 'Invalid token');
  });
});

test('create: both body shapes, value format, token JSON, list sorted', async () => {
  await withStore(INIT, async (s) => {
    const created = await s.create('writer', {
      permissions: { full_access: false, read: ['bucket-1'], write: ['cam-*'] },
      expires_at: '2099-01-01T00:00:00Z',
      ttl: 3600,
      ip_allowlist: ['10.0.0.0/8'],
    });
    assert.match(created.value, /^writer-[0-9a-f]{32}$/);
    assert.ok(Math.abs(Date.parse(created.created_at) - Date.now()) < 5000);
    const flat = await s.create('flat', { full_access: false, read: ['a'], write: [] });
    assert.match(flat.value, /^flat-[0-9a-f]{32}$/);
    await s.create('empty', {});

    const t = s.get('writer');
    assert.deepEqual(t, {
      name: 'writer',
      value: '',
      created_at: created.created_at,
      permissions: { full_access: false, read: ['bucket-1'], write: ['cam-*'] },
      is_provisioned: false,
      expires_at: '2099-01-01T00:00:00.000Z',
      ttl: 3600,
      last_access: null,
      ip_allowlist: ['10.0.0.0/8'],
      is_expired: false,
    } satisfies TokenJson);
    assert.deepEqual(s.get('empty').permissions, { full_access: false, read: [], write: [] });
    assert.deepEqual(
      s.list().map((x) => x.name),
      ['empty', 'flat', 'init-token', 'writer'],
    );
    assert.ok(s.list().every((x) => x.value === ''));

    const p = s.authenticate(bearer(flat.value), undefined);
    assert.equal(p.name, 'flat');
    assert.deepEqual(p.read, ['a']);
    assert.notEqual(s.get('flat').last_access, null);
  });
});

test('create validation (§5.4, §5.6)', async () => {
  await withStore(INIT, async (s) => {
    await s.create('t1', {});
    await rejects(() => s.create('', {}), 422, "Token name can't be empty");
    await rejects(() => s.create('t1', {}), 409, "Token 't1' already exists");
    await rejects(
      () => s.create('x', { full_access: true, extra: 1 }),
      422,
      /^Invalid JSON: unknown field 'extra'/,
    );
    await rejects(() => s.create('x', { permissions: {}, foo: 1 }), 422, /unknown field 'foo'/);
    await rejects(
      () => s.create('x', { permissions: { full_access: true, admin: true } }),
      422,
      /unknown field 'admin'/,
    );
    await rejects(() => s.create('x', { full_access: 'yes' }), 422, /^Invalid JSON/);
    await rejects(() => s.create('x', { read: 'a' }), 422, /^Invalid JSON/);
    await rejects(() => s.create('x', [1]), 422, /^Invalid JSON/);
    await rejects(
      () => s.create('x', { read: ['%!'] }),
      422,
      "Permission can contain only bucket names or wildcard '*', got '%!'",
    );
    await rejects(
      () => s.create('x', { write: ['a b'] }),
      422,
      "Permission can contain only bucket names or wildcard '*', got 'a b'",
    );
    await rejects(
      () => s.create('x', { permissions: {}, ttl: 0 }),
      422,
      'Token TTL must be greater than zero',
    );
    await rejects(() => s.create('x', { permissions: {}, ttl: -1 }), 422, /^Invalid JSON/);
    await rejects(
      () => s.create('x', { permissions: {}, expires_at: '2001-01-01T00:00:00Z' }),
      422,
      'Token expiration date must not be in the past',
    );
    await rejects(() => s.create('x', { permissions: {}, expires_at: 'soon' }), 422, /^Invalid JSON/);
    await rejects(
      () => s.create('x', { ip_allowlist: ['10.0.0.0/33'] }),
      422,
      /Invalid IP allowlist entry '10.0.0.0\/33'/,
    );
    // Nothing of the failed attempts was created.
    assert.deepEqual(
      s.list().map((x) => x.name),
      ['init-token', 't1'],
    );
    // Literal special-bucket items are allowed.
    await s.create('sys', { permissions: { read: ['$system'] } });
    assert.deepEqual(s.get('sys').permissions.read, ['$system']);
  });
});

test('get / remove / rotate', async () => {
  await withStore(INIT, async (s) => {
    await rejects(() => s.get('ghost'), 404, "Token 'ghost' doesn't exist");
    await rejects(() => s.remove('ghost'), 404, "Token 'ghost' doesn't exist");
    await rejects(() => s.rotate('ghost'), 404, "Token 'ghost' doesn't exist");

    const first = await s.create('r', { read: ['b'] });
    s.authenticate(bearer(first.value), undefined);
    const rotated = await s.rotate('r');
    assert.match(rotated.value, /^r-[0-9a-f]{32}$/);
    assert.notEqual(rotated.value, first.value);
    await rejects(() => s.authenticate(bearer(first.value), undefined), 401, 'Invalid token');
    assert.equal(s.authenticate(bearer(rotated.value), undefined).name, 'r');
    assert.equal(s.get('r').created_at, rotated.created_at);

    await s.remove('r');
    await rejects(() => s.get('r'), 404, "Token 'r' doesn't exist");
    await rejects(() => s.authenticate(bearer(rotated.value), undefined), 401, 'Invalid token');
  });
});

test('expiry: expires_at and inactivity ttl', async () => {
  await withStore(INIT, async (s) => {
    const soon = new Date(Date.now() + 300).toISOString();
    const abs = await s.create('abs', { permissions: {}, expires_at: soon });
    const idle = await s.create('idle', { permissions: {}, ttl: 1 });
    assert.equal(s.authenticate(bearer(abs.value), undefined).name, 'abs');
    assert.equal(s.authenticate(bearer(idle.value), undefined).name, 'idle');
    await sleep(600);
    // Used 600 ms ago with ttl 1 s: still valid, and the use refreshes last_access.
    assert.equal(s.authenticate(bearer(idle.value), undefined).name, 'idle');
    await rejects(() => s.authenticate(bearer(abs.value), undefined), 401, 'Token has expired');
    assert.equal(s.get('abs').is_expired, true);
    await rejects(() => s.rotate('abs'), 422, "Can't rotate expired token 'abs'");
    await sleep(1200);
    assert.equal(s.get('idle').is_expired, true);
    await rejects(() => s.authenticate(bearer(idle.value), undefined), 401, 'Token has expired');
    // Rotation revives an idle-expired token.
    const fresh = await s.rotate('idle');
    assert.equal(s.authenticate(bearer(fresh.value), undefined).name, 'idle');
  });
});

test('IP allow-lists with CIDR, IPv6 and IPv4-mapped addresses', async () => {
  await withStore(INIT, async (s) => {
    const t = await s.create('ip', {
      permissions: {},
      ip_allowlist: ['203.0.113.5', '10.10.0.0/16', '2001:db8::/32'],
    });
    const auth = (ip: string | undefined) => s.authenticate(bearer(t.value), ip);
    assert.equal(auth('203.0.113.5').name, 'ip');
    assert.equal(auth('10.10.200.1').name, 'ip');
    assert.equal(auth('::ffff:10.10.0.7').name, 'ip');
    assert.equal(auth('2001:db8::1234').name, 'ip');
    await rejects(() => auth('10.11.0.1'), 401, 'Token is not allowed for client IP 10.11.0.1');
    await rejects(() => auth('::ffff:127.0.0.1'), 401, 'Token is not allowed for client IP 127.0.0.1');
    await rejects(() => auth('2001:db9::1'), 401, 'Token is not allowed for client IP 2001:db9::1');
    await rejects(() => auth(undefined), 401, 'Client IP is required for this token');
    // Tokens without a list accept any client, known or not.
    assert.equal(s.authenticate(bearer('init-secret'), undefined).name, 'init-token');
  });
});

test('permission checks and exact 403 messages', async () => {
  await withStore(INIT, async (s) => {
    const t = await s.create('cam', {
      permissions: { read: ['cam-*', 'exact', '$system'], write: ['exact'] },
    });
    const w = await s.create('wild', { permissions: { read: ['*'], write: ['*'] } });
    const p = s.authenticate(bearer(t.value), undefined);
    const all = s.authenticate(bearer(w.value), undefined);
    const admin = s.authenticate(bearer('init-secret'), undefined);

    assert.equal(s.canRead(p, 'cam-front'), true);
    assert.equal(s.canRead(p, 'exact'), true);
    assert.equal(s.canRead(p, 'exactly'), false);
    assert.equal(s.canRead(p, '$system'), true);
    s.checkWrite(p, 'exact');
    await rejects(() => s.checkFullAccess(p), 403, "Token 'cam' doesn't have full access");
    await rejects(
      () => s.checkRead(p, 'other'),
      403,
      "Token 'cam' doesn't have read access to bucket 'other'",
    );
    await rejects(
      () => s.checkWrite(p, 'cam-front'),
      403,
      "Token 'cam' doesn't have write access to bucket 'cam-front'",
    );

    // '*' matches every bucket except '$' ones.
    s.checkRead(all, 'anything');
    s.checkWrite(all, 'anything');
    assert.equal(s.canRead(all, '$system'), false);
    await rejects(
      () => s.checkWrite(all, '$system'),
      403,
      "Token 'wild' doesn't have write access to bucket '$system'",
    );
    s.checkFullAccess(admin);
    s.checkRead(admin, '$system');
    s.checkWrite(admin, '$system');
  });
});

test('removing the last full-access token is refused', async () => {
  await withStore({ RS_INIT_API_TOKEN: 'boot' }, async (s) => {
    const init = s.get('init-token');
    assert.equal(init.is_provisioned, false);
    assert.equal(s.authenticate(bearer('boot'), undefined).name, 'init-token');
    await rejects(
      () => s.remove('init-token'),
      409,
      "Can't remove token 'init-token': it is the last token with full access",
    );
    const admin = await s.create('admin', { permissions: { full_access: true } });
    await s.remove('init-token');
    await rejects(() => s.remove('admin'), 409, /last token with full access/);
    // A restricted token can always be removed.
    await s.create('ro', {});
    await s.remove('ro');
    assert.equal(s.authenticate(bearer(admin.value), undefined).name, 'admin');
  });
});

test('bucket removal and rename update permission lists', async () => {
  await withStore(INIT, async (s) => {
    await s.create('t', { permissions: { read: ['a', 'b', 'a*'], write: ['a'] } });
    await s.onBucketRenamed('a', 'z');
    assert.deepEqual(s.get('t').permissions, { full_access: false, read: ['z', 'b', 'a*'], write: ['z'] });
    await s.onBucketRemoved('b');
    await s.onBucketRemoved('z');
    assert.deepEqual(s.get('t').permissions, { full_access: false, read: ['a*'], write: [] });
  });
});

test('persistence across reopen: hashed values only, mode 0600, provisioning re-applied', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tokens-'));
  try {
    const env = {
      RS_DATA_PATH: dir,
      RS_API_TOKEN: 'init-secret',
      RS_TOKEN_1_NAME: 'prov',
      RS_TOKEN_1_VALUE: 'prov-secret',
      RS_TOKEN_1_READ: 'x',
    };
    let s = await openTokenStore(loadConfig(env));
    const t = await s.create('kept', { permissions: { read: ['b'] }, ttl: 100, ip_allowlist: ['127.0.0.1'] });
    s.authenticate(bearer(t.value), '127.0.0.1');
    const lastAccess = s.get('kept').last_access;
    await s.close();

    const file = join(dir, '.ferry', 'tokens.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, 'utf8');
    for (const secret of [t.value, 'init-secret', 'prov-secret'])
      assert.ok(!text.includes(secret), 'clear token value on disk');

    s = await openTokenStore(loadConfig(env));
    assert.equal(s.authenticate(bearer(t.value), '127.0.0.1').name, 'kept');
    const kept = s.get('kept');
    assert.equal(kept.ttl, 100);
    assert.deepEqual(kept.ip_allowlist, ['127.0.0.1']);
    assert.ok(lastAccess !== null && kept.last_access !== null && kept.last_access >= lastAccess);
    assert.equal(s.authenticate(bearer('prov-secret'), undefined).name, 'prov');
    assert.equal(s.get('prov').is_provisioned, true);
    await rejects(() => s.remove('prov'), 409, "Can't remove provisioned token 'prov'");
    await s.close();

    // Provisioning changes are applied; tokens no longer provisioned disappear; RS_API_TOKEN value changes take effect.
    const env2 = { RS_DATA_PATH: dir, RS_API_TOKEN: 'new-init' };
    s = await openTokenStore(loadConfig(env2));
    await rejects(() => s.authenticate(bearer('init-secret'), undefined), 401, 'Invalid token');
    assert.equal(s.authenticate(bearer('new-init'), undefined).name, 'init-token');
    await rejects(() => s.get('prov'), 404, "Token 'prov' doesn't exist");
    assert.equal(s.get('kept').name, 'kept');
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RS_INIT_API_TOKEN creates init-token only once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tokens-'));
  try {
    const env = { RS_DATA_PATH: dir, RS_INIT_API_TOKEN: 'boot' };
    let s = await openTokenStore(loadConfig(env));
    const admin = await s.create('admin', { permissions: { full_access: true } });
    const rotated = await s.rotate('init-token');
    await s.close();
    s = await openTokenStore(loadConfig(env));
    // The rotated value stays; 'boot' is not re-applied.
    await rejects(() => s.authenticate(bearer('boot'), undefined), 401, 'Invalid token');
    assert.equal(s.authenticate(bearer(rotated.value), undefined).name, 'init-token');
    await s.remove('init-token');
    await s.close();
    s = await openTokenStore(loadConfig(env));
    await rejects(() => s.get('init-token'), 404, "Token 'init-token' doesn't exist");
    assert.equal(s.authenticate(bearer(admin.value), undefined).name, 'admin');
    await s.close();
    // Without any token variable the stored tokens still protect the server.
    const c = loadConfig({ RS_DATA_PATH: dir });
    assert.deepEqual(c.auth, { mode: 'none' });
    s = await openTokenStore(c);
    assert.equal(s.disabled, false);
    assert.equal(s.authenticate(bearer(admin.value), undefined).name, 'admin');
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('authentication disabled', async () => {
  await withStore({ RS_DISABLE_AUTH: 'true' }, async (s, dir) => {
    assert.equal(s.disabled, true);
    const p = s.authenticate(undefined, undefined);
    assert.equal(p.name, 'AUTHENTICATION-DISABLED');
    assert.equal(p.fullAccess, true);
    assert.equal(s.authenticate('Bearer whatever', '1.2.3.4').name, 'AUTHENTICATION-DISABLED');
    const me = p.toJson();
    assert.equal(me.name, 'AUTHENTICATION-DISABLED');
    assert.deepEqual(me.permissions, { full_access: true, read: [], write: [] });
    assert.deepEqual(s.list(), []);
    await rejects(() => s.create('x', {}), 400, 'Authentication is disabled');
    await rejects(() => s.get('x'), 400, 'Authentication is disabled');
    await rejects(() => s.rotate('x'), 400, 'Authentication is disabled');
    await s.remove('x');
    await s.onBucketRemoved('b');
    s.checkFullAccess(p);
    s.checkRead(p, '$system');
    assert.throws(() => statSync(join(dir, '.ferry', 'tokens.json')), /ENOENT/);
  });
});

test('concurrent creates of one name: exactly one wins', async () => {
  await withStore(INIT, async (s) => {
    const results = await Promise.allSettled([s.create('dup', {}), s.create('dup', {}), s.create('dup', {})]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    assert.equal(
      results.filter((r) => r.status === 'rejected' && (r.reason as FerryError).status === 409).length,
      2,
    );
  });
});

test('switching from RS_API_TOKEN to RS_INIT_API_TOKEN never locks the server', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tokens-'));
  try {
    let s = await openTokenStore(loadConfig({ RS_DATA_PATH: dir, RS_INIT_API_TOKEN: 'first' }));
    await s.close();
    s = await openTokenStore(loadConfig({ RS_DATA_PATH: dir, RS_API_TOKEN: 'prov' }));
    assert.equal(s.get('init-token').is_provisioned, true);
    await s.close();
    s = await openTokenStore(loadConfig({ RS_DATA_PATH: dir, RS_INIT_API_TOKEN: 'again' }));
    assert.equal(s.authenticate(bearer('again'), undefined).name, 'init-token');
    assert.equal(s.get('init-token').is_provisioned, false);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
