/** Content digests of records (first 16 bytes of SHA-256), computed while a record is written. */
import { hash as hashOnce } from 'node:crypto';

/**
 * The 16-byte content digest kept per record, copied into a digest slab: a digest of its own would
 * cost a Buffer, an ArrayBuffer and native memory per record.
 */
export function compact(full: Buffer): Buffer {
  if (arenaUsed + 16 > arena.length) {
    arena = Buffer.allocUnsafeSlow(64 * 1024);
    arenaUsed = 0;
  }
  const d = arena.subarray(arenaUsed, arenaUsed + 16);
  arenaUsed += 16;
  full.copy(d, 0, 0, 16);
  return d;
}

/** Digests live as long as their records: keep them in slabs of their own, not in Node's pool. */
let arena = Buffer.allocUnsafeSlow(64 * 1024);
let arenaUsed = 0;

/** One-shot SHA-256 (much cheaper than a Hash object for small payloads), compacted. */
export const digestOf = (payload: Buffer): Buffer =>
  compact(hashOnce('sha256', payload, 'buffer') as unknown as Buffer);
