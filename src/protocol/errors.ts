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
  entryDeleting: (e: string, b: string) =>
    new FerryError(409, `Entry '${e}' in bucket '${b}' is being deleted`),
  recordNotFound: (ts: bigint, b: string, e: string) =>
    new FerryError(404, `Record ${ts} not found in entry ${b}/${e}`),
  recordExists: (ts: bigint) => new FerryError(409, `A record with timestamp ${ts} already exists`),
  recordStillWritten: (ts: bigint) =>
    new FerryError(425, `Record with timestamp ${ts} is still being written`),
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

  // batch protocols v1/v2 (§10, §11)
  invalidBatchedHeader: () => new FerryError(422, 'Invalid batched header'),
  invalidBatchedContentLength: () => new FerryError(422, 'Invalid content length'),
  invalidBatchedTime: () =>
    new FerryError(422, "Invalid header'x-reduct-time-xxx': must be an unix timestamp in microseconds"),
  batchEntriesRequired: () => new FerryError(422, 'x-reduct-entries header is required'),
  batchStartTsRequired: () => new FerryError(422, 'x-reduct-start-ts header is required'),
  batchStartTsInvalid: () => new FerryError(422, 'Invalid x-reduct-start-ts header'),
  batchLabelsEmpty: () => new FerryError(422, 'x-reduct-labels header is empty'),
  batchEntryEncoding: (encoded: string) =>
    new FerryError(422, `Invalid entry encoding in header name: '${encoded}'`),
  batchLabelEncoding: (encoded: string) =>
    new FerryError(422, `Invalid label encoding in header value: '${encoded}'`),
  batchHeaderTime: (name: string) =>
    new FerryError(422, `Invalid header '${name}': must be an unix timestamp in microseconds`),
  batchEntryIndexOutOfRange: (name: string) =>
    new FerryError(422, `Invalid header '${name}': entry index out of range`),
  batchFirstRecordIncomplete: () =>
    new FerryError(422, 'Content-type and labels must be provided for the first record of an entry'),
  batchLabelIndexOutOfRange: (raw: string) => new FerryError(422, `Label index '${raw}' is out of range`),
  /** A label name that cannot travel as an `x-reduct-label-<name>` header. */
  invalidLabelName: (name: string) =>
    new FerryError(422, `Invalid label name '${name}': use letters, digits and !#$%&'*+-.^_\`|~ only`),
  batchComputedLabelName: () =>
    new FerryError(422, "Label names must not start with '@': reserved for computed labels"),

  // query entry validation (§9, §12)
  queryStartAfterStop: () => new FerryError(422, 'Start time must be before stop time'),
  queryRemoveWithoutParams: () =>
    new FerryError(422, 'Define at least one query parameter to delete records'),
  queryUnknownExtension: (ext: string, id: bigint | number) =>
    new FerryError(422, `Unknown extension '${ext}' in query id=${id}`),
  queryInvalidField: (details: string) => new FerryError(422, `Invalid query: ${details}`),
  // tokens and permissions (§3.4, §5)
  noBearerToken: () => new FerryError(401, 'No bearer token in request header'),
  invalidToken: () => new FerryError(401, 'Invalid token'),
  tokenExpired: () => new FerryError(401, 'Token has expired'),
  tokenIpNotAllowed: (ip: string) => new FerryError(401, `Token is not allowed for client IP ${ip}`),
  tokenIpRequired: () => new FerryError(401, 'Client IP is required for this token'),
  noFullAccess: (token: string) => new FerryError(403, `Token '${token}' doesn't have full access`),
  noReadAccess: (token: string, b: string) =>
    new FerryError(403, `Token '${token}' doesn't have read access to bucket '${b}'`),
  noWriteAccess: (token: string, b: string) =>
    new FerryError(403, `Token '${token}' doesn't have write access to bucket '${b}'`),
  authDisabled: () => new FerryError(400, 'Authentication is disabled'),
  tokenNameEmpty: () => new FerryError(422, "Token name can't be empty"),
  tokenExists: (n: string) => new FerryError(409, `Token '${n}' already exists`),
  tokenNotFound: (n: string) => new FerryError(404, `Token '${n}' doesn't exist`),
  tokenInvalidPermission: (item: string) =>
    new FerryError(422, `Permission can contain only bucket names or wildcard '*', got '${item}'`),
  tokenTtlZero: () => new FerryError(422, 'Token TTL must be greater than zero'),
  tokenExpiresInPast: () => new FerryError(422, 'Token expiration date must not be in the past'),
  tokenInvalidIpAllowlist: (item: string) =>
    new FerryError(422, `Invalid IP allowlist entry '${item}': expected an IP address or a CIDR range`),
  tokenRemoveProvisioned: (n: string) => new FerryError(409, `Can't remove provisioned token '${n}'`),
  tokenRotateProvisioned: (n: string) => new FerryError(409, `Can't rotate provisioned token '${n}'`),
  tokenRemoveLastFullAccess: (n: string) =>
    new FerryError(409, `Can't remove token '${n}': it is the last token with full access`),
  tokenRotateExpired: (n: string) => new FerryError(422, `Can't rotate expired token '${n}'`),

  // HTTP layer
  serverStartingUp: () => new FerryError(503, 'The server is starting up, please try again later'),
  attachmentRemoveDirectly: (entry: string) =>
    new FerryError(422, `Attachment entry '${entry}' can't be removed directly`),
  queryIdParamInvalid: () => new FerryError(422, "'q' must be a query id"),
  /** A `Content-Length` / `x-reduct-content-length` request header that is not a usable length. */
  contentLengthInvalid: (raw: string) => new FerryError(422, `Invalid content length '${raw}'`),

  // HTTP edge: bounds of client fields (src/protocol/limits.ts), origin permission, open queries
  /** A client field longer than its bound; `field` names it as the client sent it. */
  fieldTooLong: (field: string, bytes: number, max: number) =>
    new FerryError(422, `${field} is too long: ${bytes} bytes (at most ${max})`),
  tooManyLabels: (where: string, count: number, max: number) =>
    new FerryError(422, `Too many labels${where}: ${count} (at most ${max})`),
  /** `x-ferry-origin` from a token that is not trusted to speak for another instance. */
  originForbidden: (token: string) =>
    new FerryError(
      403,
      `Token '${token}' may not send x-ferry-origin: only replication senders with a full-access token can`,
    ),
  /** A token name outside the bucket-name alphabet or longer than MAX_TOKEN_NAME_BYTES. */
  invalidTokenName: (max: number) =>
    new FerryError(
      422,
      `Token name can contain only letters, digits and [-,_] symbols, at most ${max} of them`,
    ),
  queryTtlTooLong: (ttl: bigint, max: number) =>
    new FerryError(
      422,
      `Invalid query: 'ttl' of ${ttl} seconds is above the maximum of ${max} (FERRY_MAX_QUERY_TTL)`,
    ),
  tooManyQueriesOfToken: (token: string, max: number) =>
    new FerryError(
      429,
      `Token '${token}' has ${max} open queries, the most allowed (FERRY_MAX_QUERIES_PER_TOKEN): read them to their end or let them expire`,
    ),
  tooManyQueries: (max: number) =>
    new FerryError(
      429,
      `The server has ${max} open queries, the most allowed (FERRY_MAX_QUERIES): try again later`,
    ),
  labelsTooLarge: (where: string, bytes: number, max: number) =>
    new FerryError(422, `Labels${where} are too large: ${bytes} bytes of names and values (at most ${max})`),

  // query links (§15) — lifecycle/links area
  linkRemoveQuery: () => new FerryError(422, "Only 'Query' type is supported for query links"),
  linkFieldMissing: (field: string) =>
    new FerryError(422, `Missing field '${field}' in the query link request`),
  linkFieldInvalid: (field: string, expected: string) =>
    new FerryError(422, `Invalid field '${field}' in the query link request: ${expected}`),
  linkIndexUnsupported: () =>
    new FerryError(
      422,
      "The numeric 'index' record selector was removed in API 1.19; use 'record_entry' and 'record_timestamp'",
    ),
  linkBadBaseUrl: (reason: string) =>
    new FerryError(422, `Invalid base_url provided for query link: ${reason}`),
  linkParamMissing: (param: string) => new FerryError(422, `Missing '${param}' parameter`),
  linkInvalid: () =>
    new FerryError(
      422,
      'Invalid query link: it was altered, or the token that issued it was removed or rotated',
    ),
  linkExpired: () => new FerryError(422, 'Query link has expired'),
  linkRecordNotFound: (entry: string, ts: bigint) =>
    new FerryError(404, `Record ${ts} of entry '${entry}' is not in the result of the query link`),
  rangeNotSatisfiable: () => new FerryError(416, 'Range not satisfiable'),

  // monitoring: status, events stream, metrics, stored filters (issue 9)
  queryParamRange: (param: string, min: number, max: number) =>
    new FerryError(422, `Invalid '${param}': must be an integer between ${min} and ${max}`),
  filterNotFound: (name: string) => new FerryError(404, `Filter '${name}' does not exist`),
  filterExists: (name: string) => new FerryError(409, `Filter '${name}' already exists`),
  filterInUse: (name: string, users: string[]) =>
    new FerryError(409, `Filter '${name}' is used by replication ${users.map((u) => `'${u}'`).join(', ')}`),
  filterDoesNotFit: (name: string, replication: string, why: string) =>
    new FerryError(409, `Filter '${name}' would no longer fit replication '${replication}': ${why}`),
  filterInvalidName: (name: string) =>
    new FerryError(422, `Invalid filter name '${name}': letters, digits, '-' and '_' only`),
  replicationFilterUnknown: (name: string) =>
    new FerryError(422, `Invalid replication setting 'filter': stored filter '${name}' does not exist`),

  // remotes and rate limits (issue 10)
  remoteNotFound: (name: string) => new FerryError(404, `Remote '${name}' does not exist`),
  remoteExists: (name: string) => new FerryError(409, `Remote '${name}' already exists`),
  remoteInUse: (name: string, users: string[]) =>
    new FerryError(
      409,
      `Remote '${name}' is used by replication ${users.map((u) => `'${u}'`).join(', ')}; ` +
        'remove or change them first, or delete with ?force=true',
    ),
  remoteInvalidName: (name: string) =>
    new FerryError(422, `Invalid remote name '${name}': letters, digits, '-' and '_' only`),
  remoteInvalid: (field: string, why: string) =>
    new FerryError(422, `Invalid remote setting '${field}': ${why}`),
  remoteTooMany: (max: number) => new FerryError(422, `Too many remotes: at most ${max}`),
  replicationRemoteUnknown: (name: string) =>
    new FerryError(422, `Invalid replication setting 'remote': remote '${name}' does not exist`),
  replicationRemoteWithHost: () =>
    new FerryError(
      422,
      "Invalid replication setting 'remote': can't be combined with 'dst_host' or 'dst_token' (the remote holds them)",
    ),

  // SDK and CLI (src/client, src/cli): client-side failures carry the negative codes of api.md §3.5
  clientTimeout: (what: string, ms: number) => new FerryError(-2, `${what} timed out after ${ms} ms`),
  clientUnreachable: (url: string, reason: string) =>
    new FerryError(-3, `Cannot reach ${url} (${reason}): is the server running and is the URL right?`),
  clientAborted: () => new FerryError(-5, 'The operation was aborted'),
  clientInvalidUrl: (url: string) => new FerryError(-4, `Invalid server URL '${url}'`),

  // lifecycle policies (§16) — lifecycle area
  lifecycleExists: (n: string) => new FerryError(409, `Lifecycle '${n}' already exists`),
  lifecycleNotFound: (n: string) => new FerryError(404, `Lifecycle '${n}' does not exist`),
  lifecycleProvisioned: (n: string, what: 'update' | 'remove') =>
    new FerryError(409, `Can't ${what} provisioned lifecycle '${n}'`),
  lifecycleBucketNotFound: (b: string, n: string) =>
    new FerryError(404, `Bucket '${b}' for lifecycle '${n}' does not exist`),
  lifecycleInvalidName: (n: string) =>
    new FerryError(422, `Invalid lifecycle name '${n}': use letters, digits, '-' and '_' only`),
  lifecycleMissingField: (field: string) => new FerryError(422, `Invalid JSON: missing field \`${field}\``),
  lifecycleInvalidField: (field: string, expected: string) =>
    new FerryError(422, `Invalid lifecycle ${field}: ${expected}`),
  lifecycleInvalidType: (v: string) =>
    new FerryError(422, `Invalid lifecycle type '${v}': expected 'delete' or 'compress'`),
  lifecycleInvalidMode: (v: string) =>
    new FerryError(422, `Invalid lifecycle mode '${v}': expected 'enabled', 'disabled' or 'dry_run'`),
  lifecycleInvalidDuration: (field: string, v: string) =>
    new FerryError(422, `Invalid lifecycle ${field} '${v}': expected a duration such as 30m, 12h or 7d`),
  lifecycleOlderThanTooShort: (v: string) =>
    new FerryError(422, `Lifecycle older_than '${v}' is shorter than minimum allowed value of 1h`),
  lifecycleIntervalTooShort: (v: string) =>
    new FerryError(422, `Lifecycle interval '${v}' is shorter than minimum allowed value of 1s`),
  lifecycleProcessingNotPositive: (v: string) =>
    new FerryError(422, `Lifecycle processing_interval '${v}' must be positive`),
  lifecycleCompressWithWhen: () =>
    new FerryError(422, "Lifecycle of type 'compress' cannot have a 'when' condition"),
  lifecycleWhenExt: () => new FerryError(422, "Lifecycle condition cannot use '#ext' directive"),
  lifecycleInvalidCondition: (msg: string) => new FerryError(422, `Invalid lifecycle condition: ${msg}`),
  lifecycleRunning: (n: string) => new FerryError(409, `Lifecycle '${n}' is running already`),

  // consistency groups (replication.md §8) — groups area
  groupNotFound: (n: string) => new FerryError(404, `Group '${n}' does not exist`),
  groupExists: (n: string) => new FerryError(409, `Group '${n}' already exists`),
  groupInvalidName: (n: string) =>
    new FerryError(422, `Invalid group name '${n}': use 1 to 255 letters, digits, '-' and '_'`),
  groupProvisioned: (n: string, what: 'update' | 'remove') =>
    new FerryError(409, `Can't ${what} provisioned group '${n}'`),
  groupInvalidBody: (msg: string) => new FerryError(422, `Invalid group settings: ${msg}`),
  groupBucketNotFound: (b: string, n: string) =>
    new FerryError(404, `Bucket '${b}' for group '${n}' does not exist`),
  groupBucketTaken: (b: string, other: string) =>
    new FerryError(
      409,
      `Bucket '${b}' is already a member of group '${other}' (a bucket belongs to at most one group)`,
    ),
  groupDestinationNotAtomic: (url: string, why: string) =>
    new FerryError(422, `Destination ${url} cannot apply a group's shipments atomically: ${why}`),
  shipmentInvalidKey: (key: string) =>
    new FerryError(422, `Invalid shipment key '${key.slice(0, 64)}': 1 to 255 of A-Z a-z 0-9 - _ . :`),
  shipmentInvalidRange: (from: bigint, position: bigint) =>
    new FerryError(422, `Invalid shipment range: 'from' ${from} must be below 'position' ${position}`),
  shipmentGap: (key: string, from: bigint, applied: bigint) =>
    new FerryError(
      409,
      `Shipment of stream '${key}' starts after position ${from}, but this destination has applied up to ${applied}: resend from ${applied}`,
    ),
  shipmentOverFifoQuota: (bucket: string, bytes: number, quota: bigint) =>
    new FerryError(
      422,
      `Shipment writes ${bytes} bytes to '${bucket}', more than its FIFO quota of ${quota}: a shipment is applied whole, so the quota cannot make room for it within itself; raise the quota`,
    ),
  groupDestinationWentBack: (key: string, position: bigint, confirmed: bigint) =>
    new FerryError(
      409,
      `Destination stream '${key}' is at position ${position}, behind position ${confirmed} it confirmed applying: the destination lost applied shipments (restored from an older copy, or its data removed), and shipping on would leave its members without records that came before; make the destination members whole (verify and repair), then remove the replication and create it again`,
    ),

  // storage
  /** A second server on a data directory whose lock another live server holds. */
  dataDirLocked: (dataPath: string, pid: number, host: string, since: string, lockFile: string) =>
    new FerryError(
      409,
      `Data directory '${dataPath}' is in use by another Ferry server (pid ${pid} on host '${host}', since ${since}). ` +
        `Stop that server first; if it is certainly gone, remove '${lockFile}'`,
    ),

  // bucket settings, one parser for routes, storage, configuration and target_settings (issue 9, compat)
  bucketSettingsNotObject: () => new FerryError(422, 'Invalid bucket settings: expected an object'),
  bucketSettingInvalid: (field: string, why: string) =>
    new FerryError(422, `Invalid bucket setting '${field}': ${why}`),

  // verify and repair (replication.md §10, issue 11) — verify area
  digestRequestInvalid: (details: string) => new FerryError(422, `Invalid range-digest request: ${details}`),
  verifyInvalid: (details: string) => new FerryError(422, `Invalid verify request: ${details}`),
  verifyRunning: (n: string) =>
    new FerryError(409, `A verification of replication '${n}' is running already`),
  verifyStateful: (n: string) =>
    new FerryError(
      422,
      `Replication '${n}' selects records with a stateful condition ($each_n, $each_t, $limit): which records it shipped depends on history, so the copy cannot be verified against its scope`,
    ),
  verifyNoResult: (n: string) => new FerryError(404, `Replication '${n}' has not been verified yet`),

  // sync replication (replication.md §7)
  /** A sync write whose destination did not acknowledge in time (`on_timeout: fail`). */
  syncOutcomeUnknown: (replication: string, timeoutMs: number) =>
    new FerryError(
      503,
      `The write is stored here, but sync replication '${replication}' did not get it to its destination within ${timeoutMs} ms: ` +
        'its outcome at the destination is unknown; retrying the same write is safe (409 then means it is stored here and there)',
    ),
  /** A write refused before it is stored because a sync replication of its scope is blocked. */
  syncBlocked: (replication: string, reason: string) =>
    new FerryError(
      503,
      `Writes to this scope are refused: sync replication '${replication}' cannot reach its destination (${reason}); ` +
        'nothing was stored; retry later',
    ),
  /** A sync write still waiting when its replication was removed or no longer sync. */
  syncReplicationGone: (replication: string) =>
    new FerryError(
      503,
      `The write is stored here, but sync replication '${replication}' was removed or restarted while it waited for the destination: ` +
        'its outcome at the destination is unknown; retrying the same write is safe',
    ),
  // hostile input (Ferry's own routes)
  /**
   * A shipment apply from a token that may write to no bucket at all: refused before its header
   * is read, since every shipment writes to some bucket.
   */
  noWriteAccessAnywhere: (token: string) =>
    new FerryError(403, `Token '${token}' doesn't have write access to any bucket`),
} as const;

