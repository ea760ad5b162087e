/**
 * Recovery's check of the WAL's last groups (see group-commit.ts): block files and the WAL of a
 * group are synced at the same time, and two groups may be in flight, so a crash during their
 * commits can leave their frames durable and some of their payload bytes not. None of such a
 * group's writers had been answered then; a record whose bytes do not match the digest in its
 * frame means that the group (and everything after it) is to be dropped.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { COMPRESSED_SUFFIX } from './compressed-block.js';
import { OpType, type WalOp, type WriteOp } from './wal.js';

const CHUNK = 1 << 20;

/**
 * Which of the log's last groups recovery cuts, with everything after it: `starts` holds where each
 * begins in `ops` (in log order). A group is checked against the removals that stay in the log
 * only: a removal in a group that is cut excuses nothing before it (a bucket removed in the second
 * of two groups in flight, that one cut, leaves the first one's records in place). The index in
 * `starts` of the first group to cut and why, or null when every one is complete.
 */
export async function groupToCut(
  ops: readonly WalOp[],
  starts: readonly number[],
  bucketsDir: string,
): Promise<{ group: number; problem: string } | null> {
  let cut: { group: number; problem: string } | null = null;
  let kept = starts.length;
  for (let g = 0; g < kept; g++) {
    const end = kept < starts.length ? starts[kept]! : ops.length;
    const from = starts[g]!;
    const to = g + 1 < starts.length ? starts[g + 1]! : ops.length;
    const problem = await incompleteGroup(ops.slice(from, end), bucketsDir, to - from);
    if (problem) {
      cut = { group: g, problem };
      kept = g;
      g = -1; // the groups before it once more, without its removals
    }
  }
  return cut;
}

/**
 * Why the group of `ops` (one of the log's last groups and whatever follows it, in LSN order) is
 * incomplete, or null when every record it writes has its payload on disk. Only the writes among
 * the first `count` ops are checked (the group itself); records that a later op removes are not
 * (their bytes may be gone legitimately), nor blocks compressed since (the `.zst` file is only
 * ever made from durable bytes).
 */
export async function incompleteGroup(
  ops: readonly WalOp[],
  bucketsDir: string,
  count = ops.length,
): Promise<string | null> {
  const removals = new Removals(ops);
  for (let i = 0; i < count; i++) {
    const op = ops[i]!;
    if (op.type !== OpType.Write || op.size === 0 || removals.after(op, i)) continue;
    const path = join(bucketsDir, op.bucket, op.entry, `${op.blockId}.blk`);
    const problem = await payloadProblem(path, op);
    if (problem) return `record ${op.ts} of '${op.bucket}/${op.entry}' (LSN ${op.lsn}): ${problem}`;
  }
  return null;
}

/**
 * The last index of every removal in `ops`, by what it removes, so that a write asks in constant
 * time (per level of its entry name) whether a later op removes it: one pass, not one per write.
 */
class Removals {
  private readonly last = new Map<string, number>();

  constructor(ops: readonly WalOp[]) {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.type === OpType.RemoveBucket) this.last.set(`b\0${op.bucket}`, i);
      else if (op.type === OpType.RemoveEntry) this.last.set(`e\0${op.bucket}\0${op.entry}`, i);
      else if (op.type === OpType.RemoveBlock)
        this.last.set(`k\0${op.bucket}\0${op.entry}\0${op.blockId}`, i);
      else if (op.type === OpType.RemoveRecord) this.last.set(`r\0${op.bucket}\0${op.entry}\0${op.ts}`, i);
    }
  }

  /** Whether an op after index `at` removes the record of `w`. */
  after(w: WriteOp, at: number): boolean {
    if (this.last.size === 0) return false;
    const later = (key: string): boolean => (this.last.get(key) ?? -1) > at;
    if (later(`b\0${w.bucket}`)) return true;
    if (later(`k\0${w.bucket}\0${w.entry}\0${w.blockId}`)) return true;
    if (later(`r\0${w.bucket}\0${w.entry}\0${w.ts}`)) return true;
    // the entry or any entry above it in the tree (`a/b` is under `a`)
    for (let cut = w.entry.length; cut > 0; cut = w.entry.lastIndexOf('/', cut - 1)) {
      if (later(`e\0${w.bucket}\0${w.entry.slice(0, cut)}`)) return true;
    }
    return false;
  }
}

async function payloadProblem(path: string, op: WriteOp): Promise<string | null> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const compressed = await stat(path + COMPRESSED_SUFFIX).catch(() => undefined);
    return compressed ? null : 'its block file is missing';
  }
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, op.size));
    let done = 0;
    while (done < op.size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, op.size - done), op.offset + done);
      if (bytesRead === 0) return `its block file ends ${op.size - done} bytes short`;
      hash.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    const digest = hash.digest().subarray(0, 16);
    return digest.equals(op.digest.subarray(0, 16)) ? null : 'its payload does not match its digest';
  } finally {
    await fh.close();
  }
}
