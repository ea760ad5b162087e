/**
 * Token routes (api.md §5.3), all FullAccess. The TokenStore owns validation and messages
 * (including 400 `Authentication is disabled`); this module only adapts HTTP.
 */
import { fullAccess } from '../auth-hook.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Routes of the token API. */
export function tokenRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'tokens',
      handler: (ctx) => {
        fullAccess(ctx);
        const { tokens } = ctx.services;
        sendJson(ctx.res, { tokens: tokens.disabled ? [] : tokens.list() });
      },
    },
    {
      method: 'GET',
      path: 'tokens/:name',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, ctx.services.tokens.get(ctx.param('name')));
      },
    },
    {
      method: 'POST',
      path: 'tokens/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        const body = (await ctx.json()) ?? {};
        sendJson(ctx.res, await ctx.services.tokens.create(ctx.param('name'), body));
      },
    },
    {
      // `POST /tokens/` (empty name): let the store reject it with its 422.
      method: 'POST',
      path: 'tokens',
      handler: async (ctx) => {
        fullAccess(ctx);
        const body = (await ctx.json()) ?? {};
        sendJson(ctx.res, await ctx.services.tokens.create('', body));
      },
    },
    {
      method: 'DELETE',
      path: 'tokens/:name',
      handler: async (ctx) => {
        fullAccess(ctx);
        await ctx.services.tokens.remove(ctx.param('name'));
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'POST',
      path: 'tokens/:name/rotate',
      handler: async (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, await ctx.services.tokens.rotate(ctx.param('name')));
      },
    },
  ];
}
