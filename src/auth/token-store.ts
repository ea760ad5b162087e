/**
 * The token store (api.md §3.4, §5): authentication, permission checks and token management.
 *
 * Token values (`<name>-<32 hex>`) exist in clear only in the create/rotate responses; the store
 * keeps `sha256(salt || value)` with a per-token random salt, in memory and in
 * `<dataPath>/.ferry/tokens.json`. Authentication runs on every request, so a verified value is
 * remembered in a map keyed by `sha256(value)` (in memory only) and later lookups cost one hash.
 * `last_access` is tracked in memory on every request and persisted lazily (every 30 s, on the next
 * mutation and on close).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { Errors } from '../protocol/errors.js';
import { MAX_TOKEN_NAME_BYTES } from '../protocol/limits.js';
import { isValidBucketName } from '../protocol/names.js';
import type { FerryConfig, ProvisionedToken } from '../config/types.js';
import { TOKEN_FILE } from '../config/load-config.js';
import type { Principal, TokenJson, TokenStore } from './types.js';
import { parseIp, parseIpRange, formatIp, rangeContains, type IpRange } from './ip-address.js';
import { isValidPermissionItem, matchesBucket } from './permissions.js';
import { parseTokenCreateRequest } from './token-request.js';
import { readTokenFile, writeTokenFile, type StoredToken, type TokenFileContent } from './token-file.js';

/** Name of the token defined by `RS_API_TOKEN` / `RS_INIT_API_TOKEN`. */
export const INIT_TOKEN_NAME = 'init-token';
/** Name of the principal every request gets when authentication is disabled. */
export const AUTH_DISABLED_NAME = 'AUTHENTICATION-DISABLED';

const LAST_ACCESS_FLUSH_MS = 30_000;

interface TokenRecord {
  name: string;
  salt: Buffer;
  hash: Buffer;
  createdAt: string;
  fullAccess: boolean;
  read: string[];
  write: string[];
  expiresAt: string | null;
  expiresMs: number | null;
  ttl: number | null;
  lastAccessMs: number | null;
  ipAllowlist: string[];
  ranges: IpRange[];
  provisioned: boolean;
}

/** A record with the defaults of a fresh token: no permissions, limits, expiry or access yet. */
function tokenRecord(
  fields: Pick<TokenRecord, 'name' | 'salt' | 'hash' | 'createdAt'> & Partial<TokenRecord>,
): TokenRecord {
  return {
    fullAccess: false,
    read: [],
    write: [],
    expiresAt: null,
    expiresMs: null,
    ttl: null,
    lastAccessMs: null,
    ipAllowlist: [],
    ranges: [],
    provisioned: false,
    ...fields,
  };
}

/** A new token value: `<name>-<32 hex>`. */
function newTokenValue(name: string): string {
  return `${name}-${randomBytes(16).toString('hex')}`;
}

function hashValue(salt: Buffer, value: string): Buffer {
  return createHash('sha256').update(salt).update(value, 'utf8').digest();
}

function newSecret(value: string): { salt: Buffer; hash: Buffer } {
  const salt = randomBytes(16);
  return { salt, hash: hashValue(salt, value) };
}

function verify(rec: TokenRecord, value: string): boolean {
  return timingSafeEqual(hashValue(rec.salt, value), rec.hash);
}

function isExpired(rec: TokenRecord, now: number): boolean {
  if (rec.expiresMs !== null && now >= rec.expiresMs) return true;
  if (rec.ttl !== null) {
    const since = rec.lastAccessMs ?? Date.parse(rec.createdAt);
    if (now - since > rec.ttl * 1000) return true;
  }
  return false;
}

function toJson(rec: TokenRecord, now: number): TokenJson {
  return {
    name: rec.name,
    value: '',
    created_at: rec.createdAt,
    permissions: { full_access: rec.fullAccess, read: [...rec.read], write: [...rec.write] },
    is_provisioned: rec.provisioned,
    expires_at: rec.expiresAt,
    ttl: rec.ttl,
    last_access: rec.lastAccessMs === null ? null : new Date(rec.lastAccessMs).toISOString(),
    ip_allowlist: [...rec.ipAllowlist],
    is_expired: isExpired(rec, now),
  };
}

