/**
 * Replication API (api.md §17.1), all FullAccess; the ReplicationManager owns validation,
 * messages and the wire shapes.
 */
import { Errors } from '../../protocol/errors.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { ReplicationService } from '../services.js';

function manager(ctx: RequestContext): ReplicationService {
  const m = ctx.services.replications;
  if (!m) throw Errors.serverStartingUp();
  return m;
}

/** Routes of the replication API. */
export function replicationRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'replications',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, manager(ctx).list());
      },
    },
    {
      method: 'GET',
      path: 'replications/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, manager(ctx).get(ctx.param('name')));
      },
    },
    {
      method: 'GET',
      path: 'replications/:name/failures',
      handler: async (ctx) => {
        fullAccess(ctx);
        const m = manager(ctx);
        if (!m.failures) throw Errors.notFound();
        sendJson(ctx.res, await m.failures(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'replications/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await manager(ctx).create(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'replications/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        const { copy } = await manager(ctx).update(ctx.param('name'), await ctx.json());
        // the compatible answer stays empty; what happened to the copy is told in a header
        ctx.res.setHeader('x-ferry-copy', copy);
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PATCH',
      path: 'replications/:name/mode',
      handler: async (ctx) => {
        fullAccess(ctx);
        await manager(ctx).setMode(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'DELETE',
      path: 'replications/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await manager(ctx).remove(ctx.param('name'));
        sendEmpty(ctx.res);
      },
    },
  ];
}
