/**
 * Raw HTTP/1.1 requests through `node:http` with full control over the headers and the body: the
 * headers go out exactly as given (names, spelling and order; nothing added but what Node itself
 * adds: `Host`, `Connection`), the body as the given chunks with optional pauses between them. With
 * `Expect: 100-continue` among the headers the body is only sent once the server answered
 * `100 Continue`, the way a well-behaved client does.
 */
import { request, type Agent } from 'node:http';
import type { Socket } from 'node:net';

/** One answer. */
export interface RawHttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The server sent `100 Continue` before its answer. */
  continued: boolean;
  /** The connection the request went over (to tell reused keep-alive connections from new ones). */
  socket: Socket;
}

/** A body part: bytes to write, or a number = milliseconds to pause before the next part. */
export type RawBodyPart = Buffer | string | number;

/** Options of {@link rawHttp}. */
export interface RawHttpOptions {
  /** Connection pool to use (default: Node's global agent). */
  agent?: Agent;
}

const expectsContinue = (headers: Record<string, string | number>): boolean =>
  Object.entries(headers).some(
    ([name, value]) =>
      name.toLowerCase() === 'expect' && String(value).trim().toLowerCase() === '100-continue',
  );

/**
 * Sends one request to `url` and resolves with the complete answer. Rejects on connection errors.
 * When the server answers without `100 Continue` to a request that expects it, the body is never
 * sent (`continued` is false).
 */
export function rawHttp(
  method: string,
  url: string,
  headers: Record<string, string | number>,
  body: readonly RawBodyPart[] = [],
  opts: RawHttpOptions = {},
): Promise<RawHttpResponse> {
  return new Promise((resolve, reject) => {
    const waitForContinue = expectsContinue(headers);
    let continued = false;
    let bodyStarted = false;
    const req = request(url, { method, headers, agent: opts.agent }, (res) => {
      // A final answer without `100 Continue`: finish the request without its body.
      if (!bodyStarted) {
        bodyStarted = true;
        req.end();
      }
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          continued,
          socket: res.socket,
        }),
      );
    });
    req.on('error', reject);
    const sendBody = async (): Promise<void> => {
      if (bodyStarted) return;
      bodyStarted = true;
      for (const part of body) {
        if (typeof part === 'number') await new Promise((r) => setTimeout(r, part));
        else req.write(part);
      }
      req.end();
    };
    if (waitForContinue) {
      req.on('continue', () => {
        continued = true;
        void sendBody();
      });
      // Node holds the headers back until the first body write: send them now.
      req.flushHeaders();
    } else {
      void sendBody();
    }
  });
}
