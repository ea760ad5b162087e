/**
 * Token routes (api.md §5.3), all FullAccess. The TokenStore owns validation and messages
 * (including 400 `Authentication is disabled`, the empty list and the empty body); this module
 * only adapts HTTP.
 */
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { TokenList } from '../../protocol/tokens.js';

/** `POST /tokens/{name}`; on `POST /tokens/` the name is '' and the store answers its 422. */
async function createToken(ctx: RequestContext): Promise<void> {
  fullAccess(ctx);
  sendJson(ctx.res, await ctx.services.tokens.create(ctx.param('name'), await ctx.json()));
}

/** Routes of the token API. */
export function tokenRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'tokens',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, { tokens: ctx.services.tokens.list() } satisfies TokenList);
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
    { method: 'POST', path: 'tokens/:name', handler: createToken },
    { method: 'POST', path: 'tokens', handler: createToken },
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
