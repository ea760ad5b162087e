/** Wire shapes of the token API (api.md §5.3–5.5). */

/** Permissions of a token. */
export interface TokenPermissions {
  full_access: boolean;
  read: string[];
  write: string[];
}

/** api.md §5.5 Token JSON — exactly these keys. `value` is `""` except right after creation. */
export interface TokenJson {
  name: string;
  value: string;
  created_at: string;
  permissions: TokenPermissions;
  is_provisioned: boolean;
  expires_at: string | null;
  ttl: number | null;
  last_access: string | null;
  ip_allowlist: string[];
  is_expired: boolean;
}

/** `GET /api/v1/tokens`. */
export interface TokenList {
  tokens: TokenJson[];
}

/** api.md §5.4 TokenCreateRequest (the 1.21 shape; a bare permissions object is accepted too). */
export interface TokenCreateRequest {
  permissions?: Partial<TokenPermissions>;
  expires_at?: string | null;
  ttl?: number | null;
  ip_allowlist?: string[];
}

/** Answer of `POST /api/v1/tokens/{name}` and `…/rotate`: the only time the value is shown. */
export interface TokenCreated {
  value: string;
  created_at: string;
}
