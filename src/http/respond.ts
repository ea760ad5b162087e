/**
 * The one place that turns results and errors into HTTP responses (api.md §3.5).
 *
 * Errors: status + `x-reduct-error: <message>` + `{"detail": "<message with " → '>"}`; a 204
 * travels the same path but with an empty body. Anything that is not a FerryError is a bug or an
 * I/O failure: it becomes a 500 and is logged.
 */
import type { ServerResponse } from 'node:http';
import { Errors, FerryError, isFerryError } from '../protocol/errors.js';
import { ERROR_HEADER, type ErrorBody } from '../protocol/error-body.js';
import { stringifyJson } from '../protocol/json.js';

/** Logger used for unexpected errors (set by the app so that logs reach `$system`). */
export type ErrorLogger = (msg: string) => void;

let logUnexpected: ErrorLogger = (msg) => console.error(msg);

/** Replaces the logger used for unexpected (500) errors. */
export function setErrorLogger(logger: ErrorLogger): void {
  logUnexpected = logger;
}

// Visible ASCII, space and tab (RFC 7230 field-value without obs-text). Not shared with the check
// of per-record error headers in protocol/batch-v1.ts, which also passes 0x80-0xff: merging them
// would change what either sends.
const HEADER_SAFE = /^[\t\x20-\x7e]*$/;

/** True when `value` can be sent as a header value as is. */
export function isHeaderSafe(value: string): boolean {
  return HEADER_SAFE.test(value);
}

/** Normalises any thrown value into a FerryError (unexpected errors are logged and become 500). */
export function toFerryError(e: unknown): FerryError {
  if (isFerryError(e)) return e;
  const err = e as NodeJS.ErrnoException | undefined;
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT') {
    return Errors.diskFull();
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(e);
  logUnexpected(`Unexpected error: ${text}`);
  return new FerryError(500, err instanceof Error ? err.message : String(e));
}

/** Sends an error response; safe to call when headers were already sent (then it just ends). */
export function sendError(res: ServerResponse, e: unknown): void {
  const err = toFerryError(e);
  if (res.headersSent) {
    // A streamed response failed midway: the only honest signal left is to cut the connection.
    res.destroy(err);
    return;
  }
  const status = err.status > 0 ? err.status : 500;
  res.statusCode = status;
  res.setHeader(ERROR_HEADER, isHeaderSafe(err.message) ? err.message : 'Unparsable message');
  if (status === 204 || status === 304 || status < 200) {
    res.removeHeader('content-type');
    res.end();
    return;
  }
  const body = Buffer.from(stringifyJson({ detail: err.message.replaceAll('"', "'") } satisfies ErrorBody));
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', body.length);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

/** Sends a JSON body (bigint-safe) with status 200 unless given. */
export function sendJson(res: ServerResponse, value: unknown, status = 200): void {
  const body = Buffer.from(stringifyJson(value));
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', body.length);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

/** Sends an empty 200 (or the given status). */
export function sendEmpty(res: ServerResponse, status = 200): void {
  res.statusCode = status;
  res.setHeader('content-length', 0);
  res.end();
}