/** Wraps a Node errno error from the file system into a FerryError when it is a known condition. */
export function fromFsError(e: unknown): FerryError {
  if (isFerryError(e)) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return Errors.diskFull();
  if (code === 'ENAMETOOLONG') return Errors.unprocessable('Name is too long for the file system');
  // Never send file-system messages (they contain server paths) to clients; log them instead.
  console.error(`storage failure: ${(e as Error)?.stack ?? String(e)}`);
  return Errors.internal(`Storage failure${code ? ` (${code})` : ''}; see the server log`);
}

/** The replication a storage slot belongs to, as users name it. */
const replicationOf = (slot: string): string => slot.replace(/^replication\//, '');

/**
 * Writes refused because a replication with `on_overflow: block` has too much pending data: a 429
 * (a policy decision that ends by itself, which replication senders and clients retry later).
 */
export const replicationLogFull = (bucket: string, slot: string): FerryError =>
  new FerryError(
    429,
    `Bucket '${bucket}' refuses writes: replication '${replicationOf(slot)}' has reached its log bound (log.max_bytes); ` +
      'writes resume once it catches up, or change its log settings',
  );

/**
 * A FIFO bucket is full of records that a replication with `on_overflow: block` has not shipped
 * yet: FIFO may not evict them, so the write is refused (429) instead of failing.
 */
export const replicationHoldsQuota = (bucket: string, slot: string): FerryError =>
  new FerryError(
    429,
    `Bucket '${bucket}' refuses writes: its FIFO quota is full of records replication '${replicationOf(slot)}' has not shipped yet ` +
      `(log.on_overflow: block); writes resume once it catches up, or set its log.on_overflow to 'drop_oldest' or 'suspend', ` +
      'or raise the quota',
  );
