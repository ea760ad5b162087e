/**
 * Remotes API (replication.md §5): `/remotes`, `/remotes/{name}` and `/remotes/{name}/pin`, all
 * FullAccess like the replication API. Rules and shapes: src/replication/remotes.ts,
 * src/protocol/remotes.ts. Tokens are write-only: no answer carries one.
 */
import { Errors } from '../../protocol/errors.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { RemoteApi } from '../services.js';

function remotes(ctx: RequestContext): RemoteApi {
  const r = ctx.services.remotes;
  if (!r) throw Errors.serverStartingUp();
  return r;
}

/** `?force=true` (or `1`); anything else but absence is refused. */
function forceParam(ctx: RequestContext): boolean {
  const v = ctx.query.get('force');
  if (v === null || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw Errors.unprocessable("Invalid 'force': must be true or false");
}

/** Routes of the remotes API. */
export function remoteRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'remotes',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, remotes(ctx).list());
      },
    },
    {
      method: 'GET',
      path: 'remotes/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, remotes(ctx).get(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'remotes/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await remotes(ctx).create(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'remotes/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await remotes(ctx).update(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'POST',
      path: 'remotes/:name/pin',
      handler: async (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, await remotes(ctx).pin(ctx.param('name'), await ctx.json()));
      },
    },
    {
      method: 'DELETE',
      path: 'remotes/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        const force = forceParam(ctx);
        await remotes(ctx).remove(ctx.param('name'), force);
        sendEmpty(ctx.res);
      },
    },
  ];
}
