/**
 * Query links (api.md §15): `POST /links/{file_name}` (Read on the bucket named in the body) makes
 * a URL that shares one record of a query; `GET|HEAD /links/{file_name}?ct=…&s=…&i=…` (anonymous)
 * verifies it, re-checks that the issuing token still exists and may read the bucket, runs the
 * query and sends the record, with `Range` support (206 / 416).
 *
 * The link carries the sealed request (`ct`, link-codec.ts), the per-link salt (`s`) and the name
 * of the issuing token (`i`), never a secret: the key is derived from a master key that stays in
 * the data directory and from a fingerprint of the token's current value (link-keys.ts).
 */
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { Errors } from '../../protocol/errors.js';
import { toU64 } from '../../protocol/json.js';
import type { StoredRecord } from '../../storage/types.js';
import { authenticated } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { optionalTs, setRecordHeaders } from '../headers.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { parseByteRange, type ByteRange } from '../links/byte-range.js';
import { openLink, sealLink, type LinkPayload } from '../links/link-codec.js';

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A Host header we are willing to echo into a URL (name or address, optional port). */
const SAFE_HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;
/** Records up to this size are read whole (as in records.ts). */
const SMALL_RECORD = 256 * 1024;

function stringField(body: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) {
    if (required) throw Errors.linkFieldMissing(field);
    return undefined;
  }
  if (typeof v !== 'string') throw Errors.linkFieldInvalid(field, 'expected a string');
  return v;
}

/** `base_url` normalised to end with `/` (422 unless an http(s) URL with a host). */
function normaliseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw Errors.linkBadBaseUrl('relative URL without a base');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw Errors.linkBadBaseUrl(`unsupported scheme '${url.protocol.slice(0, -1)}'`);
  }
  if (url.hostname === '') throw Errors.linkBadBaseUrl('missing host');
  if (url.search !== '' || url.hash !== '') throw Errors.linkBadBaseUrl('a query or fragment is not allowed');
  return raw.endsWith('/') ? raw : `${raw}/`;
}

/** Base of a new link: `base_url`, else `RS_PUBLIC_URL`, else the host the request was sent to. */
function linkBase(ctx: RequestContext, baseUrl: string | undefined): string {
  if (baseUrl !== undefined) return normaliseBaseUrl(baseUrl);
  const { config } = ctx.services;
  if (config.publicUrlEnv !== undefined) return normaliseBaseUrl(config.publicUrlEnv);
  const host = ctx.header('host');
  if (host !== undefined && SAFE_HOST.test(host)) {
    return `${config.certPath && config.certKeyPath ? 'https' : 'http'}://${host}${config.apiBasePath}`;
  }
  return normaliseBaseUrl(config.publicUrl ?? `http://127.0.0.1:${config.port}${config.apiBasePath}`);
}

/** The file name as a URL path (each segment percent-encoded). */
const encodePath = (file: string): string => file.split('/').map(encodeURIComponent).join('/');

/** POST /links/{file_name} */
async function createLink(ctx: RequestContext): Promise<void> {
  const principal = authenticated(ctx);
  const body = await ctx.json();
  if (!isObject(body)) throw Errors.linkFieldInvalid('body', 'expected a JSON object');
  const bucket = stringField(body, 'bucket', true)!;
  const { services } = ctx;
  services.tokens.checkRead(principal, bucket);

  const rawQuery = body['query'] ?? { query_type: 'QUERY' };
  if (!isObject(rawQuery)) throw Errors.linkFieldInvalid('query', 'expected a QueryEntry object');
  if (rawQuery['query_type'] === 'REMOVE') throw Errors.linkRemoveQuery();
  const recordEntry = stringField(body, 'record_entry', false);
  if (recordEntry === undefined && body['index'] !== undefined && body['index'] !== null) {
    throw Errors.linkIndexUnsupported();
  }
  if (recordEntry === undefined) throw Errors.linkFieldMissing('record_entry');
  if (recordEntry === '') throw Errors.linkFieldInvalid('record_entry', 'expected an entry name');
  const rawTs = body['record_timestamp'];
  if (rawTs === undefined || rawTs === null) throw Errors.linkFieldMissing('record_timestamp');
  const recordTs = toU64(rawTs);
  if (recordTs === undefined) throw Errors.linkFieldInvalid('record_timestamp', 'expected a timestamp in µs');
  const rawExpiry = body['expire_at'];
  let expireAt: number | null = null;
  if (rawExpiry !== undefined && rawExpiry !== null) {
    const v = toU64(rawExpiry);
    if (v === undefined || v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw Errors.linkFieldInvalid('expire_at', 'expected Unix seconds');
    }
    expireAt = Number(v);
  }
  const base = linkBase(ctx, stringField(body, 'base_url', false));

  // `entry` names the record's entry for single-entry links (the SDK sends `entries` only for lists).
  const query: Record<string, unknown> = { query_type: 'QUERY', ...rawQuery };
  const entries = query['entries'];
  const entry = stringField(body, 'entry', false) ?? '';
  if ((!Array.isArray(entries) || entries.length === 0) && entry !== '') query['entries'] = [entry];
  services.storage.bucket(bucket); // 404 for a missing bucket
  services.queries.checkQuery(query);

  const issuer = services.tokens.issuer(principal.name);
  if (!issuer) throw Errors.linkInvalid(); // removed while this request ran
  const payload: LinkPayload = {
    bucket,
    query,
    record_entry: recordEntry,
    record_timestamp: recordTs,
    expire_at: expireAt,
  };
  const sealed = sealLink(services.linkKeys, principal.name, issuer.fingerprint, payload);
  const link =
    `${base}api/v1/links/${encodePath(ctx.param('*'))}` +
    `?ct=${sealed.ct}&s=${sealed.s}&i=${encodeURIComponent(principal.name)}`;
  sendJson(ctx.res, { link });
}

