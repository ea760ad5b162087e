/**
 * `POST /api/v1/replications/{name}/verify[?repair=true]` runs a verification (and a repair) of a
 * replication and answers its result; `GET` answers the last result (replication.md §10). Both
 * FullAccess like the replication API. The body (optional) is `{"start", "stop", "entries",
 * "remove_extra"}`; the logic is src/replication/verify-service.ts.
 */
import { Errors } from '../../protocol/errors.js';
import { parseJson } from '../../protocol/json.js';
import { parseVerifyRequest } from '../../replication/verify-service.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { VerifyApi } from '../services.js';

function service(ctx: RequestContext): VerifyApi {
  const v = ctx.services.verify;
  if (!v) throw Errors.serverStartingUp();
  return v;
}

/** Routes of verify and repair. */
export function verifyRoutes(): Route[] {
  return [
    {
      method: 'POST',
      path: 'replications/:name/verify',
      handler: async (ctx) => {
        fullAccess(ctx);
        const v = service(ctx);
        const text = await ctx.body.text(ctx.services.config.maxJsonBody);
        const req = parseVerifyRequest(text.trim() === '' ? {} : parseJson(text), ctx.query);
        sendJson(ctx.res, await v.run(ctx.param('name'), req));
      },
    },
    {
      method: 'GET',
      path: 'replications/:name/verify',
      handler: async (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, await service(ctx).lastResult(ctx.param('name')));
      },
    },
  ];
}
