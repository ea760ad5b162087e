/**
 * Batch uploads under the test's control for the atomic-batch tests (issue 12): the headers of a
 * batch protocol v2 write, and a request whose body is sent in two parts with the test's own code
 * run in between (a client pausing half-way through its body).
 */
import { request } from 'node:http';

/** One record of a v2 batch write. */
export interface UploadRecord {
  entry: string;
  ts: bigint;
  payload: Buffer;
  /** Labels of the record (set in full on each record). */
  labels: Record<string, string>;
}

/**
 * Headers of `POST /api/v1/io/{bucket}/write` for `records`, which must be in v2 body order
 * (entry index first, then time).
 */
export function v2WriteHeaders(token: string, records: readonly UploadRecord[]): Record<string, string> {
  const entries = [...new Set(records.map((r) => r.entry))];
  const start = records.reduce((m, r) => (r.ts < m ? r.ts : m), records[0]!.ts);
  const headers: Record<string, string> = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/octet-stream',
    'content-length': String(records.reduce((n, r) => n + r.payload.length, 0)),
    'x-reduct-entries': entries.join(','),
    'x-reduct-start-ts': String(start),
  };
  for (const r of records) {
    const labels = Object.entries(r.labels).map(([k, v]) => `${k}=${v}`);
    headers[`x-reduct-${entries.indexOf(r.entry)}-${r.ts - start}`] = [
      r.payload.length,
      'application/octet-stream',
      ...labels,
    ].join(',');
  }
  return headers;
}

/**
 * POSTs `body` in two parts, cut at `cut` bytes, and runs `between` after the first part was
 * written. Resolves with the status, or with -1 when the connection broke (the server was killed).
 */
export function postInTwo(
  url: string,
  headers: Record<string, string>,
  body: Buffer,
  cut: number,
  between: () => Promise<void>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let failed = false;
    const req = request(url, { method: 'POST', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(-1));
    });
    req.on('error', () => {
      failed = true;
      resolve(-1);
    });
    req.write(body.subarray(0, cut));
    between().then(
      () => {
        if (!failed) req.end(body.subarray(cut));
      },
      (e: unknown) => {
        req.destroy();
        reject(e as Error);
      },
    );
  });
}
