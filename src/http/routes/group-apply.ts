/**
 * Ferry's atomic apply of one shipment across buckets (replication.md §8): the remote destination
 * of a consistency group. `POST ferry/groups/apply` takes a body of `protocol/shipment.ts`,
 * needs write access to every bucket it touches (and full access for records that carry an
 * origin, as `x-ferry-origin` does), holds the body in memory within MAX_SHIPMENT_BYTES and hands
 * it to `Storage.applyShipment`: all of it becomes visible at once, or nothing.
 * `GET ferry/groups/apply/{key}` answers the stream's applied position (any valid token).
 */
import { Errors } from '../../protocol/errors.js';
import { MAX_SHIPMENT_BYTES, MAX_SHIPMENT_HEADER_BYTES } from '../../protocol/limits.js';
import {
  isShipmentKey,
  parseShipmentHeader,
  parseShipmentJson,
  SHIPMENT_PREFIX_BYTES,
  type ShipmentAnswer,
  type ShipmentPositionAnswer,
  type ShipmentWireItem,
} from '../../protocol/shipment.js';
import type { ShipmentItem } from '../../storage/types.js';
import { authenticated, writeAccess } from '../auth-hook.js';
import type { ByteReader } from '../body.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const tooLarge = () =>
  Errors.payloadTooLarge(`Shipment body is larger than ${MAX_SHIPMENT_BYTES} bytes: send smaller shipments`);

/** Reads exactly `n` bytes (one copy at most), or undefined when the body ends first. */
async function readExactly(reader: ByteReader, n: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const c = await reader.read(n - got);
    if (!c) return undefined;
    parts.push(c);
    got += c.length;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

/**
 * The payloads of a shipment's writes (by item index; `total` bytes in all), cut from the body's
 * chunks as they come: one await per chunk, not per record, and a copy only of a payload that
 * lies across two chunks.
 */
async function readPayloads(
  reader: ByteReader,
  items: readonly ShipmentWireItem[],
  total: number,
): Promise<Array<Buffer | undefined>> {
  const out = new Array<Buffer | undefined>(items.length);
  let chunk: Buffer = Buffer.alloc(0);
  let at = 0;
  let left = total;
  for (const [i, it] of items.entries()) {
    if (it.kind !== 'write') continue;
    const size = it.size!;
    if (chunk.length - at >= size) {
      out[i] = chunk.subarray(at, at + size);
      at += size;
      left -= size;
      continue;
    }
    // across chunks: what is left of this one, then more
    let got = chunk.length - at;
    const parts: Buffer[] = got > 0 ? [chunk.subarray(at)] : [];
    while (got < size) {
      const next = await reader.read(left - got);
      if (!next) throw Errors.badRequest(`Shipment body ends within the payload of items[${i}]`);
      chunk = next;
      at = Math.min(size - got, next.length);
      parts.push(next.subarray(0, at));
      got += at;
    }
    out[i] = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    left -= size;
  }
  return out;
}

async function applyShipment(ctx: RequestContext): Promise<void> {
  const principal = authenticated(ctx);
  // the header names the buckets; a token that can write to none is refused before it is read
  if (!principal.fullAccess && principal.write.length === 0)
    throw Errors.noWriteAccessAnywhere(principal.name);
  if (!ctx.body.compressed) {
    const declared = ctx.header('content-length');
    if (declared === undefined) throw Errors.contentLengthRequired();
    if (Number(declared) > MAX_SHIPMENT_BYTES) throw tooLarge();
  }
  const reader = ctx.body.reader();
  let taken = 0;
  const take = async (n: number, what: string): Promise<Buffer> => {
    if (taken + n > MAX_SHIPMENT_BYTES) throw tooLarge();
    const b = await readExactly(reader, n);
    if (!b) throw Errors.badRequest(`Shipment body ends within ${what}`);
    taken += n;
    return b;
  };
  const length = (await take(SHIPMENT_PREFIX_BYTES, 'its header length')).readUInt32BE(0);
  if (length > MAX_SHIPMENT_HEADER_BYTES)
    throw Errors.unprocessable(
      `Invalid shipment: header of ${length} bytes (at most ${MAX_SHIPMENT_HEADER_BYTES})`,
    );
  const header = parseShipmentHeader(parseShipmentJson((await take(length, 'its header')).toString('utf8')));
  // Before any payload is read: a token without the rights gets its answer at once.
  for (const b of new Set(header.items.map((it) => it.bucket))) writeAccess(ctx, b);
  if (!principal.fullAccess && header.items.some((it) => it.origin))
    throw Errors.originForbidden(principal.name);
  let total = 0;
  for (const it of header.items) if (it.kind === 'write') total += it.size!;
  if (taken + total > MAX_SHIPMENT_BYTES) throw tooLarge();
  const payloads = await readPayloads(reader, header.items, total);
  taken += total;
  const items: ShipmentItem[] = [];
  for (const [i, it] of header.items.entries()) {
    const item: ShipmentItem = {
      kind: it.kind,
      bucket: it.bucket,
      entry: it.entry,
      ts: it.ts,
      lsn: it.lsn,
      labels: it.labels,
    };
    if (it.origin !== undefined) item.origin = it.origin;
    if (it.kind === 'write') {
      item.payload = payloads[i]!;
      if (it.content_type !== undefined) item.contentType = it.content_type;
      if (it.digest !== undefined) item.digest = Buffer.from(it.digest, 'hex');
    } else {
      item.removedLabels = it.removed_labels ?? [];
    }
    items.push(item);
  }
  if (!(await reader.atEnd())) throw Errors.badRequest('Shipment body is longer than its items');
  ctx.body.markFinished();
  const outcome = await ctx.services.storage.applyShipment({
    key: header.key,
    from: header.from,
    position: header.position,
    items,
  });
  sendJson(ctx.res, outcome satisfies ShipmentAnswer);
}

/** Routes of the shipment apply. */
export function groupApplyRoutes(): Route[] {
  return [
    { method: 'POST', path: 'ferry/groups/apply', handler: applyShipment },
    {
      method: 'GET',
      path: 'ferry/groups/apply/:key',
      handler: (ctx) => {
        authenticated(ctx);
        const key = ctx.param('key');
        if (!isShipmentKey(key)) throw Errors.shipmentInvalidKey(key);
        const answer: ShipmentPositionAnswer = { key, position: ctx.services.storage.shipmentPosition(key) };
        sendJson(ctx.res, answer);
      },
    },
  ];
}
