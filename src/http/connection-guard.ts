/**
 * Bounds on what a connection may hold (issue 8 item 4): the time to send request headers, the
 * idle time between keep-alive requests, gaps in the data flow of a request in progress, and the
 * number of open connections. Time limits are gaps, never totals, so that a multi-GB upload that
 * keeps sending and a long query read that keeps reading are never cut.
 *
 * Body gaps on the read side are enforced where bodies are read (`body.ts`, RS_IO_OPERATION_TIMEOUT);
 * here the same gap bounds the socket as a whole: a connection with no traffic for that long is
 * closed unless the server itself is still working on its request (a long poll, a slow disk) and
 * has nothing unsent for the client.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import { API_VERSION, SERVER_VERSION } from './version.js';

/** The connection bounds of one server (from `FerryConfig.http` and `io`). */
export interface ConnectionLimits {
  /** Max time from a request's first byte to the end of its headers (ms). */
  headersTimeoutMs: number;
  /** Max idle time of a keep-alive connection between requests (ms). */
  keepAliveTimeoutMs: number;
  /** Max time without any traffic while a request is in progress (ms; RS_IO_OPERATION_TIMEOUT). */
  idleTimeoutMs: number;
  /** Max open connections; beyond it the oldest idle one is closed, or the new one refused. */
  maxConnections: number;
}

/** Server options that enforce the time bounds of `limits` (Node checks them in the background). */
export function connectionOptions(
  limits: ConnectionLimits,
): http.ServerOptions & { handshakeTimeout: number } {
  return {
    // HTTPS: a TLS handshake is part of getting the request in.
    handshakeTimeout: limits.headersTimeoutMs,
    // No total request time: uploads of many GB are legitimate. Gaps are bounded instead.
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often Node checks headersTimeout: a fraction of it, so that it is enforced closely.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

const TOO_MANY_BODY = '{"detail":"Too many connections"}';
const TOO_MANY =
  `HTTP/1.1 503 Service Unavailable\r\nx-reduct-api: ${API_VERSION}\r\nserver: ReductStore ${SERVER_VERSION}\r\n` +
  `x-reduct-error: Too many connections\r\ncontent-type: application/json\r\n` +
  `content-length: ${TOO_MANY_BODY.length}\r\nconnection: close\r\n\r\n${TOO_MANY_BODY}`;

/** Tracks the connections of a server and which of them have a request in progress. */
export class ConnectionGuard {
  /** Open connections, oldest first. */
  private readonly open = new Set<Socket>();
  private readonly active = new WeakMap<Socket, number>();

  constructor(
    server: http.Server,
    private readonly limits: ConnectionLimits,
    tls: boolean,
  ) {
    server.timeout = limits.idleTimeoutMs;
    server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => this.onConnection(socket));
    server.on('timeout', (socket: Socket) => this.onTimeout(socket));
  }

  /** Number of open connections. */
  get size(): number {
    return this.open.size;
  }

  /** Marks a request in progress on its connection until its response is closed. */
  track(socket: Socket, res: http.ServerResponse): void {
    this.active.set(socket, (this.active.get(socket) ?? 0) + 1);
    res.once('close', () => this.active.set(socket, Math.max(0, (this.active.get(socket) ?? 1) - 1)));
  }

  private busy(socket: Socket): boolean {
    return (this.active.get(socket) ?? 0) > 0;
  }

  private onConnection(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    if (this.open.size <= this.limits.maxConnections) return;
    // Full: the oldest connection without a request in progress (idle keep-alive, or headers
    // still dripping in) makes room; when every connection is busy, the newcomer is refused.
    for (const s of this.open) {
      if (s !== socket && !this.busy(s)) {
        s.destroy();
        return;
      }
    }
    socket.end(TOO_MANY);
    socket.setTimeout(1000, () => socket.destroy());
  }

  private onTimeout(socket: Socket): void {
    // The client is silent. Keep the connection only while the server is the one working on an
    // answer that the client is not holding up.
    if (!this.busy(socket) || socket.writableLength > 0) socket.destroy();
  }
}
