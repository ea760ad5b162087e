/**
 * `GET /metrics` (at `{RS_API_BASE_PATH}metrics`, outside `api/v1/` where scrapers look for it):
 * the Prometheus text format. Authorised like `/info` (any valid token) unless
 * `FERRY_METRICS_OPEN=true`.
 */
import { authenticated } from '../auth-hook.js';
import type { FerryMetrics } from '../metrics.js';
import type { Handler } from '../router.js';

/** The handler of the metrics route. */
export function metricsHandler(metrics: FerryMetrics): Handler {
  return async (ctx) => {
    if (!ctx.services.config.metricsOpen) authenticated(ctx);
    const { contentType, body } = await metrics.render();
    const buf = Buffer.from(body);
    ctx.res.statusCode = 200;
    ctx.res.setHeader('content-type', contentType);
    ctx.res.setHeader('content-length', buf.length);
    ctx.res.end(buf);
  };
}
