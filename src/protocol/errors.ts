/**
 * The one error type of Ferry. Every layer throws `FerryError`; the HTTP layer maps it to a
 * response in one place (status + `x-reduct-error` header + `{"detail": ...}` body, api.md §3.5).
 * The catalogue below holds the messages clients match byte for byte.
 */
export class FerryError extends Error {
  constructor(
    /** HTTP status (api.md). Negative client codes (-1..-6) are used inside replication only. */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'FerryError';
  }
}

export const isFerryError = (e: unknown): e is FerryError => e instanceof FerryError;

/** Error catalogue: one constructor per situation, with the exact wire message. */
export const Errors = {
  noContent: (msg = 'No content') => new FerryError(204, msg),
  badRequest: (msg: string) => new FerryError(400, msg),
  unauthorized: (msg: string) => new FerryError(401, msg),
  forbidden: (msg: string) => new FerryError(403, msg),
  notFound: (msg = 'Not found') => new FerryError(404, msg),
  methodNotAllowed: (msg = 'Method not allowed') => new FerryError(405, msg),
  conflict: (msg: string) => new FerryError(409, msg),
  payloadTooLarge: (msg: string) => new FerryError(413, msg),
  unprocessable: (msg: string) => new FerryError(422, msg),
  tooEarly: (msg: string) => new FerryError(425, msg),
  tooManyRequests: (msg: string) => new FerryError(429, msg),
  internal: (msg: string) => new FerryError(500, msg),
  unavailable: (msg: string) => new FerryError(503, msg),
  insufficientStorage: (msg: string) => new FerryError(507, msg),

  // names (§3.7)
  invalidName: () =>
    new FerryError(422, 'Bucket or entry name can contain only letters, digests and [-,_] symbols'),
  invalidEntryName: (name: string) => new FerryError(422, `Invalid entry name '${name}'`),

  // buckets (§7.3)
  bucketExists: (b: string) => new FerryError(409, `Bucket '${b}' already exists`),
  bucketNotFound: (b: string) => new FerryError(404, `Bucket '${b}' is not found`),
  bucketDeleting: (b: string) => new FerryError(409, `Bucket '${b}' is being deleted`),
  bucketProvisioned: (b: string) => new FerryError(409, `Can't change provisioned bucket '${b}'`),

  // entries and records (§8)
  entryNotFound: (e: string, b: string) => new FerryError(404, `Entry '${e}' not found in bucket '${b}'`),
  entryDeleting: (e: string, b: string) => new FerryError(409, `Entry '${e}' in bucket '${b}' is being deleted`),
  recordNotFound: (ts: bigint, b: string, e: string) =>
    new FerryError(404, `Record ${ts} not found in entry ${b}/${e}`),
  recordExists: (ts: bigint) => new FerryError(409, `A record with timestamp ${ts} already exists`),
  recordStillWritten: (ts: bigint) => new FerryError(425, `Record with timestamp ${ts} is still being written`),
  recordErrored: (ts: bigint) => new FerryError(500, `Record with timestamp ${ts} is broken`),
  quotaExceeded: (b: string) => new FerryError(400, `Quota of '${b}' exceeded`),
  quotaKeepFailed: (b: string) => new FerryError(500, `Failed to keep quota of '${b}'`),
  contentSmaller: () => new FerryError(400, 'Content is smaller than in content-length'),
  contentBigger: () => new FerryError(400, 'Content is bigger than in content-length'),
  diskFull: () => new FerryError(507, 'Not enough disk space to store the record'),
  tsRequired: () => new FerryError(422, "'ts' parameter is required"),
  tsInvalid: () => new FerryError(422, "'ts' must be an unix timestamp in microseconds"),
  contentLengthRequired: () => new FerryError(422, 'content-length header is required'),

  // queries (§9, §11, §12)
  queryNotFound: (id: bigint | number) =>
    new FerryError(404, `Query ${id} not found and it might have expired. Check TTL in your query request.`),
  invalidJson: (details: string) => new FerryError(422, `Invalid JSON: ${details}`),
} as const;

/** Wraps a Node errno error from the file system into a FerryError when it is a known condition. */
export function fromFsError(e: unknown): FerryError {
  if (isFerryError(e)) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return Errors.diskFull();
  return Errors.internal(`Storage failure: ${(e as Error)?.message ?? String(e)}`);
}
