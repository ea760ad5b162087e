/**
 * A small HTTP CONNECT proxy for tests, run as a process of its own (`node connect-proxy.js`):
 * listens on 127.0.0.1 (port `PROXY_PORT`, default a free one), prints `listening <port>`, then one
 * line `CONNECT <host:port> <status>` per tunnel request. With `PROXY_AUTH=user:password` it wants
 * that Basic `Proxy-Authorization` and answers 407 otherwise. Anything but CONNECT gets 405.
 * `startConnectProxy` spawns it and reads its lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

/** A running proxy process. */
export interface ConnectProxy {
  readonly port: number;
  /** The `CONNECT` lines printed so far (`<host:port> <status>`). */
  connects(): string[];
  /** SIGKILLs the process and waits for its exit. */
  close(): Promise<void>;
}

/** Spawns the proxy as a child process; `auth` is `user:password` to require. */
export async function startConnectProxy(auth?: string): Promise<ConnectProxy> {
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, ...(auth ? { PROXY_AUTH: auth } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`proxy exited with ${code}`)));
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      buf += text;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^listening (\d+)$/.exec(line);
        if (m) resolve(Number(m[1]));
        else if (line.startsWith('CONNECT ')) lines.push(line.slice('CONNECT '.length));
      }
    });
  });
  return {
    port,
    connects: () => [...lines],
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** The proxy itself. */
function serve(): void {
  const auth = process.env.PROXY_AUTH;
  const expected = auth ? `Basic ${Buffer.from(auth).toString('base64')}` : undefined;
  const server = createServer((client: Socket) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const rest = head.subarray(end + 4);
      const [method, target] = (lines[0] ?? '').split(' ');
      const given = lines.find((l) => /^proxy-authorization:/i.test(l))?.replace(/^[^:]*:\s*/, '');
      const answer = (status: string): void => {
        process.stdout.write(`CONNECT ${target} ${status.split(' ')[0]}\n`);
        client.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      };
      if (method !== 'CONNECT' || !target) return answer('405 Method Not Allowed');
      if (expected && given !== expected) return answer('407 Proxy Authentication Required');
      const i = target.lastIndexOf(':');
      const upstream = connect({
        host: target.slice(0, i).replace(/^\[|\]$/g, ''),
        port: Number(target.slice(i + 1)),
      });
      let tunneled = false;
      upstream.once('connect', () => {
        tunneled = true;
        process.stdout.write(`CONNECT ${target} 200\n`);
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      upstream.once('error', () => (tunneled ? client.destroy() : answer('502 Bad Gateway')));
      client.once('error', () => upstream.destroy());
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    };
    client.on('data', onData);
    client.on('error', () => undefined);
  });
  server.listen(Number(process.env.PROXY_PORT ?? 0), '127.0.0.1', () => {
    process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve();
