/**
 * Consistency group API (replication.md §8), all FullAccess; the GroupService owns validation,
 * messages and the wire shapes.
 */
import { fullAccess } from '../auth-hook.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Routes of the group API. */
export function groupRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'groups',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, ctx.services.groups.list());
      },
    },
    {
      method: 'GET',
      path: 'groups/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, ctx.services.groups.get(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'groups/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.groups.create(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'groups/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.groups.update(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'DELETE',
      path: 'groups/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.groups.remove(ctx.param('name'));
        sendEmpty(ctx.res);
      },
    },
  ];
}
