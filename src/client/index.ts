/**
 * Ferry SDK (`import … from 'ferry/client'`): a typed client for Ferry and ReductStore servers that
 * runs in Node 20 and in browsers (fetch, web streams, AbortSignal; no Node modules). Wire shapes
 * are the server's own, from `src/protocol/`. Every failure is a `FerryError` with the HTTP status
 * and the server's message, or a negative client code (-2 timeout, -3 unreachable, -5 aborted).
 */
export { FerryClient, type CreateBucketOptions } from './ferry-client.js';
export { Bucket, type QueryOptions, type WriteOptions } from './bucket.js';
export { Filters } from './filters.js';
export { Groups } from './groups.js';
export { Remotes } from './remotes.js';
export {
  Replications,
  type FollowOptions,
  type ReplicationEvent,
  type VerifyOptions,
} from './replications.js';
export { replicate, type Destination, type ReplicateOptions, type ReplicationHandle } from './replicate.js';
export type { ClientOptions, CallOptions, RequestBody } from './transport.js';
export {
  toMicros,
  type BatchRecord,
  type QueriedRecord,
  type ReadRecord,
  type RecordInfo,
  type Timestamp,
} from './records.js';
export { FerryError, isFerryError } from '../protocol/errors.js';
export type * from '../protocol/buckets.js';
export type * from '../protocol/filters.js';
export type * from '../protocol/groups.js';
export type * from '../protocol/remotes.js';
export type * from '../protocol/labels.js';
export type * from '../protocol/queries.js';
export type * from '../protocol/replications.js';
export type * from '../protocol/replication-status.js';
export type * from '../protocol/server-info.js';
export type * from '../protocol/tokens.js';
export type * from '../protocol/verify.js';
