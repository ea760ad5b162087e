/**
 * Stored filters API (replication.md §3): `/filters` and `/filters/{name}`, all FullAccess like the
 * replication API. Rules and shapes: src/replication/filter-service.ts, src/protocol/filters.ts.
 */
import { Errors } from '../../protocol/errors.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { FilterApi } from '../services.js';

function filters(ctx: RequestContext): FilterApi {
  const f = ctx.services.filters;
  if (!f) throw Errors.serverStartingUp();
  return f;
}

/** Routes of the stored filters API. */
export function filterRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'filters',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, filters(ctx).list());
      },
    },
    {
      method: 'GET',
      path: 'filters/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, filters(ctx).get(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'filters/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await filters(ctx).create(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'filters/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await filters(ctx).update(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'DELETE',
      path: 'filters/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await filters(ctx).remove(ctx.param('name'));
        sendEmpty(ctx.res);
      },
    },
  ];
}
