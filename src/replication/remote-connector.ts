/**
 * How the connection pool of a remote opens a connection (replication.md §5): TCP (through an
 * HTTP CONNECT proxy when the remote has one), TLS for `https`, then an identity check on the new
 * connection before the pool may send anything on it: `HEAD <base>/api/v1/alive` and its
 * `x-ferry-instance` header. A connection to another instance than the pinned one is closed
 * before a single record travels, whatever DNS or port change led there.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { buildConnector } from 'undici';
import { undici } from './undici.js';

/** Error codes of connection failures of our own (mapped to client codes by the remote target). */
export const IDENTITY_MISMATCH = 'FERRY_REMOTE_IDENTITY_MISMATCH';
export const HANDSHAKE_TIMEOUT = 'FERRY_REMOTE_HANDSHAKE_TIMEOUT';
export const PROXY_REFUSED = 'FERRY_REMOTE_PROXY_REFUSED';

/** Bytes of an answer head we read before giving up (a Ferry's is well under 1 KiB). */
const MAX_HEAD_BYTES = 64 * 1024;

/** Options of {@link remoteConnector}. */
export interface RemoteConnectorOptions {
  /** Base URL of the remote (its path is the API base path). */
  url: URL;
  /** HTTP CONNECT proxy (`http://[user:password@]host:port`), or null. */
  proxy: URL | null;
  connectTimeoutMs: number;
  /** Bound on the proxy's and the identity check's answers. */
  requestTimeoutMs: number;
  verifyTls: boolean;
  ca: string | null;
  /**
   * Called with the `x-ferry-instance` of every new connection (`null`: none, a ReductStore);
   * throws to refuse the connection (an identity mismatch).
   */
  verify(instanceId: string | null): void;
  /** Called once per connection that passed the check (pool statistics). */
  opened(): void;
}

/** An Error with a code, as Node's and undici's are. */
function codedError(code: string, message: string): Error {
  const e = new Error(message) as Error & { code: string };
  e.code = code;
  return e;
}

/** The status code and lower-cased headers of an HTTP/1.1 answer head. */
interface Head {
  status: number;
  headers: Map<string, string>;
}

/**
 * Reads one answer head from `socket` (paused mode, so that nothing is lost for the next reader);
 * bytes after the head are pushed back.
 */
function readHead(socket: Socket, timeoutMs: number, what: string): Promise<Head> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, head?: Head): void => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
      if (err) reject(err);
      else resolve(head!);
    };
    const onError = (e: Error): void => done(e);
    const onEnd = (): void =>
      done(codedError('ECONNRESET', `${what}: the connection was closed before an answer`));
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES)
            return done(codedError('ECONNRESET', `${what}: answer head too large`));
          continue;
        }
        const rest = buf.subarray(end + 4);
        if (rest.length > 0) socket.unshift(rest);
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
        if (!m) return done(codedError('ECONNRESET', `${what}: not an HTTP answer`));
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
        }
        return done(null, { status: Number(m[1]), headers });
      }
    };
    const timer = setTimeout(
      () => done(codedError(HANDSHAKE_TIMEOUT, `${what}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
  });
}

/** Opens a tunnel to `host:port` through an HTTP CONNECT proxy. */
async function tunnel(proxy: URL, host: string, port: number, opts: RemoteConnectorOptions): Promise<Socket> {
  const socket = netConnect({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80) });
  socket.setNoDelay(true);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            codedError('UND_ERR_CONNECT_TIMEOUT', `Proxy connect timeout after ${opts.connectTimeoutMs} ms`),
          ),
        opts.connectTimeoutMs,
      );
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    let req = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n`;
    if (proxy.username !== '' || proxy.password !== '') {
      const cred = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      req += `Proxy-Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n`;
    }
    socket.write(`${req}\r\n`);
    const head = await readHead(socket, opts.requestTimeoutMs, 'Proxy CONNECT');
    if (head.status !== 200)
      throw codedError(PROXY_REFUSED, `Proxy refused the tunnel to ${target}: HTTP ${head.status}`);
    return socket;
  } catch (e) {
    socket.destroy();
    throw e;
  }
}

/** Sends the identity check on a fresh connection and hands the answer's instance id to `verify`. */
async function checkIdentity(socket: Socket, opts: RemoteConnectorOptions): Promise<void> {
  const base = opts.url.pathname.replace(/\/+$/, '');
  socket.write(`HEAD ${base}/api/v1/alive HTTP/1.1\r\nHost: ${opts.url.host}\r\nUser-Agent: ferry\r\n\r\n`);
  const head = await readHead(socket, opts.requestTimeoutMs, 'Identity check');
  if ((head.headers.get('connection') ?? '').toLowerCase() === 'close')
    throw codedError('ECONNRESET', 'Identity check: the remote closes the connection');
  opts.verify(head.headers.get('x-ferry-instance') ?? null);
}

/** The `connect` function of a remote's undici pool. */
export function remoteConnector(opts: RemoteConnectorOptions): buildConnector.connector {
  const direct = undici().buildConnector({
    timeout: opts.connectTimeoutMs,
    rejectUnauthorized: opts.verifyTls,
    ...(opts.ca ? { ca: opts.ca } : {}),
  });
  const connectDirect = (o: buildConnector.Options): Promise<Socket> =>
    new Promise((resolve, reject) => direct(o, (err, s) => (err ? reject(err) : resolve(s!))));
  const open = async (o: buildConnector.Options): Promise<Socket> => {
    if (!opts.proxy) return connectDirect(o);
    const https = o.protocol === 'https:';
    const port = Number(o.port || (https ? 443 : 80));
    const raw = await tunnel(opts.proxy, o.hostname, port, opts);
    if (!https) return raw;
    try {
      return await connectDirect({ ...o, httpSocket: raw });
    } catch (e) {
      raw.destroy();
      throw e;
    }
  };
  return (o, callback) => {
    open(o).then(
      (socket) =>
        checkIdentity(socket, opts).then(
          () => {
            opts.opened();
            callback(null, socket);
          },
          (e: Error) => {
            socket.destroy();
            callback(e, null);
          },
        ),
      (e: Error) => callback(e, null),
    );
  };
}
