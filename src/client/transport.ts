/**
 * The SDK's one HTTP path: `fetch` with a token, a per-call timeout and the caller's AbortSignal,
 * and every failure turned into a {@link FerryError} — the server's status and `x-reduct-error`
 * message, or a negative client code (api.md §3.5): -2 timeout, -3 unreachable, -4 bad URL, -5 aborted.
 * Uses only what Node 20 and browsers share (fetch, AbortController, web streams).
 */
import { ERROR_HEADER } from '../protocol/error-body.js';
import { Errors, FerryError, isFerryError } from '../protocol/errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';

/** Options of a client. */
export interface ClientOptions {
  /** API token (sent as `Authorization: Bearer …`); none for a server without authentication. */
  token?: string;
  /** Default time limit of one call in ms, until its answer has arrived (default 30 000; 0 = none). */
  timeoutMs?: number;
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** Options every call accepts. */
export interface CallOptions {
  /** Cancels the call (and, for streamed answers, the stream); it then fails with code -5. */
  signal?: AbortSignal;
  /** Time limit of this call in ms; overrides the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** Body types a request accepts. */
export type RequestBody = Uint8Array | ArrayBuffer | string | Blob | ReadableStream<Uint8Array>;

/** One request. */
export interface RequestSpec extends CallOptions {
  method: string;
  /** Path below `/api/v1/` (already encoded). */
  path: string;
  query?: Record<string, string | number | bigint | boolean | undefined>;
  headers?: Record<string, string>;
  body?: RequestBody;
  /** JSON body (bigint-safe); sets `Content-Type: application/json`. */
  json?: unknown;
  /**
   * The answer's body is streamed to the caller: the timeout stops counting once headers arrive
   * (the signal still cancels the stream).
   */
  stream?: boolean;
}

/** Encodes a bucket or entry name for a path (entry names keep their `/`). */
export function encodePath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

/** The HTTP transport of one server. */
export class Transport {
  /** Base URL without trailing slash, e.g. `http://127.0.0.1:8383`. */
  readonly url: string;
  private readonly api: string;
  private readonly fetchFn: typeof fetch;

  constructor(
    url: string,
    private readonly options: ClientOptions = {},
  ) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw Errors.clientInvalidUrl(url);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw Errors.clientInvalidUrl(url);
    this.url = url.replace(/\/+$/, '');
    this.api = `${this.url}/api/v1/`;
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** The token the client sends, if any (used to hand it to a replication as `dst_token`). */
  get token(): string | undefined {
    return this.options.token;
  }

  /**
   * Sends a request and returns the response when its status is 2xx (204 included); any other
   * status throws FerryError(status, server message). Non-streamed bodies must be read by the caller
   * through {@link Transport.json} or {@link Transport.empty} so that the timeout covers them.
   */
  async send(spec: RequestSpec): Promise<{ response: Response; done: () => void }> {
    const ms = spec.timeoutMs ?? this.options.timeoutMs ?? 30_000;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const what = `${spec.method} ${spec.path.split('?')[0]}`;
    if (ms > 0) timer = setTimeout(() => controller.abort(Errors.clientTimeout(what, ms)), ms);
    const onAbort = (): void => controller.abort(Errors.clientAborted());
    if (spec.signal?.aborted) onAbort();
    else spec.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      spec.signal?.removeEventListener('abort', onAbort);
    };
    const headers: Record<string, string> = { ...spec.headers };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    let body: RequestBody | undefined = spec.body;
    if (spec.json !== undefined) {
      body = stringifyJson(spec.json);
      headers['content-type'] = 'application/json';
    }
    const init: RequestInit & { duplex?: 'half' } = {
      method: spec.method,
      headers,
      body: body as RequestInit['body'],
      signal: controller.signal,
    };
    // Node's fetch sends a stream body only when told it is half-duplex.
    if (body instanceof ReadableStream) init.duplex = 'half';
    let response: Response;
    try {
      response = await this.fetchFn(this.target(spec), init);
    } catch (e) {
      done();
      throw this.failure(e, controller.signal);
    }
    if (spec.stream) {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    }
    if (response.status >= 200 && response.status < 300) return { response, done };
    try {
      throw await responseError(response);
    } finally {
      done();
    }
  }

  /** A call answered with JSON (parsed bigint-safe: integers beyond 2^53 become bigint). */
  async json<T>(spec: RequestSpec): Promise<T> {
    const { response, done } = await this.send(spec);
    try {
      const text = await response.text();
      return parseJson(text) as T;
    } catch (e) {
      throw this.failure(e, spec.signal);
    } finally {
      done();
    }
  }

  /** A call answered with an empty body. */
  async empty(spec: RequestSpec): Promise<Response> {
    const { response, done } = await this.send(spec);
    try {
      await response.arrayBuffer();
      return response;
    } catch (e) {
      throw this.failure(e, spec.signal);
    } finally {
      done();
    }
  }

  private target(spec: RequestSpec): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `${this.api}${spec.path}${qs ? `?${qs}` : ''}`;
  }

  /** Turns a thrown value into a FerryError: the abort reason we set, or a network failure. */
  failure(e: unknown, signal: AbortSignal | undefined): FerryError {
    if (isFerryError(e)) return e;
    if (signal?.aborted && isFerryError(signal.reason)) return signal.reason;
    if (signal?.aborted) return Errors.clientAborted();
    return networkError(this.url, e);
  }
}

/** FerryError for a non-2xx response: the `x-reduct-error` header, else the JSON `detail`. */
export async function responseError(response: Response): Promise<FerryError> {
  let message = response.headers.get(ERROR_HEADER) ?? '';
  if (message === '') {
    try {
      const body = parseJson(await response.text()) as { detail?: unknown } | undefined;
      if (typeof body?.detail === 'string') message = body.detail;
    } catch {
      // not JSON: fall back to the status text
    }
  }
  return new FerryError(response.status, message || response.statusText || `HTTP ${response.status}`);
}

/** FerryError for a failure below HTTP (refused connection, DNS, TLS, reset). */
export function networkError(url: string, e: unknown): FerryError {
  const err = e as { message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (isFerryError(err?.cause)) return err.cause;
  const reason = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
  return Errors.clientUnreachable(url, reason);
}
