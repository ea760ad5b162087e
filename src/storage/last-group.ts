/**
 * Recovery's check of the WAL's last group (see group-commit.ts): block files and the WAL of a
 * group are synced at the same time, so a crash during the last group's commit can leave its frames
 * durable and some of its payload bytes not. None of that group's writers had been answered then;
 * a record whose bytes do not match the digest in its frame means the whole group is to be dropped.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { COMPRESSED_SUFFIX } from './compressed-block.js';
import { OpType, type WalOp, type WriteOp } from './wal.js';

const CHUNK = 1 << 20;

/**
 * Why the group of `ops` (the log's last group, in LSN order) is incomplete, or null when every
 * record it writes has its payload on disk. Records that a later op of the group removes are not
 * checked (their bytes may be gone legitimately), nor blocks compressed since (the `.zst` file is
 * only ever made from durable bytes).
 */
export async function incompleteGroup(ops: readonly WalOp[], bucketsDir: string): Promise<string | null> {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.type !== OpType.Write || op.size === 0 || removedLater(op, ops, i)) continue;
    const path = join(bucketsDir, op.bucket, op.entry, `${op.blockId}.blk`);
    const problem = await payloadProblem(path, op);
    if (problem) return `record ${op.ts} of '${op.bucket}/${op.entry}' (LSN ${op.lsn}): ${problem}`;
  }
  return null;
}

function removedLater(w: WriteOp, ops: readonly WalOp[], from: number): boolean {
  const under = (entry: string): boolean => w.entry === entry || w.entry.startsWith(`${entry}/`);
  for (let i = from + 1; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.bucket !== w.bucket) continue;
    if (op.type === OpType.RemoveBucket) return true;
    if (op.type === OpType.RemoveEntry && under(op.entry)) return true;
    if (op.type === OpType.RemoveBlock && op.entry === w.entry && op.blockId === w.blockId) return true;
    if (op.type === OpType.RemoveRecord && op.entry === w.entry && op.ts === w.ts) return true;
  }
  return false;
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
