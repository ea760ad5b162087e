/**
 * Wire shapes of consistency groups (replication.md §8): `/api/v1/groups/{name}` holds
 * `{"buckets": [...]}`; a bucket belongs to at most one group.
 */

/** Body of `POST` / `PUT /api/v1/groups/{name}`. */
export interface GroupSettings {
  buckets: string[];
}

/** `GET /api/v1/groups/{name}` and one item of the list. */
export interface GroupInfo {
  name: string;
  /** Member buckets, in the order they were given. */
  buckets: string[];
  /** Defined by `FERRY_GROUP_<ID>_*` (changed only through the environment). */
  is_provisioned: boolean;
}

/** `GET /api/v1/groups`. */
export interface GroupList {
  groups: GroupInfo[];
}
