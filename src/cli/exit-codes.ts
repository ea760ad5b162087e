/**
 * Exit codes of `ferry` (README, "Command line"), apart from output.ts so that `ferry serve`
 * does not load the table libraries.
 */
export const EXIT = {
  ok: 0,
  /** Any other failure (server error, invalid input refused by the server). */
  error: 1,
  /** Wrong command line (unknown option, missing argument). */
  usage: 2,
  /** The bucket, entry or replication does not exist (404). */
  notFound: 3,
  /** The token is missing, wrong or lacks permission (401, 403). */
  auth: 4,
  /** The server cannot be reached or did not answer in time. */
  unreachable: 5,
  /** It already exists or is in the way (409). */
  conflict: 6,
  /** `replication follow`: the replication was suspended. */
  suspended: 7,
  /** `replication verify`: the destination differs from the source (after the repair, if any). */
  differences: 8,
} as const;
