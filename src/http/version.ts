/** Versions Ferry advertises (api.md §1.1, §3.2). */

/** Full server version reported by `/info` and in the `Server` header. */
export const SERVER_VERSION = '1.21.0';

/** API version advertised in `x-reduct-api` on every response (`1.21`). */
export const API_VERSION = SERVER_VERSION.split('.').slice(0, 2).join('.');