function cloneRecord(rec: TokenRecord): TokenRecord {
  return {
    ...rec,
    read: [...rec.read],
    write: [...rec.write],
    ipAllowlist: [...rec.ipAllowlist],
    ranges: [...rec.ranges],
  };
}

function parseRanges(items: readonly string[]): IpRange[] {
  const out: IpRange[] = [];
  for (const item of items) {
    const r = parseIpRange(item);
    if (r) out.push(r);
  }
  return out;
}

function fromStored(s: StoredToken, provisioned: boolean): TokenRecord {
  const expiresMs = s.expires_at === null ? null : Date.parse(s.expires_at);
  return {
    name: s.name,
    salt: Buffer.from(s.salt, 'hex'),
    hash: Buffer.from(s.hash, 'hex'),
    createdAt: s.created_at,
    fullAccess: s.permissions.full_access === true,
    read: [...(s.permissions.read ?? [])],
    write: [...(s.permissions.write ?? [])],
    expiresAt: s.expires_at,
    expiresMs: expiresMs === null || Number.isNaN(expiresMs) ? null : expiresMs,
    ttl: s.ttl,
    lastAccessMs: s.last_access === null ? null : Date.parse(s.last_access),
    ipAllowlist: [...(s.ip_allowlist ?? [])],
    ranges: parseRanges(s.ip_allowlist ?? []),
    provisioned,
  };
}

function toStored(rec: TokenRecord): StoredToken & { is_provisioned: boolean } {
  return {
    name: rec.name,
    salt: rec.salt.toString('hex'),
    hash: rec.hash.toString('hex'),
    created_at: rec.createdAt,
    permissions: { full_access: rec.fullAccess, read: rec.read, write: rec.write },
    expires_at: rec.expiresAt,
    ttl: rec.ttl,
    last_access: rec.lastAccessMs === null ? null : new Date(rec.lastAccessMs).toISOString(),
    ip_allowlist: rec.ipAllowlist,
    is_provisioned: rec.provisioned,
  };
}

class Store implements TokenStore {
  private tokens = new Map<string, TokenRecord>();
  /** sha256(value) hex → record, for values verified before. Cleared on every mutation. */
  private verified = new Map<string, TokenRecord>();
  private initTokenCreated = false;
  private lock: Promise<unknown> = Promise.resolve();
  private lastAccessDirty = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly openedAt = new Date().toISOString();

  constructor(
    readonly disabled: boolean,
    private readonly file: string,
  ) {}

  // ---- start-up ----------------------------------------------------------------------------

