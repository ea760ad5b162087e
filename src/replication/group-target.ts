/**
 * Destinations of a consistency group (replication.md §8): each applies a whole shipment across
 * buckets atomically and idempotently — this instance through `Storage.applyShipment`, another
 * Ferry through `POST /api/v1/ferry/groups/apply`. A plain ReductStore applies records one by one
 * (readers could see a later record without an earlier one), so `checkAtomicDestination` tells a
 * group replication to refuse it with a 422 that says why.
 */
import type { Pool } from 'undici';
import { destinationPool } from './destination-pool.js';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import { Errors } from '../protocol/errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { MAX_SHIPMENT_BYTES } from '../protocol/limits.js';
import {
  SHIPMENT_CONTENT_TYPE,
  SHIPMENT_PREFIX_BYTES,
  type ShipmentAnswer,
  type ShipmentPositionAnswer,
  type ShipmentWireHeader,
  type ShipmentWireItem,
} from '../protocol/shipment.js';
import type { Shipment, ShipmentOutcome, Storage } from '../storage/types.js';
import { parseRetryAfter } from './backoff.js';
import { boundMessage, TargetError } from './target.js';

/** A destination that applies shipments across buckets all at once. */
export interface GroupTarget {
  /** `local` or the destination URL without credentials. */
  readonly description: string;
  /** Applies one shipment atomically; a re-sent one changes nothing. Throws TargetError. */
  apply(shipment: Shipment): Promise<ShipmentOutcome>;
  /** The stream's applied position at the destination (where a sender resumes). */
  position(key: string): Promise<bigint>;
  /** Abandons the requests in flight (they settle with an error), as `Target.reset`. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** Converts a storage refusal into the TargetError the engine classifies (429/5xx temporary). */
function targetErrorOf(e: unknown): TargetError {
  if (e instanceof TargetError) return e;
  const status = (e as { status?: number }).status ?? -1;
  const temporary = status < 0 || status === 429 || status === 425 || status >= 500;
  return new TargetError(status, (e as Error)?.message ?? String(e), temporary);
}

/** Buckets of this instance. */
export class LocalGroupTarget implements GroupTarget {
  readonly description = 'local';

  constructor(private readonly storage: Pick<Storage, 'applyShipment' | 'shipmentPosition'>) {}

  async apply(shipment: Shipment): Promise<ShipmentOutcome> {
    try {
      return await this.storage.applyShipment(shipment);
    } catch (e) {
      throw targetErrorOf(e);
    }
  }

  position(key: string): Promise<bigint> {
    return Promise.resolve(this.storage.shipmentPosition(key));
  }

  async reset(): Promise<void> {}

  async close(): Promise<void> {}
}

/**
 * The body of `POST /api/v1/ferry/groups/apply` (protocol/shipment.ts): the prefix and header,
 * then the writes' payloads. Throws a permanent TargetError when it is beyond what a destination
 * accepts (the sender must cut smaller shipments).
 */
export function encodeShipment(s: Shipment): Buffer[] {
  const items: ShipmentWireItem[] = [];
  const payloads: Buffer[] = [];
  for (const it of s.items) {
    const w: ShipmentWireItem = {
      kind: it.kind,
      bucket: it.bucket,
      entry: it.entry,
      ts: it.ts,
      lsn: it.lsn,
      labels: it.labels,
    };
    if (it.origin) w.origin = it.origin;
    if (it.kind === 'write') {
      const payload = it.payload ?? Buffer.alloc(0);
      w.size = payload.length;
      if (it.contentType) w.content_type = it.contentType;
      if (it.digest) w.digest = it.digest.subarray(0, 16).toString('hex');
      payloads.push(payload);
    } else {
      w.removed_labels = [...(it.removedLabels ?? [])];
    }
    items.push(w);
  }
  const header: ShipmentWireHeader = { key: s.key, from: s.from, position: s.position, items };
  const json = Buffer.from(headerJson(header), 'utf8');
  const prefix = Buffer.alloc(SHIPMENT_PREFIX_BYTES);
  prefix.writeUInt32BE(json.length, 0);
  const parts = [prefix, json, ...payloads];
  const total = parts.reduce((n, p) => n + p.length, 0);
  if (total > MAX_SHIPMENT_BYTES)
    throw new TargetError(
      413,
      `Shipment of ${total} bytes is larger than ${MAX_SHIPMENT_BYTES}: cut smaller shipments`,
      false,
    );
  return parts;
}

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A header's JSON: with the native serialiser (the positions as plain numbers) when every u64 is
 * below 2^53, which is most of a shipment's CPU at the source otherwise; `stringifyJson` keeps
 * larger ones exact.
 */
function headerJson(h: ShipmentWireHeader): string {
  const safe = (v: bigint): boolean => v <= SAFE_MAX;
  if (!safe(h.from) || !safe(h.position) || h.items.some((it) => !safe(it.ts) || !safe(it.lsn)))
    return stringifyJson(h);
  return JSON.stringify({
    ...h,
    from: Number(h.from),
    position: Number(h.position),
    items: h.items.map((it) => ({ ...it, ts: Number(it.ts), lsn: Number(it.lsn) })),
  });
}

/** Options of a RemoteGroupTarget. */
export interface RemoteGroupTargetOptions {
  url: URL;
  /** Bearer token ('' or null = none). Never logged. */
  token: string | null;
  timeoutMs: number;
  verifyTls: boolean;
  ca?: string;
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * Shipments sent on the connection before the first is answered: the destination reads the next
 * while it commits one (each waits for the one before it there, so the order holds).
 */
const PIPELINED_SHIPMENTS = 4;

/**
 * A Ferry destination reached over HTTP. One connection: shipments of a stream must arrive in the
 * order they were sent (each starts at the previous one's position), and one keep-alive socket
 * answers requests in order (pipelined: a refused one makes those after it refused for a gap,
 * which are re-sent after it).
 */
export class RemoteGroupTarget implements GroupTarget {
  readonly description: string;
  private pool: Pool;
  private readonly base: string;

