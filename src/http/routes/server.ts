/**
 * Server API (api.md §6): /info, /list, /me, /alive, /ready.
 */
import type { BucketList } from '../../protocol/buckets.js';
import { Errors } from '../../protocol/errors.js';
import type { ServerInfo } from '../../protocol/server-info.js';
import { authenticated } from '../auth-hook.js';
import { sendEmpty, sendError, sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { SERVER_VERSION } from '../version.js';
import { settingsJson } from './buckets.js';

/** Routes of the server API. */
export function serverRoutes(): Route[] {
  return [
    {
      method: ['GET', 'HEAD'],
      path: 'alive',
      handler: (ctx) => sendEmpty(ctx.res),
    },
    {
      method: ['GET', 'HEAD'],
      path: 'ready',
      handler: (ctx) => {
        if (ctx.services.isReady()) sendEmpty(ctx.res);
        else sendError(ctx.res, Errors.serverStartingUp());
      },
    },
    {
      method: 'GET',
      path: 'info',
      handler: (ctx) => {
        authenticated(ctx);
        const { storage, config, startedAt } = ctx.services;
        const buckets = storage.listBuckets();
        const usage = storage.usage();
        sendJson(ctx.res, {
          version: SERVER_VERSION,
          instance_name: config.instanceName,
          instance_role: config.instanceRole,
          bucket_count: BigInt(buckets.length),
          usage: usage.usage,
          uptime: BigInt(Math.floor((Date.now() - startedAt) / 1000)),
          oldest_record: buckets.length === 0 ? 0n : usage.oldest_record,
          latest_record: usage.latest_record,
          defaults: { bucket: settingsJson(storage.defaultSettings()) },
          license: null,
          storage: storage.health(),
        } satisfies ServerInfo);
      },
    },
    {
      method: 'GET',
      path: 'list',
      handler: (ctx) => {
        const p = authenticated(ctx);
        const { storage, tokens } = ctx.services;
        const buckets = storage.listBuckets().filter((b) => tokens.canRead(p, b.name));
        sendJson(ctx.res, { buckets } satisfies BucketList);
      },
    },
    {
      method: 'GET',
      path: 'me',
      handler: (ctx) => sendJson(ctx.res, authenticated(ctx).toJson()),
    },
  ];
}
