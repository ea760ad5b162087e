/**
 * Lifecycle API (api.md §16), all FullAccess; the LifecycleManager owns validation, messages and
 * the wire shapes. `POST /lifecycles/{name}/run` is a Ferry extension that runs a policy now.
 */
import { fullAccess } from '../auth-hook.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Routes of the lifecycle API. */
export function lifecycleRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'lifecycles',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, ctx.services.lifecycles.list());
      },
    },
    {
      method: 'GET',
      path: 'lifecycles/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, ctx.services.lifecycles.get(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'lifecycles/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.lifecycles.create(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'lifecycles/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.lifecycles.update(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PATCH',
      path: 'lifecycles/:name/mode',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.lifecycles.setMode(ctx.param('name'), await ctx.json());
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'DELETE',
      path: 'lifecycles/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.lifecycles.remove(ctx.param('name'));
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'POST',
      path: 'lifecycles/:name/run',
      handler: async (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, await ctx.services.lifecycles.runNow(ctx.param('name')));
      },
    },
  ];
}