  async load(config: FerryConfig): Promise<void> {
    const content = await readTokenFile(this.file);
    let changed = content === undefined;
    this.initTokenCreated = content?.init_token_created ?? false;
    const stored = new Map<string, StoredToken & { is_provisioned?: boolean }>();
    for (const t of content?.tokens ?? []) stored.set(t.name, t);

    // Provisioned tokens are re-applied at every start; ones no longer configured disappear.
    const provisioned: ProvisionedToken[] = [];
    if (config.auth.mode === 'provisioned') {
      provisioned.push({
        name: INIT_TOKEN_NAME,
        value: config.auth.token,
        fullAccess: true,
        read: [],
        write: [],
      });
    }
    for (const t of config.tokens)
      if (t.name !== INIT_TOKEN_NAME || config.auth.mode !== 'provisioned') provisioned.push(t);
    for (const [name, s] of stored) {
      if (s.is_provisioned && !provisioned.some((p) => p.name === name)) {
        stored.delete(name);
        changed = true;
      }
    }
    for (const s of stored.values()) this.tokens.set(s.name, fromStored(s, s.is_provisioned === true));
    for (const p of provisioned) {
      const old = this.tokens.get(p.name);
      const secret = old && verify(old, p.value) ? { salt: old.salt, hash: old.hash } : newSecret(p.value);
      const expiresMs = p.expiresAt === undefined ? null : Date.parse(p.expiresAt);
      this.tokens.set(
        p.name,
        tokenRecord({
          name: p.name,
          ...secret,
          createdAt: old?.createdAt ?? new Date().toISOString(),
          fullAccess: p.fullAccess,
          read: [...p.read],
          write: [...p.write],
          expiresAt: p.expiresAt ?? null,
          expiresMs,
          lastAccessMs: old?.lastAccessMs ?? null,
          provisioned: true,
        }),
      );
      changed = true;
    }
    // Created once; again only if no full-access token is left (e.g. after switching from
    // RS_API_TOKEN, whose provisioned init-token has just been dropped), so nobody is locked out.
    const now = Date.now();
    const anyAdmin = [...this.tokens.values()].some((t) => t.fullAccess && !isExpired(t, now));
    if (config.auth.mode === 'init' && (!this.initTokenCreated || !anyAdmin)) {
      if (!this.tokens.has(INIT_TOKEN_NAME)) {
        this.tokens.set(
          INIT_TOKEN_NAME,
          tokenRecord({
            name: INIT_TOKEN_NAME,
            ...newSecret(config.auth.token),
            createdAt: new Date().toISOString(),
            fullAccess: true,
          }),
        );
      }
      this.initTokenCreated = true;
      changed = true;
    }
    if (changed) await this.save(this.tokens);
    this.timer = setInterval(() => this.flushLastAccess(), LAST_ACCESS_FLUSH_MS);
    this.timer.unref();
  }

  // ---- persistence -------------------------------------------------------------------------

