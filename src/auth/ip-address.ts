/**
 * IP address parsing and CIDR matching for token allow-lists (api.md §5.1) and client IP
 * resolution (§3.4). Addresses are held as bigints so that IPv4 and IPv6 share one code path;
 * IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are folded into IPv4 so that they match IPv4 rules.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** A parsed address: family 4 (32-bit value) or 6 (128-bit value). */
export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

/** A parsed allow-list item: an address with a prefix length (full length for single addresses). */
export interface IpRange {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;
const V4_MASK = 0xffffffffn;

function parseV4(text: string): bigint {
  let v = 0n;
  for (const part of text.split('.')) v = (v << 8n) | BigInt(Number(part));
  return v;
}

function parseV6(text: string): bigint {
  let head = text;
  let tailV4: bigint | undefined;
  // An embedded dotted quad (`::ffff:1.2.3.4`) occupies the last two groups.
  const lastColon = head.lastIndexOf(':');
  if (head.includes('.', lastColon)) {
    tailV4 = parseV4(head.slice(lastColon + 1));
    head = head.slice(0, lastColon + 1) + '0:0';
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftGroups = left ? left.split(':') : [];
  const rightGroups = right ? right.split(':') : [];
  const missing = 8 - leftGroups.length - rightGroups.length;
  const groups = [
    ...leftGroups,
    ...Array<string>(right === undefined ? 0 : missing).fill('0'),
    ...rightGroups,
  ];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  if (tailV4 !== undefined) v = (v & ~V4_MASK) | tailV4;
  return v;
}

/**
 * Parses an IPv4 or IPv6 address (zone ids such as `%eth0` are ignored). IPv4-mapped IPv6
 * addresses become IPv4. Returns undefined for anything else.
 */
export function parseIp(text: string): IpAddress | undefined {
  const zone = text.indexOf('%');
  const s = zone >= 0 ? text.slice(0, zone) : text;
  if (isIPv4(s)) return { family: 4, value: parseV4(s) };
  if (!isIPv6(s)) return undefined;
  const value = parseV6(s);
  if (value >> 32n === 0xffffn) return { family: 4, value: value & V4_MASK };
  return { family: 6, value };
}

/** Canonical text of an address (IPv4 dotted quad; IPv6 in RFC 5952 compressed form). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // Longest run (>= 2) of zero groups becomes '::'.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Normalises an address string (mapped IPv6 → IPv4, zone stripped); unparsable input is returned as is. */
export function normalizeIp(text: string): string {
  const ip = parseIp(text);
  return ip ? formatIp(ip) : text;
}

/**
 * Parses an allow-list item: a single address or `address/prefix`. A mapped IPv6 network with a
 * prefix of at least 96 becomes the equivalent IPv4 range. Returns undefined when invalid.
 */
export function parseIpRange(text: string): IpRange | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) {
    const ip = parseIp(text.trim());
    return ip ? { family: ip.family, network: ip.value, prefix: ip.family === 4 ? 32 : 128 } : undefined;
  }
  const addr = text.slice(0, slash).trim();
  const prefixText = text.slice(slash + 1).trim();
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const zone = addr.indexOf('%');
  const bare = zone >= 0 ? addr.slice(0, zone) : addr;
  if (isIPv4(bare)) {
    if (prefix > 32) return undefined;
    return { family: 4, network: parseV4(bare), prefix };
  }
  if (!isIPv6(bare)) return undefined;
  if (prefix > 128) return undefined;
  const value = parseV6(bare);
  if (prefix >= 96 && (value & ~V4_MASK) === V4_MAPPED_PREFIX) {
    return { family: 4, network: value & V4_MASK, prefix: prefix - 96 };
  }
  return { family: 6, network: value, prefix };
}

/** True when the address lies inside the range (families must agree after IPv4 folding). */
export function rangeContains(range: IpRange, ip: IpAddress): boolean {
  if (range.family !== ip.family) return false;
  const bits = BigInt(range.family === 4 ? 32 : 128);
  const host = bits - BigInt(range.prefix);
  return range.network >> host === ip.value >> host;
}

const TRUSTED: IpRange[] = [
  '127.0.0.0/8', // loopback
  '10.0.0.0/8', // private
  '172.16.0.0/12',
  '192.168.0.0/16',
  '169.254.0.0/16', // link-local
  '::1/128',
  'fc00::/7', // unique local
  'fe80::/10', // link-local
].map((r) => parseIpRange(r) as IpRange);

/** Loopback, private and link-local addresses: peers whose forwarding headers are believed. */
export function isTrustedProxy(ip: IpAddress): boolean {
  return TRUSTED.some((r) => rangeContains(r, ip));
}
