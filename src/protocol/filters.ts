/**
 * Wire shapes of stored filters (replication.md §3 `filter` + `query_params`), managed under
 * `/api/v1/filters/{name}`: a `when` template whose `{"$param": "<name>"}` placeholders a
 * replication fills with its `query_params`.
 */

/** Types a parameter may declare; `any` accepts every JSON value. */
export type FilterParamType = 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'any';

/** Every parameter type, in the order error messages list them. */
export const FILTER_PARAM_TYPES: readonly FilterParamType[] = [
  'string',
  'number',
  'integer',
  'boolean',
  'array',
  'any',
];

/** Declaration of one parameter; without `default` a replication must give it. */
export interface FilterParam {
  type: FilterParamType;
  default?: unknown;
  description?: string;
}

/** Body of `POST` / `PUT /api/v1/filters/{name}`. */
export interface FilterRequest {
  /** A `when` condition in which `{"$param": "<name>"}` objects stand for parameter values. */
  when: Record<string, unknown>;
  /**
   * Declared parameters. A placeholder without a declaration is a required parameter of type
   * `any`; a declaration that no placeholder uses is refused.
   */
  params?: Record<string, FilterParam>;
  description?: string;
}

/** `GET /api/v1/filters/{name}`. */
export interface FilterJson {
  name: string;
  description: string;
  when: Record<string, unknown>;
  /** Every parameter, the undeclared ones with type `any`. */
  params: Record<string, FilterParam>;
  /** 1 at creation, +1 at every `PUT`. */
  version: number;
  created_at: string;
  updated_at: string;
  /** Replications that name this filter, sorted. */
  used_by: string[];
}

/** `GET /api/v1/filters`, sorted by name. */
export interface FilterList {
  filters: FilterJson[];
}
