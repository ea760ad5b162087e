/**
 * The payloads of several records as one byte stream, for batch responses and replication
 * requests: small payloads are read whole and gathered into larger chunks (one socket write for
 * many records), large ones are streamed from their block files without being held in memory.
 */
import type { Readable } from 'node:stream';
import { BlockRecord } from './block-record.js';
import type { StoredRecord } from './types.js';

/** How to reach one record's payload. */
export interface PayloadAccess<T> {
  size(item: T): number;
  read(item: T): Promise<Buffer>;
  open(item: T): Readable;
  /** The stored record behind `item`, when there is one: adjacent payloads are then read at once. */
  stored?(item: T): StoredRecord | undefined;
}

/** The payload of a stored record itself. */
export const STORED_PAYLOAD: PayloadAccess<StoredRecord> = {
  size: (r) => r.meta.size,
  read: (r) => r.buffer(),
  open: (r) => r.stream(),
  stored: (r) => r,
};

export interface ChunkOptions {
  /** Payloads up to this size are read whole. */
  smallBytes: number;
  /** Gathered small payloads are emitted once they reach this size. */
  chunkBytes: number;
}

/** Back-to-back payloads of one block file, read at once. */
interface Run {
  rec: BlockRecord;
  start: number;
  end: number;
  bytes?: Buffer;
}

/** Where one small payload of a chunk comes from: a slice of a run, or a read of its own. */
type Piece = { run: Run; at: number; size: number } | { own: { bytes?: Buffer } };

/**
 * The payloads of `items`, in order: payloads that lie back to back in a block file are read at
 * once, whatever other entries' records lie between them in `items` (a query interleaves the
 * entries it reads by time, and one read per record cost ~7 µs of the event loop each). The
 * buffers of one run are slices of one read. For small payloads: each is held in memory whole.
 */
export async function readPayloads<T>(items: readonly T[], access: PayloadAccess<T>): Promise<Buffer[]> {
  const open = new Map<string, Run>();
  const runs: Run[] = [];
  const pieces: Piece[] = [];
  const reads: Array<Promise<void>> = [];
  for (const item of items) {
    const size = access.size(item);
    const rec = access.stored?.(item);
    if (rec instanceof BlockRecord) {
      let run = open.get(rec.path);
      if (run === undefined || run.rec.files !== rec.files || run.end !== rec.meta.offset) {
        run = { rec, start: rec.meta.offset, end: rec.meta.offset };
        open.set(rec.path, run);
        runs.push(run);
      }
      pieces.push({ run, at: run.end - run.start, size });
      run.end += size;
    } else {
      const own: { bytes?: Buffer } = {};
      pieces.push({ own });
      reads.push(access.read(item).then((b) => void (own.bytes = b)));
    }
  }
  for (const r of runs)
    if (r.end > r.start) reads.push(r.rec.range(r.start, r.end - r.start).then((b) => void (r.bytes = b)));
  await Promise.all(reads);
  return pieces.map((p) =>
    'run' in p ? (p.size === 0 ? EMPTY : p.run.bytes!.subarray(p.at, p.at + p.size)) : p.own.bytes!,
  );
}

const EMPTY = Buffer.alloc(0);

/** The small payloads of one chunk, read as {@link readPayloads} does, in one buffer. */
async function readChunk<T>(items: readonly T[], access: PayloadAccess<T>): Promise<Buffer> {
  const run = oneRun(items, access);
  if (run) return run.rec.range(run.start, run.end - run.start);
  const parts = await readPayloads(items, access);
  let total = 0;
  for (const b of parts) total += b.length;
  return Buffer.concat(parts, total);
}

/**
 * The run that `items` form when all their payloads lie back to back in one block file (a copy's
 * batch of one entry): read as one range, with no piece or view per record and no copy. Undefined
 * otherwise.
 */
function oneRun<T>(items: readonly T[], access: PayloadAccess<T>): Run | undefined {
  const first = items.length > 0 ? access.stored?.(items[0]!) : undefined;
  if (!(first instanceof BlockRecord)) return undefined;
  const run: Run = { rec: first, start: first.meta.offset, end: first.meta.offset };
  for (const item of items) {
    const rec = access.stored!(item);
    if (!(rec instanceof BlockRecord) || rec.path !== first.path || rec.files !== first.files)
      return undefined;
    if (rec.meta.offset !== run.end) return undefined;
    run.end += access.size(item);
  }
  return run.end > run.start ? run : undefined;
}

export async function* payloadChunks<T>(
  items: readonly T[],
  access: PayloadAccess<T>,
  opts: ChunkOptions,
): AsyncGenerator<Buffer> {
  let small: T[] = [];
  let gathered = 0;
  for (const item of items) {
    const size = access.size(item);
    if (size === 0) continue;
    if (size <= opts.smallBytes) {
      small.push(item);
      gathered += size;
      if (gathered >= opts.chunkBytes) {
        yield await readChunk(small, access);
        small = [];
        gathered = 0;
      }
      continue;
    }
    if (small.length > 0) {
      yield await readChunk(small, access);
      small = [];
      gathered = 0;
    }
    const stream = access.open(item);
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      stream.destroy();
    }
  }
  if (small.length > 0) yield await readChunk(small, access);
}
