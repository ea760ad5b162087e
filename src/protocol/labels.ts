/** Record labels as they travel in `x-reduct-label-<name>` headers and JSON (api.md §8.1). */

/** Label name → value. Names arrive lower-case through HTTP headers. */
export type Labels = Record<string, string>;
