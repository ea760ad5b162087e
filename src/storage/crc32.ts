/**
 * CRC-32 (IEEE 802.3, reflected 0xEDB88320) for WAL frames, metadata files and journal records.
 * Slicing-by-8 (eight table lookups per 8 input bytes) for short inputs; from NATIVE_BYTES on,
 * zlib's (Node >= 20.15), ~3x faster per byte here but ~0.1 µs more per call.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

/** Inputs from this length on go to zlib (below it the call costs more than the loop). */
const NATIVE_BYTES = 512;
const TABLES = (() => {
  const t = new Int32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32 of `buf[start, end)`; `seed`: the CRC of the bytes before them (a CRC over pieces). */
export function crc32(buf: Uint8Array, start = 0, end = buf.length, seed = 0): number {
  if (end - start >= NATIVE_BYTES)
    return zlibCrc32(start === 0 && end === buf.length ? buf : buf.subarray(start, end), seed);
  const t = TABLES;
  let c = seed ^ -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + buf[i + 4]!]! ^
      t[512 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
