/**
 * Per-request state handed to route handlers: parsed URL, route params, the body, the services
 * and the authenticated principal.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { firstHeader } from '../auth/client-ip.js';
import type { Principal } from '../auth/types.js';
import { RequestBody } from './body.js';
import type { HttpServices } from './services.js';

/** Per-request state. */
export class RequestContext {
  /** Set by the auth hook once the caller is authenticated (used for the audit trail). */
  principal?: Principal;
  private bodyInstance?: RequestBody;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly services: HttpServices,
    readonly path: string,
    readonly query: URLSearchParams,
    readonly params: Record<string, string | undefined>,
    readonly expectContinue: boolean,
  ) {}

  /** The request body (created lazily; one per request). */
  get body(): RequestBody {
    this.bodyInstance ??= new RequestBody(this.req, this.res, {
      operationTimeoutMs: this.services.config.io.operationTimeoutMs,
      expectContinue: this.expectContinue,
    });
    return this.bodyInstance;
  }

  /** True when a body object was created (so it may need draining). */
  get hasBody(): boolean {
    return this.bodyInstance !== undefined;
  }

  /** Reads the JSON body within the configured bound. */
  json(): Promise<unknown> {
    return this.body.json(this.services.config.maxJsonBody);
  }

  /** A route parameter that the router guarantees to be present. */
  param(name: string): string {
    return this.params[name] ?? '';
  }

  /** Header value as a single string (first one when repeated). */
  header(name: string): string | undefined {
    return firstHeader(this.req.headers[name]);
  }
}
