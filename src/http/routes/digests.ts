/**
 * `POST /api/v1/ferry/b/{bucket}/digests` (replication.md §10): range digests and record summaries
 * of entries, for a verifying source. Authorised like reads of the bucket; read-only (also on a
 * replica). Bounded by limits.ts (queries, splits, listed records); an unknown entry has no records.
 * `FERRY_DIGEST_ROUTE=false` answers 404, as a plain ReductStore would.
 */
import { Errors } from '../../protocol/errors.js';
import { parseDigestRequest, type DigestAnswer, type DigestAnswerItem } from '../../protocol/verify.js';
import { readAccess } from '../auth-hook.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** The range-digest route. */
export function digestRoutes(): Route[] {
  return [
    {
      method: 'POST',
      path: 'ferry/b/:bucket/digests',
      mutating: false,
      handler: async (ctx) => {
        if (!ctx.services.config.digestRoute) throw Errors.notFound();
        const name = ctx.param('bucket');
        readAccess(ctx, name);
        const bucket = ctx.services.storage.bucket(name);
        const req = parseDigestRequest(await ctx.json());
        const results: DigestAnswerItem[] = [];
        for (const q of req.queries) {
          if (q.list) {
            // one more than asked tells whether the range holds more
            const got = await bucket.recordSummaries(q.entry, q.start, q.stop, q.list + 1);
            const more = got.length > q.list;
            results.push({
              records: got.slice(0, q.list).map((r) => [r.ts, r.size, r.digest, r.contentType, r.labels]),
              more,
            });
          } else {
            const [d] = await bucket.rangeDigests(q.entry, [q]);
            results.push({ count: d!.count, digest: d!.digest, bounds: d!.bounds });
          }
        }
        sendJson(ctx.res, { results } satisfies DigestAnswer);
      },
    },
  ];
}