  private async save(tokens: Map<string, TokenRecord>): Promise<void> {
    const content: TokenFileContent = {
      version: 1,
      init_token_created: this.initTokenCreated,
      tokens: [...tokens.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map(toStored),
    };
    this.lastAccessDirty = false;
    await writeTokenFile(this.file, content);
  }

  /** Runs `fn` exclusively (mutations and saves never interleave). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Applies a mutation to a copy of the token map, persists the copy and only then makes it
   * current, so that a failed write leaves the store unchanged.
   */
  private commit<T>(mutate: (draft: Map<string, TokenRecord>, now: number) => T): Promise<T> {
    return this.exclusive(async () => {
      const draft = new Map<string, TokenRecord>();
      for (const [k, v] of this.tokens) draft.set(k, cloneRecord(v));
      const result = mutate(draft, Date.now());
      await this.save(draft);
      // Keep accesses that happened while the file was being written (unless the value was rotated).
      for (const [k, v] of draft) {
        const cur = this.tokens.get(k);
        const seen = cur?.lastAccessMs ?? null;
        if (cur && seen !== null && cur.hash.equals(v.hash) && (v.lastAccessMs ?? -1) < seen)
          v.lastAccessMs = seen;
      }
      this.tokens = draft;
      this.verified.clear();
      return result;
    });
  }

  private flushLastAccess(): void {
    if (!this.lastAccessDirty) return;
    void this.exclusive(() => this.save(this.tokens)).catch(() => {
      this.lastAccessDirty = true; // retried on the next tick
    });
  }

  /** Persists pending `last_access` updates and stops the background timer. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.lastAccessDirty && !this.disabled) await this.exclusive(() => this.save(this.tokens));
    else await this.lock;
  }

  // ---- authentication ----------------------------------------------------------------------

  private principal(rec: TokenRecord): Principal {
    return {
      name: rec.name,
      fullAccess: rec.fullAccess,
      read: rec.read,
      write: rec.write,
      toJson: () => toJson(rec, Date.now()),
    };
  }

  private disabledPrincipal(): Principal {
    const json: TokenJson = {
      name: AUTH_DISABLED_NAME,
      value: '',
      created_at: this.openedAt,
      permissions: { full_access: true, read: [], write: [] },
      is_provisioned: false,
      expires_at: null,
      ttl: null,
      last_access: null,
      ip_allowlist: [],
      is_expired: false,
    };
    return {
      name: AUTH_DISABLED_NAME,
      fullAccess: true,
      read: [],
      write: [],
      toJson: () => structuredClone(json),
    };
  }

  authenticate(authorization: string | undefined, clientIp: string | undefined): Principal {
    if (this.disabled) return this.disabledPrincipal();
    if (authorization === undefined || !authorization.startsWith('Bearer ')) throw Errors.noBearerToken();
    const value = authorization.slice(7);
    const key = createHash('sha256').update(value, 'utf8').digest('hex');
    let rec = this.verified.get(key);
    if (!rec) {
      for (const r of this.tokens.values()) {
        if (verify(r, value)) {
          rec = r;
          break;
        }
      }
      if (!rec) throw Errors.invalidToken();
      this.verified.set(key, rec);
    }
    const now = Date.now();
    if (isExpired(rec, now)) throw Errors.tokenExpired();
    if (rec.ranges.length > 0 || rec.ipAllowlist.length > 0) {
      if (clientIp === undefined) throw Errors.tokenIpRequired();
      const ip = parseIp(clientIp);
      if (!ip || !rec.ranges.some((r) => rangeContains(r, ip))) {
        throw Errors.tokenIpNotAllowed(ip ? formatIp(ip) : clientIp);
      }
    }
    rec.lastAccessMs = now;
    this.lastAccessDirty = true;
    return this.principal(rec);
  }

  checkFullAccess(p: Principal): void {
    if (!p.fullAccess) throw Errors.noFullAccess(p.name);
  }

  checkRead(p: Principal, bucket: string): void {
    if (!this.canRead(p, bucket)) throw Errors.noReadAccess(p.name, bucket);
  }

  checkWrite(p: Principal, bucket: string): void {
    if (!p.fullAccess && !matchesBucket(p.write, bucket)) throw Errors.noWriteAccess(p.name, bucket);
  }

  canRead(p: Principal, bucket: string): boolean {
    return p.fullAccess || matchesBucket(p.read, bucket);
  }

  issuer(name: string): { principal: Principal; fingerprint: Buffer } | undefined {
    if (this.disabled) {
      return name === AUTH_DISABLED_NAME
        ? { principal: this.disabledPrincipal(), fingerprint: Buffer.alloc(0) }
        : undefined;
    }
    const rec = this.tokens.get(name);
    if (!rec) return undefined;
    if (isExpired(rec, Date.now())) throw Errors.tokenExpired();
    // The stored hash is already a salted digest of the value; hashing it again keeps even that out
    // of key derivation inputs that other modules see.
    const fingerprint = createHash('sha256')
      .update('ferry-issuer\0')
      .update(rec.salt)
      .update(rec.hash)
      .digest();
    return { principal: this.principal(rec), fingerprint };
  }

  // ---- management --------------------------------------------------------------------------

  list(): TokenJson[] {
    if (this.disabled) return [];
    const now = Date.now();
    return [...this.tokens.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((r) => toJson(r, now));
  }

  get(name: string): TokenJson {
    if (this.disabled) throw Errors.authDisabled();
    const rec = this.tokens.get(name);
    if (!rec) throw Errors.tokenNotFound(name);
    return toJson(rec, Date.now());
  }

  async create(name: string, body: unknown): Promise<{ value: string; created_at: string }> {
    if (this.disabled) throw Errors.authDisabled();
    const req = parseTokenCreateRequest(body);
    return this.commit((draft, now) => {
      if (name === '') throw Errors.tokenNameEmpty();
      // A name travels in token values (`<name>-<hex>`), audit events and messages: the bucket
      // alphabet keeps every one of them intact (a newline or `✓` could never authenticate).
      if (name.length > MAX_TOKEN_NAME_BYTES || !isValidBucketName(name)) {
        throw Errors.invalidTokenName(MAX_TOKEN_NAME_BYTES);
      }
      if (draft.has(name)) throw Errors.tokenExists(name);
      for (const item of [...req.read, ...req.write]) {
        if (!isValidPermissionItem(item)) throw Errors.tokenInvalidPermission(item);
      }
      if (req.ttl === 0) throw Errors.tokenTtlZero();
      let expiresMs: number | null = null;
      if (req.expiresAt !== null) {
        expiresMs = Date.parse(req.expiresAt);
        if (Number.isNaN(expiresMs))
          throw Errors.invalidJson(`'expires_at' must be an RFC 3339 date, got '${req.expiresAt}'`);
        if (expiresMs < now) throw Errors.tokenExpiresInPast();
      }
      const ranges: IpRange[] = [];
      for (const item of req.ipAllowlist) {
        const r = parseIpRange(item);
        if (!r) throw Errors.tokenInvalidIpAllowlist(item);
        ranges.push(r);
      }
      const value = newTokenValue(name);
      const createdAt = new Date(now).toISOString();
      draft.set(
        name,
        tokenRecord({
          name,
          ...newSecret(value),
          createdAt,
          fullAccess: req.fullAccess,
          read: req.read,
          write: req.write,
          expiresAt: expiresMs === null ? null : new Date(expiresMs).toISOString(),
          expiresMs,
          ttl: req.ttl,
          ipAllowlist: req.ipAllowlist,
          ranges,
        }),
      );
      return { value, created_at: createdAt };
    });
  }

  async remove(name: string): Promise<void> {
    if (this.disabled) return;
    await this.commit((draft, now) => {
      const rec = draft.get(name);
      if (!rec) throw Errors.tokenNotFound(name);
      if (rec.provisioned) throw Errors.tokenRemoveProvisioned(name);
      if (rec.fullAccess) {
        const another = [...draft.values()].some((r) => r !== rec && r.fullAccess && !isExpired(r, now));
        if (!another) throw Errors.tokenRemoveLastFullAccess(name);
      }
      draft.delete(name);
    });
  }

  async rotate(name: string): Promise<{ value: string; created_at: string }> {
    if (this.disabled) throw Errors.authDisabled();
    return this.commit((draft, now) => {
      const rec = draft.get(name);
      if (!rec) throw Errors.tokenNotFound(name);
      if (rec.provisioned) throw Errors.tokenRotateProvisioned(name);
      if (rec.expiresMs !== null && now >= rec.expiresMs) throw Errors.tokenRotateExpired(name);
      const value = newTokenValue(name);
      const secret = newSecret(value);
      rec.salt = secret.salt;
      rec.hash = secret.hash;
      rec.createdAt = new Date(now).toISOString();
      // A rotated token counts as used now, so that a ttl token is valid again.
      rec.lastAccessMs = now;
      return { value, created_at: rec.createdAt };
    });
  }

  async onBucketRemoved(bucket: string): Promise<void> {
    if (this.disabled || !this.mentions(bucket)) return;
    await this.commit((draft) => {
      for (const r of draft.values()) {
        r.read = r.read.filter((b) => b !== bucket);
        r.write = r.write.filter((b) => b !== bucket);
      }
    });
  }

  async onBucketRenamed(oldName: string, newName: string): Promise<void> {
    if (this.disabled || !this.mentions(oldName)) return;
    await this.commit((draft) => {
      for (const r of draft.values()) {
        r.read = r.read.map((b) => (b === oldName ? newName : b));
        r.write = r.write.map((b) => (b === oldName ? newName : b));
      }
    });
  }

  private mentions(bucket: string): boolean {
    for (const r of this.tokens.values())
      if (r.read.includes(bucket) || r.write.includes(bucket)) return true;
    return false;
  }
}

/**
 * Opens the token store for a configuration: loads `<dataPath>/.ferry/tokens.json`, applies the
 * provisioned tokens (`RS_API_TOKEN`, `RS_TOKEN_<ID>_*`) and creates `init-token` once for
 * `RS_INIT_API_TOKEN`. With authentication disabled nothing is read or written.
 * The returned store has a `close()` that persists pending `last_access` updates.
 */
export async function openTokenStore(config: FerryConfig): Promise<TokenStore & { close(): Promise<void> }> {
  const store = new Store(config.auth.mode === 'disabled', join(config.dataPath, TOKEN_FILE));
  if (!store.disabled) await store.load(config);
  return store;
}
