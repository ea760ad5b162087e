/**
 * A deliberately dumb HTTP/1.1 client over a raw TCP socket, for malformed-input tests: it sends the
 * request line, headers and body bytes exactly as given (no path normalisation, no header
 * validation), can lie about Content-Length and hang up mid-body, and reads the answer to EOF.
 */
import { connect } from 'node:net';

/** One raw request. */
export interface RawRequest {
  method: string;
  /** Sent verbatim in the request line. */
  path: string;
  /** Sent verbatim, in order; `host` and `connection: close` are added first. */
  headers?: Array<[string, string]>;
  body?: Buffer | string;
  /** Content-Length to declare: default the body length; `null` sends none. */
  contentLength?: number | null;
  /** Half-close the socket right after the body (with a short declared length: a truncated upload). */
  hangUp?: boolean;
  /** Give up after this long (default 15 s): a hang is a failure. */
  timeoutMs?: number;
}

/** What came back; `status` 0 when the server closed the connection without answering. */
export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Map<string, string>;
  body: Buffer;
  /** Milliseconds until the connection closed. */
  elapsedMs: number;
}

function parseResponse(raw: Buffer, elapsedMs: number): RawResponse {
  const headers = new Map<string, string>();
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers, body: raw, elapsedMs };
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  // A 100 Continue may precede the real answer.
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (m && m[1] === '100') return parseResponse(raw.subarray(end + 4), elapsedMs);
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  let body = raw.subarray(end + 4);
  if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') body = dechunk(body);
  return { status: m ? Number(m[1]) : 0, headers, body, elapsedMs };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', pos);
    if (eol < 0) break;
    const size = parseInt(data.subarray(pos, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Sends one request on a fresh connection and resolves when the server closes it. */
export function rawRequest(port: number, r: RawRequest): Promise<RawResponse> {
  const body = typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : (r.body ?? Buffer.alloc(0));
  const timeoutMs = r.timeoutMs ?? 15_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${r.method} ${r.path.slice(0, 200)}`));
    }, timeoutMs);
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(parseResponse(Buffer.concat(received), Date.now() - started));
    };
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => socket.end());
    socket.on('close', finish);
    // A reset after the answer arrived is fine; a reset without one shows as status 0.
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      let head = `${r.method} ${r.path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n`;
      for (const [name, value] of r.headers ?? []) head += `${name}: ${value}\r\n`;
      const declared = r.contentLength === undefined ? body.length : r.contentLength;
      if (declared !== null) head += `content-length: ${declared}\r\n`;
      socket.write(Buffer.concat([Buffer.from(head + '\r\n', 'utf8'), body]));
      if (r.hangUp === true) socket.end();
    });
  });
}
