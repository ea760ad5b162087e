/**
 * Client IP resolution (api.md §3.4): the TCP peer, unless the peer is a trusted proxy (loopback,
 * private or link-local), in which case the first RFC 7239 `Forwarded: for=` address wins, then the
 * first `X-Forwarded-For` address.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { formatIp, isTrustedProxy, parseIp, type IpAddress } from './ip-address.js';

/** A header value as a single string (the first one when Node gives an array of repeated values). */
export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Strips quotes, brackets and a port from a forwarded node (`"[2001:db8::1]:4711"`, `1.2.3.4:80`). */
function parseNode(raw: string): IpAddress | undefined {
  let s = raw.trim();
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) s = s.slice(1, -1).trim();
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return undefined;
    return parseIp(s.slice(1, end));
  }
  const direct = parseIp(s);
  if (direct) return direct;
  // `a.b.c.d:port` (an IPv6 address without brackets never carries a port).
  const colon = s.lastIndexOf(':');
  if (colon > 0 && s.indexOf(':') === colon) return parseIp(s.slice(0, colon));
  return undefined;
}

function fromForwarded(header: string): IpAddress | undefined {
  // Only the first element (closest to the client) matters; elements are separated by commas.
  const first = header.split(',')[0] ?? '';
  for (const pair of first.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
    return parseNode(pair.slice(eq + 1));
  }
  return undefined;
}

function fromXForwardedFor(header: string): IpAddress | undefined {
  return parseNode(header.split(',')[0] ?? '');
}

/**
 * Resolves the client IP of a request. `peer` is `socket.remoteAddress`. Returns the canonical
 * address text (IPv4-mapped IPv6 folded to IPv4) or undefined when nothing usable is known.
 */
export function resolveClientIp(peer: string | undefined, headers: IncomingHttpHeaders): string | undefined {
  const peerIp = peer === undefined ? undefined : parseIp(peer);
  if (!peerIp) return undefined;
  if (isTrustedProxy(peerIp)) {
    const fwd = firstHeader(headers['forwarded']);
    const viaForwarded = fwd ? fromForwarded(fwd) : undefined;
    if (viaForwarded) return formatIp(viaForwarded);
    const xff = firstHeader(headers['x-forwarded-for']);
    const viaXff = xff ? fromXForwardedFor(xff) : undefined;
    if (viaXff) return formatIp(viaXff);
  }
  return formatIp(peerIp);
}
