/**
 * Replication monitoring routes (replication.md §9), all FullAccess like the replication API:
 * `GET /active_tasks` and `GET /replications/{name}/status`; the events stream is in events.ts. Shapes: src/protocol/replication-status.ts.
 */
import { Errors } from '../../protocol/errors.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import type { MonitorService } from '../services.js';

/** The monitor, or 503 while replication is starting. */
export function monitorOf(ctx: RequestContext): MonitorService {
  const m = ctx.services.monitor;
  if (!m) throw Errors.serverStartingUp();
  return m;
}

/** Routes of the monitoring API. */
export function monitoringRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'active_tasks',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, monitorOf(ctx).activeTasks());
      },
    },
    {
      method: 'GET',
      path: 'replications/:name/status',
      handler: (ctx) => {
        fullAccess(ctx);
        sendJson(ctx.res, monitorOf(ctx).status(ctx.param('name')));
      },
    },
  ];
}
