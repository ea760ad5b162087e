/**
 * Route table types shared by the route modules and the app.
 */
import type { RequestContext } from './context.js';

/** HTTP methods Ferry routes use. */
export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A route handler; it must send the response (or throw a FerryError). */
export type Handler = (ctx: RequestContext) => Promise<void> | void;

/** One route, with a path relative to `{apiBasePath}api/v1/` (find-my-way syntax). */
export interface Route {
  method: Method | Method[];
  path: string;
  handler: Handler;
  /**
   * Whether the route changes state, for `RS_INSTANCE_ROLE=REPLICA` (403). Defaults to true for
   * every method except GET and HEAD; query routes decide per request and say `false` here.
   */
  mutating?: boolean;
}

/** Methods probed to tell 405 (known path) from 404 (unknown path). */
export const ALL_METHODS: Method[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