/** The verified payload of a link in the request's query string (422 / 401 / 403). */
function verifiedLink(ctx: RequestContext): LinkPayload {
  const param = (name: string): string => {
    const v = ctx.query.get(name);
    if (v === null || v === '') throw Errors.linkParamMissing(name);
    return v;
  };
  const ct = param('ct');
  const s = param('s');
  const name = param('i');
  const { tokens, linkKeys } = ctx.services;
  const issuer = tokens.issuer(name); // 401 when the token has expired
  const payload = issuer && openLink(linkKeys, name, issuer.fingerprint, { ct, s });
  if (!issuer || !payload) throw Errors.linkInvalid();
  if (payload.expire_at !== null && Date.now() >= payload.expire_at * 1000) throw Errors.linkExpired();
  tokens.checkRead(issuer.principal, payload.bucket);
  ctx.principal = issuer.principal; // the audit trail shows the use under the issuing token
  return payload;
}

/** GET|HEAD /links/{file_name}?ct=&s=&i=[&e=&ts=] */
async function readLink(ctx: RequestContext): Promise<void> {
  const payload = verifiedLink(ctx);
  const entry = ctx.query.get('e') || payload.record_entry;
  const ts = optionalTs(ctx.query) ?? BigInt(payload.record_timestamp);
  const found = await ctx.services.queries.findRecord(payload.bucket, payload.query, entry, ts);
  if (!found) throw Errors.linkRecordNotFound(entry, ts);
  await sendRange(ctx, found.record, found.labels);
}

/** Sends the record, or the part of it a `Range` header asks for. */
async function sendRange(
  ctx: RequestContext,
  record: StoredRecord,
  labels: Record<string, string>,
): Promise<void> {
  const { res } = ctx;
  const size = record.meta.size;
  const range = parseByteRange(ctx.header('range'), size);
  if (range === 'unsatisfiable') {
    res.setHeader('content-range', `bytes */${size}`);
    throw Errors.rangeNotSatisfiable();
  }
  setRecordHeaders(res, record.meta, labels);
  res.setHeader('accept-ranges', 'bytes');
  const file = ctx.param('*').split('/').pop() ?? '';
  if (/^[\w.+-]+$/.test(file)) res.setHeader('content-disposition', `attachment; filename="${file}"`);
  const head = ctx.req.method === 'HEAD';
  if (range === undefined) {
    res.statusCode = 200;
    if (head || size === 0) res.end();
    else if (size <= SMALL_RECORD) res.end(await record.buffer());
    else await pipeline(record.stream(), res);
    return;
  }
  const length = range.end - range.start + 1;
  res.statusCode = 206;
  res.setHeader('content-range', `bytes ${range.start}-${range.end}/${size}`);
  res.setHeader('content-length', length);
  if (head) res.end();
  else if (size <= SMALL_RECORD) res.end((await record.buffer()).subarray(range.start, range.end + 1));
  else await pipeline(record.stream(), sliceStream(range), res);
}

/**
 * Passes only the bytes of `range` (records are streamed from their start; a large record read
 * for a range near its end still reads what comes before).
 */
function sliceStream(range: ByteRange): Transform {
  let pos = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const from = Math.max(range.start - pos, 0);
      const to = Math.min(range.end + 1 - pos, chunk.length);
      pos += chunk.length;
      done(null, from < to ? chunk.subarray(from, to) : undefined);
    },
  });
}

/** Routes of query links. */
export function linkRoutes(): Route[] {
  return [
    { method: 'POST', path: 'links/*', handler: createLink, mutating: false },
    { method: ['GET', 'HEAD'], path: 'links/*', handler: readLink },
  ];
}
