/**
 * An independent reader of batch protocol v2 response headers (api.md §11.1–11.2), kept separate from
 * the server's codec so tests do not inherit its bugs.
 */

/** Metadata of one record of a v2 batch, in body order. */
export interface V2ReadRecord {
  entry: string;
  ts: bigint;
  size: number;
  contentType: string;
  labels: Record<string, string>;
}

/** Parsed v2 batch headers; `records` are in body order (entry index, then timestamp). */
export interface V2ReadBatch {
  records: V2ReadRecord[];
  last: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

const RECORD_HEADER = /^x-reduct-(\d+)-(\d+)$/;

function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function decodeNames(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((s) => decodeURIComponent(s.trim()));
}

/** Splits `k=v,k2="a,b",k3=` into pairs; quoted values may contain commas. */
function parseDelta(raw: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < raw.length) {
    const eq = raw.indexOf('=', i);
    if (eq < 0) throw new Error(`label delta without '=': ${raw}`);
    const key = raw.slice(i, eq).trim();
    let value: string;
    let next: number;
    if (raw[eq + 1] === '"') {
      const close = raw.indexOf('"', eq + 2);
      if (close < 0) throw new Error(`unterminated quoted label value: ${raw}`);
      value = raw.slice(eq + 2, close);
      next = raw.indexOf(',', close);
    } else {
      next = raw.indexOf(',', eq);
      value = raw.slice(eq + 1, next < 0 ? raw.length : next);
    }
    out.push([key, value]);
    i = next < 0 ? raw.length : next + 1;
  }
  return out;
}

/** Decodes the record metadata of a `GET /io/{bucket}/read` (or v2 write) response. */
export function readV2Batch(h: Headers): V2ReadBatch {
  const entries = decodeNames(header(h, 'x-reduct-entries'));
  const labelNames = decodeNames(header(h, 'x-reduct-labels'));
  const startTs = BigInt(header(h, 'x-reduct-start-ts') ?? '0');
  const perEntry: Array<Array<{ ts: bigint; value: string }>> = entries.map(() => []);
  for (const [name, raw] of Object.entries(h)) {
    const m = RECORD_HEADER.exec(name);
    if (m === null || raw === undefined) continue;
    const idx = Number(m[1]);
    const list = perEntry[idx];
    if (list === undefined) throw new Error(`record header ${name} refers to a missing entry index`);
    list.push({ ts: startTs + BigInt(m[2]!), value: Array.isArray(raw) ? raw.join(',') : raw });
  }
  const records: V2ReadRecord[] = [];
  perEntry.forEach((list, idx) => {
    list.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    let contentType: string | undefined;
    let labels: Record<string, string> = {};
    for (const { ts, value } of list) {
      const c1 = value.indexOf(',');
      const size = Number(c1 < 0 ? value : value.slice(0, c1));
      if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad record length in '${value}'`);
      if (c1 < 0) {
        if (contentType === undefined)
          throw new Error(`first record of an entry must carry a content type: '${value}'`);
      } else {
        const rest = value.slice(c1 + 1);
        const c2 = rest.indexOf(',');
        const ct = c2 < 0 ? rest : rest.slice(0, c2);
        contentType = ct !== '' ? ct : (contentType ?? 'application/octet-stream');
        if (c2 >= 0) {
          labels = { ...labels };
          for (const [k, v] of parseDelta(rest.slice(c2 + 1))) {
            const key = /^\d+$/.test(k) ? labelNames[Number(k)] : k;
            if (key === undefined) throw new Error(`label index ${k} is not in x-reduct-labels`);
            if (v === '') delete labels[key];
            else labels[key] = v;
          }
        }
      }
      records.push({ entry: entries[idx]!, ts, size, contentType, labels });
    }
  });
  return { records, last: header(h, 'x-reduct-last') === 'true' };
}
