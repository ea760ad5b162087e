/** How every error travels (api.md §3.5): the status, this header, and {@link ErrorBody}. */

/** Header carrying the error message, byte for byte. */
export const ERROR_HEADER = 'x-reduct-error';

/** Body of an error response (`"` in the message is replaced by `'`). */
export interface ErrorBody {
  detail: string;
}
