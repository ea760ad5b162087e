/**
 * `GET /api/v1/replications/{name}/events` (replication.md §9): a server-sent-events stream of one
 * replication's status (FullAccess). The feed logic is src/replication/status-feed.ts; this route
 * only validates, answers the headers and adapts the response to a feed sink.
 */
import type { ServerResponse } from 'node:http';
import { Errors } from '../../protocol/errors.js';
import { FINAL_STATES } from '../../protocol/replication-status.js';
import {
  SharedSnapshots,
  StatusFeed,
  type FeedSink,
  type ReplicationEvents,
} from '../../replication/status-feed.js';
import { fullAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import type { Route } from '../router.js';
import { monitorOf } from './monitoring.js';

/** Default and bounds of `?interval_ms`: the minimum spacing of `status` snapshots. */
export const EVENTS_INTERVAL = { default: 1000, min: 100, max: 60_000 } as const;

/** How long an EventSource waits before it reconnects after the stream was cut. */
const RETRY_MS = 2000;

function intervalOf(ctx: RequestContext): number {
  const raw = ctx.query.get('interval_ms');
  if (raw === null) return EVENTS_INTERVAL.default;
  const v = /^\d{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (!(v >= EVENTS_INTERVAL.min && v <= EVENTS_INTERVAL.max)) {
    throw Errors.queryParamRange('interval_ms', EVENTS_INTERVAL.min, EVENTS_INTERVAL.max);
  }
  return v;
}

function responseSink(res: ServerResponse): FeedSink {
  return {
    write: (text) => void res.write(text),
    buffered: () => res.writableLength,
    close: (dropped) => (dropped ? res.destroy() : res.end()),
  };
}

/** One snapshot cache per events source (= per server), made on first use. */
const caches = new WeakMap<object, SharedSnapshots>();

function sharedSnapshots(events: ReplicationEvents, monitor: ReturnType<typeof monitorOf>): SharedSnapshots {
  let c = caches.get(events);
  if (!c) caches.set(events, (c = new SharedSnapshots(events, (name) => monitor.status(name))));
  return c;
}

/** The events route. */
export function eventsRoute(): Route {
  return {
    method: 'GET',
    path: 'replications/:name/events',
    handler: async (ctx) => {
      fullAccess(ctx);
      const monitor = monitorOf(ctx);
      const events = ctx.services.events;
      if (!events) throw Errors.serverStartingUp();
      const name = ctx.param('name');
      const intervalMs = intervalOf(ctx);
      const first = monitor.status(name); // 404 for an unknown replication
      const { res } = ctx;
      // An EventSource reconnects after a stream ended; 204 tells it that a finished run has no more.
      if (ctx.header('last-event-id') !== undefined && FINAL_STATES.has(first.state)) {
        res.statusCode = 204;
        res.end();
        return;
      }
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      res.socket?.setNoDelay(true);
      res.write(`retry: ${RETRY_MS}\n\n`);
      const shared = sharedSnapshots(events, monitor);
      const release = shared.acquire(name);
      await new Promise<void>((resolve) => {
        const feed = new StatusFeed({
          name,
          events,
          snapshot: () => monitor.status(name),
          snapshotText: () => shared.get(name),
          sink: responseSink(res),
          intervalMs,
          onEnd: () => {
            release();
            resolve();
          },
        });
        res.on('close', () => feed.close());
        feed.start();
      });
    },
  };
}
