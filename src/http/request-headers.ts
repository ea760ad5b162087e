/**
 * Request headers without the per-record ones. A batch request carries one header per record
 * (`x-reduct-time-<ts>`, `x-reduct-<i>-<ts>`, `x-ferry-digest-<ts>`), which the batch parsers read
 * from `rawHeaders`. Node's `req.headers` (read by Node itself for every request: `Host`, `Expect`)
 * would build a dictionary of thousands of keys per batch, ~6% of a batch write's CPU and a lot of
 * short-lived garbage; {@link FerryIncomingMessage} builds it without them.
 */
import { IncomingMessage, type IncomingHttpHeaders } from 'node:http';

/** Below this many raw entries Node's own lazily built object is as cheap and exact. */
const SMALL = 64;
/** Headers whose repeated values Node discards (the first one wins). */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

const nodeHeaders = Object.getOwnPropertyDescriptor(IncomingMessage.prototype, 'headers');

/**
 * True for the per-record header names of the batch protocols. Complete for a lower-case `name`;
 * for any other spelling only a true answer is meaningful.
 */
function perRecord(name: string): boolean {
  if (name.charCodeAt(0) !== 120 /* x */) return false;
  if (name.startsWith('x-reduct-')) {
    if (name.startsWith('x-reduct-time-')) return true;
    const c = name.charCodeAt(9);
    return c >= 48 && c <= 57;
  }
  return name.startsWith('x-ferry-digest-');
}

function buildHeaders(raw: readonly string[]): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    // Per-record names usually arrive in lower case: skip those before paying for toLowerCase()
    // (exact: a match stays one after lower-casing); other spellings are checked after it.
    if (perRecord(raw[i]!)) continue;
    const name = raw[i]!.toLowerCase();
    if (perRecord(name)) continue;
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (!SINGLE.has(name)) out[name] = `${String(prev)}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

const FILTERED = Symbol('filteredHeaders');

/**
 * The server's request class: `headers` leaves out per-record batch headers once a request has
 * many headers, and is Node's own object otherwise.
 */
export class FerryIncomingMessage extends IncomingMessage {
  [FILTERED]: IncomingHttpHeaders | undefined;
}

// An accessor over Node's own (TypeScript's declaration of IncomingMessage calls it a property).
Object.defineProperty(FerryIncomingMessage.prototype, 'headers', {
  configurable: true,
  get(this: FerryIncomingMessage): IncomingHttpHeaders {
    const own = this[FILTERED];
    if (own) return own;
    if (this.rawHeaders.length < SMALL && nodeHeaders?.get)
      return nodeHeaders.get.call(this) as IncomingHttpHeaders;
    return (this[FILTERED] = buildHeaders(this.rawHeaders));
  },
  set(this: FerryIncomingMessage, value: IncomingHttpHeaders) {
    this[FILTERED] = value;
  },
});
