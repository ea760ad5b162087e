/**
 * Bucket API (api.md §7): read, create, partial update, asynchronous delete, rename.
 */
import type { BucketDetail } from '../../protocol/buckets.js';
import { parseBucketSettings } from '../../protocol/bucket-settings.js';
import { Errors } from '../../protocol/errors.js';
import type { BucketSettings } from '../../storage/types.js';
import { authenticated, fullAccess, readAccess } from '../auth-hook.js';
import { sendEmpty, sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Bucket settings in their exact four-field wire shape. */
export function settingsJson(s: BucketSettings): BucketSettings {
  return {
    quota_type: s.quota_type,
    quota_size: s.quota_size,
    max_block_size: s.max_block_size,
    max_block_records: s.max_block_records,
  };
}

/** Routes of the bucket API. */
export function bucketRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: 'b/:bucket',
      handler: (ctx) => {
        const name = ctx.param('bucket');
        readAccess(ctx, name);
        const bucket = ctx.services.storage.bucket(name);
        sendJson(ctx.res, {
          info: bucket.info(),
          settings: settingsJson(bucket.settings()),
          entries: bucket.entries(),
        } satisfies BucketDetail);
      },
    },
    {
      method: 'HEAD',
      path: 'b/:bucket',
      handler: (ctx) => {
        authenticated(ctx);
        ctx.services.storage.bucket(ctx.param('bucket'));
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'POST',
      path: 'b/:bucket',
      handler: async (ctx) => {
        fullAccess(ctx);
        const name = ctx.param('bucket');
        const patch = parseBucketSettings(await ctx.json());
        await ctx.services.storage.createBucket(name, patch); // validates the name
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'b/:bucket',
      handler: async (ctx) => {
        fullAccess(ctx);
        const name = ctx.param('bucket');
        const patch = parseBucketSettings(await ctx.json());
        await ctx.services.storage.updateBucketSettings(name, patch);
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'DELETE',
      path: 'b/:bucket',
      handler: async (ctx) => {
        fullAccess(ctx);
        const name = ctx.param('bucket');
        await ctx.services.storage.removeBucket(name);
        await ctx.services.tokens.onBucketRemoved(name);
        sendEmpty(ctx.res);
      },
    },
    {
      method: 'PUT',
      path: 'b/:bucket/rename',
      handler: async (ctx) => {
        fullAccess(ctx);
        const name = ctx.param('bucket');
        const newName = parseNewName(await ctx.json());
        await ctx.services.storage.renameBucket(name, newName); // validates the new name
        await ctx.services.tokens.onBucketRenamed(name, newName);
        sendEmpty(ctx.res);
      },
    },
  ];
}

/** Reads `{"new_name": "…"}` (422 if missing or not a string). */
export function parseNewName(body: unknown): string {
  const v = body && typeof body === 'object' ? (body as Record<string, unknown>).new_name : undefined;
  if (typeof v !== 'string') throw Errors.invalidJson('missing field `new_name`');
  return v;
}