  constructor(private readonly opts: RemoteGroupTargetOptions) {
    this.base = opts.url.pathname.replace(/\/+$/, '');
    this.description = `${opts.url.origin}${this.base}`;
    this.pool = this.newPool();
  }

  private newPool(): Pool {
    return destinationPool(this.opts.url, {
      connections: 1,
      ...this.opts,
      extra: { pipelining: PIPELINED_SHIPMENTS },
    });
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    body?: Buffer[],
  ): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    const headers: string[] = [];
    if (this.opts.token) headers.push('authorization', `Bearer ${this.opts.token}`);
    if (body) {
      headers.push('content-type', SHIPMENT_CONTENT_TYPE);
      headers.push('content-length', String(body.reduce((n, p) => n + p.length, 0)));
    }
    try {
      const res = await this.pool.request({
        method,
        path: `${this.base}/api/v1/${path}`,
        headers,
        // one buffer, and idempotent (a re-sent shipment changes nothing): undici pipelines only such
        body: body ? (body.length === 1 ? body[0]! : Buffer.concat(body)) : null,
        idempotent: true,
      });
      return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
    } catch (e) {
      throw new TargetError(-3, `Connection error: ${(e as Error)?.message ?? String(e)}`, true);
    }
  }

  private failure(res: { status: number; headers: IncomingHttpHeaders }, what: string): TargetError {
    const msg = boundMessage(header(res.headers, 'x-reduct-error') ?? `HTTP ${res.status}`);
    const temporary = res.status === 429 || res.status >= 500 || res.status === 425;
    return new TargetError(
      res.status,
      `${what}: ${msg}`,
      temporary,
      parseRetryAfter(res.headers['retry-after']),
    );
  }

  async apply(shipment: Shipment): Promise<ShipmentOutcome> {
    const res = await this.call('POST', 'ferry/groups/apply', encodeShipment(shipment));
    if (res.status !== 200) throw this.failure(res, 'Shipment refused');
    const a = parseJson(res.text) as ShipmentAnswer;
    return { ...a, position: BigInt(a.position) };
  }

  async position(key: string): Promise<bigint> {
    const res = await this.call('GET', `ferry/groups/apply/${encodeURIComponent(key)}`);
    if (res.status !== 200) throw this.failure(res, 'Shipment position check failed');
    return BigInt((parseJson(res.text) as ShipmentPositionAnswer).position);
  }

  /** See {@link checkAtomicDestination}. */
  async checkAtomic(): Promise<void> {
    const res = await this.call('GET', 'ferry/groups/apply/probe');
    const problem = atomicApplyProblem(res.status, header(res.headers, 'x-ferry-instance'));
    if (problem) throw Errors.groupDestinationNotAtomic(this.description, problem);
    if (res.status !== 200) throw this.failure(res, 'Destination check failed');
  }

  async reset(): Promise<void> {
    const old = this.pool;
    this.pool = this.newPool();
    await old.destroy().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/**
 * Why a destination answering `GET ferry/groups/apply/{key}` with `status` (and `instance`, its
 * `x-ferry-instance` header) cannot be a group replication's destination; null when it can.
 * Statuses that say nothing about the kind of server (401, 403, 5xx) are for the caller to report.
 */
export function atomicApplyProblem(status: number, instance: string | undefined): string | null {
  if (instance === undefined)
    return 'it is not a Ferry server (no x-ferry-instance header): a plain ReductStore applies records one by one, so readers could see a later record of a group without an earlier one';
  if (status === 404 || status === 405)
    return `Ferry instance ${instance} has no atomic apply route (POST /api/v1/ferry/groups/apply): upgrade it`;
  return null;
}

/**
 * Checks that a remote destination can apply a group's shipments atomically. Throws a 422
 * FerryError that says why when it cannot (a plain ReductStore, an older Ferry), a TargetError
 * when it cannot be asked (unreachable, refused credentials: temporary or not, as for writes).
 */
export async function checkAtomicDestination(opts: RemoteGroupTargetOptions): Promise<void> {
  const target = new RemoteGroupTarget(opts);
  try {
    await target.checkAtomic();
  } finally {
    await target.close();
  }
}
