/**
 * Request body reading (api.md §3.3, §3.6, §8.1, §19).
 *
 * One `RequestBody` per request gives a single decoded chunk iterator (gzip via zlib, zstd via
 * the streaming `fzstd` decoder because Node 20 has no zstd), guarded by the idle timeout
 * `RS_IO_OPERATION_TIMEOUT`. Record payloads are handed to storage as async iterables sliced from
 * that iterator (`ByteReader`), so nothing larger than one network chunk is ever buffered.
 * JSON bodies are read up to a size bound and parsed whatever their Content-Type.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGunzip, createInflate, createBrotliDecompress } from 'node:zlib';
import type { Transform } from 'node:stream';
import { Decompress } from 'fzstd';
import { Errors, FerryError } from '../protocol/errors.js';
import { parseJson } from '../protocol/json.js';

/** Options of a request body. */
export interface RequestBodyOptions {
  /** Max time without body data before the request fails with 400 (ms). */
  operationTimeoutMs: number;
  /** The client sent `Expect: 100-continue`; a `100 Continue` is sent before the first read. */
  expectContinue: boolean;
}

type Encoding = 'identity' | 'gzip' | 'deflate' | 'br' | 'zstd';

function parseEncoding(header: string | undefined): Encoding {
  const value = (header ?? '').trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  if (value === 'br') return 'br';
  if (value === 'zstd') return 'zstd';
  throw Errors.unprocessable(`Unsupported content encoding '${value}'`);
}

const isAbort = (e: unknown): boolean => {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return (
    code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (e as Error)?.message === 'aborted'
  );
};

/** The body of one request. Create it once per request (see `RequestContext.body`). */
export class RequestBody {
  private iterator?: AsyncIterator<Buffer>;
  private decoder?: Transform;
  private continueSent = false;
  private finished = false;
  readonly encoding: Encoding;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly opts: RequestBodyOptions,
  ) {
    this.encoding = parseEncoding(req.headers['content-encoding']);
  }

  /** True when the payload bytes are sent compressed (Content-Length then counts encoded bytes). */
  get compressed(): boolean {
    return this.encoding !== 'identity';
  }

  /** The decoded chunk iterator (created on first use; the same one on every call). */
  chunks(): AsyncIterator<Buffer> {
    if (!this.iterator) {
      if (this.opts.expectContinue && !this.continueSent) {
        this.continueSent = true;
        this.res.writeContinue();
      }
      this.iterator = this.withIdleTimeout(this.decoded());
    }
    return this.iterator;
  }

  /**
   * The whole body when it is `size` bytes, identity-encoded and already received completely (a
   * small record usually arrives with its headers): taken at once, without the chunk iterator, its
   * idle timer and a hash object per chunk (issue 10: ~5 % of the CPU of a 1 KiB write). Undefined
   * otherwise, with nothing consumed.
   */
  async takeComplete(size: number): Promise<Buffer | undefined> {
    const req = this.req;
    if (this.iterator || this.encoding !== 'identity' || size === 0) return undefined;
    if (this.opts.expectContinue && !this.continueSent) return undefined;
    // Content-Length bounds what the parser hands out: with `size` bytes of it buffered, the
    // body is complete (whether or not the end of the message was seen yet).
    if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) !== size)
      return undefined;
    // The request is handled as soon as its headers are parsed; the rest of the packet (the body)
    // is parsed right after, before the next microtask.
    if (req.readableLength < size) await undefined;
    if (this.iterator || req.readableLength !== size || req.readableFlowing) return undefined;
    const buf = req.read(size) as Buffer | null;
    if (buf === null) return undefined;
    this.finished = true;
    // nothing is left to read: flowing, the stream ends as soon as the end of the message is parsed
    req.resume();
    return buf;
  }

  /** A reader that slices the decoded body into records. */
  reader(): ByteReader {
    return new ByteReader(this.chunks());
  }

  /** Reads the whole decoded body as text, at most `limit` bytes (413 beyond). */
  async text(limit: number): Promise<string> {
    const it = this.chunks();
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      total += r.value.length;
      if (total > limit) throw Errors.payloadTooLarge(`Request body is larger than ${limit} bytes`);
      parts.push(r.value);
    }
    this.finished = true;
    return Buffer.concat(parts, total).toString('utf8');
  }

  /** Reads and parses a JSON body (any Content-Type). Empty body → undefined. */
  async json(limit: number): Promise<unknown> {
    return parseJson(await this.text(limit));
  }

  /**
   * Discards whatever is left of the body so that a keep-alive connection stays usable, within
   * `limitBytes` (see {@link discardBody}); when the client is still waiting for `100 Continue` the
   * body is never sent and the connection is closed.
   */
  drain(limitBytes = Infinity): void {
    if (this.finished || this.req.readableEnded) return;
    if (this.opts.expectContinue && !this.continueSent) {
      this.res.shouldKeepAlive = false;
      return;
    }
    if (this.decoder) {
      this.req.unpipe(this.decoder);
      this.decoder.destroy();
    }
    // An abandoned async iterator keeps the stream in paused mode, where resume() is a no-op:
    // drop its listener; the 'data' listener of discardBody then resumes the stream.
    this.req.removeAllListeners('readable');
    discardBody(this.req, this.res, { idleMs: this.opts.operationTimeoutMs, limitBytes });
  }

  /** Marks the body as fully consumed. */
  markFinished(): void {
    this.finished = true;
  }

  private decoded(): AsyncIterator<Buffer> {
    const raw = (): AsyncIterator<Buffer> =>
      this.req.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    switch (this.encoding) {
      case 'identity':
        return raw();
      case 'zstd':
        return zstdDecode(raw());
      default: {
        const decoder =
          this.encoding === 'gzip'
            ? createGunzip()
            : this.encoding === 'deflate'
              ? createInflate()
              : createBrotliDecompress();
        this.decoder = decoder;
        this.req.on('error', (e) => decoder.destroy(e));
        this.req.pipe(decoder);
        return decoder.iterator({ destroyOnReturn: true })[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      }
    }
  }

  private withIdleTimeout(src: AsyncIterator<Buffer>): AsyncIterator<Buffer> {
    const ms = this.opts.operationTimeoutMs;
    const wrap = async (): Promise<IteratorResult<Buffer>> => {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // A stalled client would keep the connection busy forever: close it after answering.
          this.res.shouldKeepAlive = false;
          reject(Errors.badRequest(`Timeout of ${ms} ms while reading the request body`));
        }, ms);
      });
      try {
        const r = await Promise.race([src.next(), stalled]);
        if (r.done) this.finished = true;
        return r;
      } catch (e) {
        if (e instanceof FerryError) throw e;
        if (isAbort(e)) throw Errors.badRequest('Content is smaller than in content-length');
        if ((e as NodeJS.ErrnoException)?.code?.startsWith('Z_') || e instanceof ZstdDecodeError) {
          throw Errors.badRequest(`Failed to decompress request body: ${(e as Error).message}`);
        }
        throw e;
      } finally {
        clearTimeout(timer);
      }
    };
    return { next: wrap };
  }
}

