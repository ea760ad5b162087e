/**
 * Token store contract (api.md §5). Implemented by `token-store.ts`. JSON values are wire-shaped.
 */

import type { TokenCreated, TokenJson } from '../protocol/tokens.js';

// The wire shapes live in protocol/ (shared with the SDK and the CLI).
export type { TokenJson } from '../protocol/tokens.js';

/** The authenticated caller of a request. */
export interface Principal {
  name: string;
  fullAccess: boolean;
  read: string[];
  write: string[];
  /** The token JSON as `/me` returns it (value ""). */
  toJson(): TokenJson;
}

export interface TokenStore {
  /** True when RS_DISABLE_AUTH is set. */
  readonly disabled: boolean;
  /**
   * Authenticates an `Authorization` header value for a client IP (already resolved, may be
   * undefined). Throws 401 with the exact messages of api.md §3.4. With auth disabled returns the
   * `AUTHENTICATION-DISABLED` full-access principal.
   */
  authenticate(authorization: string | undefined, clientIp: string | undefined): Principal;
  /** 403 unless full access. */
  checkFullAccess(p: Principal): void;
  /** 403 unless read access to bucket (wildcards never match `$` buckets). */
  checkRead(p: Principal, bucket: string): void;
  /** 403 unless write access to bucket. */
  checkWrite(p: Principal, bucket: string): void;
  canRead(p: Principal, bucket: string): boolean;
  /**
   * The principal of token `name` without its value (query links, api.md §15, carry the name of
   * the token that issued them), plus a digest that changes whenever the token's value changes
   * (rotation, a new provisioned value, removal and re-creation). Undefined when no such token
   * exists; 401 when it has expired. With authentication disabled only `AUTHENTICATION-DISABLED`
   * exists (empty fingerprint).
   */
  issuer(name: string): { principal: Principal; fingerprint: Buffer } | undefined;

  /** Every token sorted by name; empty when authentication is disabled. */
  list(): TokenJson[];
  get(name: string): TokenJson;
  /**
   * Accepts both body shapes of §5.4 (already JSON-parsed; `undefined` or `null` = empty body).
   * Returns {value, created_at}.
   */
  create(name: string, body: unknown): Promise<TokenCreated>;
  remove(name: string): Promise<void>;
  rotate(name: string): Promise<TokenCreated>;
  /** Bucket removed / renamed: update every token's read and write lists (§5.7). */
  onBucketRemoved(bucket: string): Promise<void>;
  onBucketRenamed(oldName: string, newName: string): Promise<void>;
}
