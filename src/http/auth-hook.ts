/**
 * Access policies of api.md §4 on top of the TokenStore. Every handler starts with one of these
 * calls; the principal is kept on the context for the audit trail.
 */
import type { Principal } from '../auth/types.js';
import { Errors, type FerryError } from '../protocol/errors.js';
import type { RequestContext } from './context.js';

/** Authenticated: any valid token (401 otherwise). */
export function authenticated(ctx: RequestContext): Principal {
  if (ctx.principal) return ctx.principal;
  const { tokens, clientIp } = ctx.services;
  const ip = clientIp(ctx.req.socket.remoteAddress, ctx.req.headers);
  const principal = tokens.authenticate(ctx.header('authorization'), ip);
  ctx.principal = principal;
  return principal;
}

/** FullAccess (401 / 403). */
export function fullAccess(ctx: RequestContext): Principal {
  const p = authenticated(ctx);
  ctx.services.tokens.checkFullAccess(p);
  return p;
}

/** Read(bucket) (401 / 403). */
export function readAccess(ctx: RequestContext, bucket: string): Principal {
  const p = authenticated(ctx);
  ctx.services.tokens.checkRead(p, bucket);
  return p;
}

/** Write(bucket) (401 / 403). */
export function writeAccess(ctx: RequestContext, bucket: string): Principal {
  const p = authenticated(ctx);
  ctx.services.tokens.checkWrite(p, bucket);
  return p;
}

/**
 * Read(bucket) or Write(bucket) (401 / 403): what a query route can check before its body says
 * whether it is a QUERY (read) or a REMOVE (write), so that no body is read for a stranger.
 */
export function readOrWriteAccess(ctx: RequestContext, bucket: string): Principal {
  const p = authenticated(ctx);
  const { tokens } = ctx.services;
  if (!tokens.canRead(p, bucket)) {
    try {
      tokens.checkWrite(p, bucket);
    } catch {
      tokens.checkRead(p, bucket);
    }
  }
  return p;
}

/**
 * 403 on a `RS_INSTANCE_ROLE=REPLICA` instance, for routes whose method alone does not tell whether
 * they mutate (query routes: REMOVE mutates, QUERY does not).
 */
export function assertWritableInstance(ctx: RequestContext): void {
  if (ctx.services.config.instanceRole === 'REPLICA') throw replicaForbidden();
}

/** The 403 answered for mutations on a read-only replica (§7.5). */
export function replicaForbidden(): FerryError {
  return Errors.forbidden('The instance is a read-only replica');
}