/** Bounds of {@link discardBody}. */
export interface DiscardOptions {
  /** The connection is closed when no body byte arrived for this long (ms). */
  idleMs: number;
  /** Bytes discarded before the server stops reading and ends the connection. */
  limitBytes: number;
}

/**
 * Reads and drops the rest of a request body that nobody will consume (the answer is sent or on
 * its way), so that the connection can serve the next request. A client that keeps sending beyond
 * `limitBytes` is no longer read and its connection is ended once the answer is out; one that
 * stalls for `idleMs` has it closed: an unauthenticated client cannot keep the server reading, and
 * a stalled one cannot hold a socket.
 */
export function discardBody(req: IncomingMessage, res: ServerResponse, opts: DiscardOptions): void {
  if (req.readableEnded || req.destroyed) return;
  let seen = 0;
  const whenAnswered = (close: () => void): void => {
    res.shouldKeepAlive = false;
    if (res.writableFinished) close();
    else res.once('finish', close);
  };
  // Too much: stop reading and say goodbye (FIN) but do not reset: a reset could destroy the answer
  // in the client's receive buffer before it read it. The socket idle bound ends the rest.
  const cut = (): void => {
    clearTimeout(timer);
    req.pause();
    whenAnswered(() => req.socket.end());
  };
  const timer = setTimeout(() => whenAnswered(() => req.socket.destroy()), opts.idleMs);
  req.on('error', () => undefined);
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > opts.limitBytes) cut();
    else timer.refresh();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

class ZstdDecodeError extends Error {}

/** Streaming zstd decoding of an iterator of compressed chunks. */
async function* zstdDecode(src: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  let out: Buffer[] = [];
  const decoder = new Decompress((data) => {
    if (data.length > 0) out.push(Buffer.from(data));
  });
  const push = (chunk: Uint8Array, final: boolean): void => {
    try {
      decoder.push(chunk, final);
    } catch (e) {
      throw new ZstdDecodeError((e as Error).message);
    }
  };
  for (;;) {
    const r = await src.next();
    if (r.done) break;
    push(r.value, false);
    if (out.length > 0) {
      const ready = out;
      out = [];
      yield* ready;
    }
  }
  push(new Uint8Array(0), true);
  yield* out;
}

