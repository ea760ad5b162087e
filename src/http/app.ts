/**
 * The HTTP server of Ferry (api.md §3).
 *
 * Why node:http + find-my-way instead of a framework: every request body is either a raw record
 * stream (single records, v1/v2 batches of possibly many GB) or bigint-safe JSON sent with any
 * Content-Type, and response headers must be byte-exact (`x-reduct-*`, CORS, error headers on
 * every status including 404/405 and Node's own client errors). A framework's body parsers,
 * serializers and error pages would all have to be switched off; what is left is a radix router,
 * which find-my-way (Fastify's router) provides without anything else. The server starts with
 * `maxHeaderSize` 1 MiB (batch metadata travels in headers, §19), no total request time (multi-GB
 * uploads) but bounded gaps and connection count (connection-guard.ts), and handles
 * `Expect: 100-continue` itself.
 *
 * Layers, outermost first: common headers + CORS (set before anything else, so every response
 * has them) → OPTIONS preflight → routing (404 / 405) → REPLICA role guard → handler →
 * respond.ts for errors → body draining → audit trail.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import FindMyWay from 'find-my-way';
import { Errors } from '../protocol/errors.js';
import { RequestContext } from './context.js';
import { replicaForbidden } from './auth-hook.js';
import { FerryIncomingMessage } from './request-headers.js';
import { discardBody } from './body.js';
import { ConnectionGuard, connectionOptions } from './connection-guard.js';
import { sendError } from './respond.js';
import { ALL_METHODS, type Handler, type Method, type Route } from './router.js';
import type { HttpServices } from './services.js';
import { API_VERSION, SERVER_VERSION } from './version.js';
import { serverRoutes } from './routes/server.js';
import { sendRoot } from './routes/root.js';
import { tokenRoutes } from './routes/tokens.js';
import { bucketRoutes } from './routes/buckets.js';
import { entryRoutes } from './routes/entry.js';
import { ioRoutes } from './routes/io.js';
import { replicationRoutes } from './routes/replications.js';
import { monitoringRoutes } from './routes/monitoring.js';
import { linkRoutes } from './routes/links.js';
import { lifecycleRoutes } from './routes/lifecycles.js';
import { groupRoutes } from './routes/groups.js';
import { groupApplyRoutes } from './routes/group-apply.js';
import { digestRoutes } from './routes/digests.js';
import { verifyRoutes } from './routes/verify.js';

/**
 * Body bytes discarded after answering a caller that never authenticated (401, 404, anonymous
 * routes) before its connection is closed: enough for a small JSON body, so that keep-alive
 * survives a typo in a token, and far too little to make the server read uploads for strangers.
 */
const ANONYMOUS_DISCARD_BYTES = 64 * 1024;
import { eventsRoute } from './routes/events.js';
import { filterRoutes } from './routes/filters.js';
import { remoteRoutes } from './routes/remotes.js';
import { metricsHandler } from './routes/metrics.js';
import { FerryMetrics } from './metrics.js';
import { instrumentServices } from './instrument.js';
import { FEATURES_HEADER, RECORDS_TABLE_FEATURE } from '../protocol/records-table.js';

interface RouteStore {
  handler: Handler;
  mutating: boolean;
  /** Route pattern, the `family` label of the request metrics. */
  family: string;
}

/** A created (not yet listening) HTTP(S) server plus a close that also drops idle keep-alives. */
export interface FerryHttpServer {
  readonly server: http.Server;
  readonly protocol: 'http' | 'https';
  /** Stops accepting, closes idle connections and, after `graceMs`, all others. */
  close(graceMs?: number): Promise<void>;
}

