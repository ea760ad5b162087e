/**
 * Bounds on every client-supplied field that reaches storage, replication or memory.
 *
 * The HTTP edge checks these before any byte is stored (422 naming the field); storage checks them
 * again so that no caller can hand the WAL encoder a value it cannot frame. Every bound here fits
 * the on-disk encodings with room to spare (names and content types have u16 lengths, label values
 * u32, label counts u16). The README's "Limits" section lists them; keep both in step.
 */

/** Bytes of a `Content-Type` value (RFC 6838 allows 127 + 1 + 127 before parameters). */
export const MAX_CONTENT_TYPE_BYTES = 1024;

/** Bytes of one label name. */
export const MAX_LABEL_NAME_BYTES = 256;

/** Bytes of one label value. */
export const MAX_LABEL_VALUE_BYTES = 16 * 1024;

/** Labels on one record. */
export const MAX_LABELS_PER_RECORD = 512;

/** Bytes of all label names and values of one record together. */
export const MAX_LABELS_TOTAL_BYTES = 64 * 1024;

/** Bytes of an `x-ferry-origin` value (an instance id). */
export const MAX_ORIGIN_BYTES = 128;

/** Bytes of a token name (same alphabet as bucket names). */
export const MAX_TOKEN_NAME_BYTES = 255;

/** Bytes of a whole entry name, `/` separators included (each segment has at most 255). */
export const MAX_ENTRY_NAME_BYTES = 1024;

/**
 * Characters of a message kept in replication status (`state_reason`, `last_error`), diagnostics
 * and failure logs. A destination's error text is its own choice of length; longer ones are cut.
 */
export const MAX_REPLICATION_MESSAGE_CHARS = 1024;

/** Characters of a replication's `dst_token` (it travels in every request's `Authorization`). */
export const MAX_DST_TOKEN_CHARS = 4096;

/** Characters of a stored filter's description (and of each parameter's). */
export const MAX_FILTER_DESCRIPTION_CHARS = 4096;

/** Member buckets of one consistency group (replication.md §8). */
export const MAX_GROUP_MEMBERS = 64;

/** Changes in one shipment of `POST /api/v1/ferry/groups/apply`. */
export const MAX_SHIPMENT_ITEMS = 100_000;

/** Bytes of a shipment body (header and payloads; decoded when compressed): it is held in memory. */
export const MAX_SHIPMENT_BYTES = 64 * 1024 * 1024;

/** Bytes of a shipment's JSON header. */
export const MAX_SHIPMENT_HEADER_BYTES = 16 * 1024 * 1024;

// ---- verify (range digests, replication.md §10)

/** Ranges one range-digest request may ask for. */
export const MAX_DIGEST_QUERIES = 1024;
/** Sub-ranges one range may be cut into. */
export const MAX_DIGEST_SPLIT = 64;
/** Records one range-digest request may list (over all its list queries). */
export const MAX_DIGEST_LIST_RECORDS = 10_000;

/** Longest `sync.timeout_ms` of a sync replication: a client never waits longer than this (10 min). */
export const MAX_SYNC_TIMEOUT_MS = 600_000;

/** Longest `sync.recover_after_ms` (1 h). */
export const MAX_SYNC_RECOVER_MS = 3_600_000;

// remotes and rate limits (issue 10)

/** Characters of a remote's `url` and `proxy`. */
export const MAX_REMOTE_URL_CHARS = 2048;

/** Characters of a remote's `ca` (PEM certificates). */
export const MAX_REMOTE_CA_CHARS = 64 * 1024;

/** Upper bound of a remote's `connect_timeout_ms` and `request_timeout_ms` (one hour). */
export const MAX_REMOTE_TIMEOUT_MS = 3_600_000;

/** Remotes one server keeps (each has a connection pool and a prober). */
export const MAX_REMOTES = 256;

/** Upper bound of `rate_limit.bytes_per_sec` (1 TiB/s: no link is faster). */
export const MAX_RATE_LIMIT_BYTES_PER_SEC = 2 ** 40;

// ---- atomic batches (issue 12)

/**
 * Payload bytes of one atomic part of a client batch write: a batch up to this size is committed
 * as one commit (all or nothing, at the source and at destinations); records past it form further
 * parts of this size. Well below MAX_SHIPMENT_BYTES, so that a consistency group's shipment of one
 * part with a window's worth of earlier commits (`batch.max_bytes`, 8 MiB by default) fits.
 */
export const MAX_ATOMIC_BATCH_BYTES = 16 * 1024 * 1024;

// ---- replication settings (hostile input)

/** Entries (names or patterns) one replication may list; every change is matched against them. */
export const MAX_REPLICATION_ENTRIES = 1000;

/** Bytes of a replication's `dst_prefix` (prepended to every destination entry name). */
export const MAX_DST_PREFIX_BYTES = 255;

/**
 * Longest `batch.max_delay_ms`, `retry.initial_ms` and `retry.max_ms` (one hour). They become
 * timers, and Node fires a timer longer than 2^31-1 ms after 1 ms: an unbounded value would make
 * the replication spin instead of wait.
 */
export const MAX_REPLICATION_DELAY_MS = 3_600_000;

/**
 * Largest `batch.max_bytes` of a consistency-group replication. A group's window ends only at a
 * commit boundary, so one shipment holds up to `max_bytes` plus one commit (MAX_ATOMIC_BATCH_BYTES)
 * plus its header: beyond this a window could exceed MAX_SHIPMENT_BYTES, which the destination
 * refuses for good.
 */
export const MAX_GROUP_BATCH_BYTES = 32 * 1024 * 1024;

/**
 * Largest `batch.max_records` of a consistency-group replication: a window seals at 4 × this many
 * changes (plus one commit), which keeps a shipment well within MAX_SHIPMENT_ITEMS.
 */
export const MAX_GROUP_BATCH_RECORDS = 10_000;