/**
 * Cuts a chunk stream into consecutive byte ranges. Only one slice may be read at a time; the
 * next slice must be created after the previous one finished (`RecordSlice.done`) or was skipped.
 */
export class ByteReader {
  private pending: Buffer | undefined;
  private ended = false;

  constructor(private readonly src: AsyncIterator<Buffer>) {}

  /** Returns up to `max` bytes, or undefined at the end of the body. */
  async read(max: number): Promise<Buffer | undefined> {
    let chunk = this.pending;
    this.pending = undefined;
    while (!chunk || chunk.length === 0) {
      if (this.ended) return undefined;
      const r = await this.src.next();
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      chunk = r.value;
    }
    if (chunk.length > max) {
      this.pending = chunk.subarray(max);
      return chunk.subarray(0, max);
    }
    return chunk;
  }

  /**
   * Takes the next `size` bytes synchronously when they are all in the chunk already received
   * (the common case for small records in a batch); undefined otherwise (nothing is consumed).
   */
  takeBuffered(size: number): Buffer | undefined {
    const chunk = this.pending;
    if (!chunk || chunk.length < size) return undefined;
    if (chunk.length === size) {
      this.pending = undefined;
      return chunk;
    }
    this.pending = chunk.subarray(size);
    return chunk.subarray(0, size);
  }

  /** True when `takeBuffered(size)` would succeed now. */
  takeBufferedPossible(size: number): boolean {
    return this.pending !== undefined && this.pending.length >= size;
  }

  /**
   * Buffers at least `size` bytes when the body has them, joining a partial chunk with the next
   * ones, so that `takeBuffered(size)` can serve small records that straddle chunk boundaries.
   */
  async fill(size: number): Promise<void> {
    while (!this.pending || this.pending.length < size) {
      if (this.ended) return;
      const r = await this.src.next();
      if (r.done) {
        this.ended = true;
        return;
      }
      this.pending =
        this.pending && this.pending.length > 0 ? Buffer.concat([this.pending, r.value]) : r.value;
    }
  }

  /** True when no byte is left (reads ahead one chunk if needed). */
  async atEnd(): Promise<boolean> {
    const c = await this.read(Number.MAX_SAFE_INTEGER);
    if (c === undefined) return true;
    this.pending = c;
    return false;
  }

  /** A slice of the next `size` bytes. With `exact`, extra bytes after it fail the slice (400). */
  slice(size: number, exact = false): RecordSlice {
    return new RecordSlice(this, size, exact);
  }
}

/**
 * `size` bytes of a body, readable once as an async iterable. Ends early (without error) when the
 * body is shorter — storage turns that into `Content is smaller than in content-length`.
 */
export class RecordSlice implements AsyncIterable<Buffer> {
  private remaining: number;
  private inflight: Promise<unknown> = Promise.resolve();
  private resolveDone!: () => void;
  /** Resolves once every byte of the slice was handed out, or the body ended early. */
  readonly done: Promise<void>;
  /** True when the body ended before the slice was complete. */
  truncated = false;

  constructor(
    private readonly reader: ByteReader,
    readonly size: number,
    private readonly exact: boolean,
  ) {
    this.remaining = size;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    if (size === 0) this.resolveDone();
  }

  private async pull(): Promise<Buffer | undefined> {
    if (this.remaining === 0) return undefined;
    const chunk = await this.reader.read(this.remaining);
    if (chunk === undefined) {
      this.truncated = true;
      this.remaining = 0;
      this.resolveDone();
      return undefined;
    }
    this.remaining -= chunk.length;
    if (this.remaining === 0) {
      if (this.exact && !(await this.reader.atEnd())) {
        this.resolveDone();
        throw Errors.contentBigger();
      }
      this.resolveDone();
    }
    return chunk;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: async () => {
        const p = this.inflight.then(() => this.pull());
        this.inflight = p.catch(() => undefined);
        const chunk = await p;
        return chunk === undefined ? { done: true, value: undefined } : { done: false, value: chunk };
      },
      return: async () => ({ done: true, value: undefined }),
    };
  }

  /** Reads and discards the bytes of the slice nobody consumed. */
  async skipRest(): Promise<void> {
    await this.inflight;
    while (this.remaining > 0) {
      if ((await this.pull()) === undefined) break;
    }
  }
}