/** Creates the HTTP(S) server with every first-milestone route of api.md. */
export function createHttpServer(services: HttpServices): FerryHttpServer {
  const { config } = services;
  const apiPrefix = `${config.apiBasePath}api/v1/`;
  const router = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 4096 });
  const routes: Route[] = [
    ...serverRoutes(),
    ...tokenRoutes(),
    ...bucketRoutes(),
    ...entryRoutes(),
    ...ioRoutes(),
    ...replicationRoutes(),
    ...monitoringRoutes(),
    ...linkRoutes(),
    eventsRoute(),
    ...filterRoutes(),
    ...remoteRoutes(),
    ...lifecycleRoutes(),
    ...groupRoutes(),
    ...groupApplyRoutes(),
    ...digestRoutes(),
    ...verifyRoutes(),
  ];
  for (const route of routes) {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const store: RouteStore = {
        handler: route.handler,
        mutating: route.mutating ?? !(method === 'GET' || method === 'HEAD'),
        family: route.path,
      };
      router.on(method, apiPrefix + route.path, () => undefined, store);
    }
  }
  const metrics = new FerryMetrics(() => services.monitor);
  const metricsStore: RouteStore = { handler: metricsHandler(metrics), mutating: false, family: 'metrics' };
  router.on('GET', `${config.apiBasePath}metrics`, () => undefined, metricsStore);
  const routeServices = instrumentServices(services, metrics);

  const corsAny = config.corsAllowOrigin.includes('*');
  const corsOrigins = new Set(config.corsAllowOrigin);
  const instanceId = services.storage.instanceId;

  const commonHeaders = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.setHeader('x-reduct-api', API_VERSION);
    res.setHeader('server', `ReductStore ${SERVER_VERSION}`);
    res.setHeader('x-ferry-instance', instanceId);
    res.setHeader(FEATURES_HEADER, RECORDS_TABLE_FEATURE);
    const origin = req.headers.origin;
    if (origin && (corsAny || corsOrigins.has(origin))) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-expose-headers', '*');
      res.setHeader('vary', 'origin');
    }
  };

  const discardRest = (req: http.IncomingMessage, res: http.ServerResponse, ctx?: RequestContext): void => {
    const limitBytes = ctx?.principal ? Infinity : ANONYMOUS_DISCARD_BYTES;
    if (ctx?.hasBody) ctx.body.drain(limitBytes);
    else discardBody(req, res, { idleMs: config.io.operationTimeoutMs, limitBytes });
  };

  const handle = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    expectContinue: boolean,
  ): Promise<void> => {
    guard.track(req.socket, res);
    commonHeaders(req, res);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    const method = (req.method ?? 'GET').toUpperCase();

    if (method === 'OPTIONS') {
      res.setHeader('access-control-allow-methods', '*');
      res.setHeader('access-control-allow-headers', '*');
      res.statusCode = 200;
      res.setHeader('content-length', 0);
      res.end();
      discardRest(req, res);
      return;
    }
    if ((method === 'GET' || method === 'HEAD') && (path === config.apiBasePath || path === '/')) {
      sendRoot(res, config);
      discardRest(req, res);
      return;
    }

    const found = router.find(method as Method, path);
    metrics.track(res, found ? (found.store as RouteStore).family : 'unmatched', method);
    if (!found) {
      res.shouldKeepAlive = res.shouldKeepAlive && !expectContinue;
      const known = ALL_METHODS.some((m) => m !== method && router.find(m, path) !== null);
      sendError(res, known ? Errors.methodNotAllowed() : Errors.notFound());
      if (!expectContinue) discardRest(req, res);
      return;
    }
    const store = found.store as RouteStore;
    const ctx = new RequestContext(req, res, routeServices, path, query, found.params, expectContinue);
    res.on('finish', () => {
      if (ctx.principal) services.system.audit(ctx.principal.name, method, path, res.statusCode);
    });
    let settled = false;
    const settleBody = (): void => {
      if (settled) return;
      settled = true;
      if (expectContinue && !ctx.hasBody) res.shouldKeepAlive = false;
      else discardRest(req, res, ctx);
    };
    // Once an answer is finished, Node drops an unread body itself, reading all of it however
    // long: a handler that answered synchronously would otherwise never get to bound that.
    res.prependOnceListener('finish', settleBody);
    try {
      if (store.mutating && config.instanceRole === 'REPLICA') {
        throw replicaForbidden();
      }
      await store.handler(ctx);
    } catch (e) {
      if (res.destroyed) {
        // The client went away (typically mid-stream): nothing to answer, nothing worth logging.
      } else sendError(res, e);
    } finally {
      settleBody();
    }
  };

  const limits = { ...config.http, idleTimeoutMs: config.io.operationTimeoutMs };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void handle(req, res, false);
  };
  const options: http.ServerOptions = {
    IncomingMessage: FerryIncomingMessage,
    maxHeaderSize: 1024 * 1024,
    ...connectionOptions(limits),
  };
  let server: http.Server;
  let protocol: 'http' | 'https' = 'http';
  if (config.certPath && config.certKeyPath) {
    protocol = 'https';
    server = https.createServer(
      { ...options, cert: readFileSync(config.certPath), key: readFileSync(config.certKeyPath) },
      onRequest,
    );
  } else {
    server = http.createServer(options, onRequest);
  }
  // Node keeps only the first 1000 headers by default (maxHeadersCount 2000 = name+value pairs) and
  // drops the rest silently; a v2 batch of 1000 records from reduct-js puts content-length last.
  // The 1 MiB header size limit still bounds a request.
  server.maxHeadersCount = 0;
  const guard = new ConnectionGuard(server, limits, protocol === 'https');
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    void handle(req, res, true);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const message = status === 431 ? 'Request header fields too large' : 'Bad request';
    const body = JSON.stringify({ detail: message });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
        `x-reduct-api: ${API_VERSION}\r\nserver: ReductStore ${SERVER_VERSION}\r\n` +
        `x-reduct-error: ${message}\r\ncontent-type: application/json\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      // The server socket is half-open: without this, a client that never reads nor closes
      // (a slowloris) would hold it after the answer forever.
      () => socket.destroy(),
    );
  });

  return {
    server,
    protocol,
    close: (graceMs = 2000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
