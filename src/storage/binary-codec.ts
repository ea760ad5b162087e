/**
 * Minimal little-endian binary writer/reader for WAL frames and metadata files. A binary layout
 * instead of per-record JSON keeps the hot path (group commit, checkpoints, replay) cheap.
 */
import { crc32 } from './crc32.js';

const SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
/** Strings up to this many characters are tried as ASCII first (see `BinaryWriter.ascii`). */
const SHORT_ASCII = 64;

export class BinaryWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  get length(): number {
    return this.pos;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  /** Unsigned 64-bit from a bigint. */
  u64(v: bigint): this {
    // Timestamps and LSNs are nearly always below 2^53: write them without BigInt arithmetic.
    if (v <= SAFE_BIGINT && v >= 0n) return this.num(Number(v));
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /** Non-negative integer up to 2^53 stored as 64 bits. */
  num(v: number): this {
    this.ensure(8);
    const b = this.buf;
    let p = this.pos;
    const lo = v % 0x100000000;
    const hi = (v - lo) / 0x100000000;
    b[p++] = lo & 0xff;
    b[p++] = (lo >>> 8) & 0xff;
    b[p++] = (lo >>> 16) & 0xff;
    b[p++] = lo >>> 24;
    b[p++] = hi & 0xff;
    b[p++] = (hi >>> 8) & 0xff;
    b[p++] = (hi >>> 16) & 0xff;
    b[p++] = hi >>> 24;
    this.pos = p;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /**
   * `str16` for strings that repeat from frame to frame (bucket and entry names, content types):
   * their encoding is kept in a small cache instead of being redone for every record.
   */
  str16Cached(s: string): this {
    let enc = this.strCache.get(s);
    if (enc === undefined) {
      enc = Buffer.from(s, 'utf8');
      if (this.strCache.size >= 256) this.strCache.clear();
      this.strCache.set(s, enc);
    }
    this.ensure(2 + enc.length);
    this.buf.writeUInt16LE(enc.length, this.pos);
    this.buf.set(enc, this.pos + 2);
    this.pos += 2 + enc.length;
    return this;
  }

  private strCache = new Map<string, Buffer>();

  /** String with a u16 length prefix (names, content types). */
  str16(s: string): this {
    if (s.length <= SHORT_ASCII && this.ascii(s, 2)) {
      this.buf.writeUInt16LE(s.length, this.pos);
      this.pos += 2 + s.length;
      return this;
    }
    const len = Buffer.byteLength(s);
    this.ensure(2 + len);
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.write(s, this.pos + 2, len, 'utf8');
    this.pos += 2 + len;
    return this;
  }

  /** String with a u32 length prefix (label values). */
  str32(s: string): this {
    if (s.length <= SHORT_ASCII && this.ascii(s, 4)) {
      this.buf.writeUInt32LE(s.length, this.pos);
      this.pos += 4 + s.length;
      return this;
    }
    const len = Buffer.byteLength(s);
    this.ensure(4 + len);
    this.buf.writeUInt32LE(len, this.pos);
    this.buf.write(s, this.pos + 4, len, 'utf8');
    this.pos += 4 + len;
    return this;
  }

  /**
   * Writes a short string's characters after a `prefix`-byte gap when all of them are ASCII (its
   * UTF-8 is then one byte per character); false, with nothing to undo, when one is not. A
   * per-byte loop costs a fifth of `Buffer.byteLength` + `buf.write` for label-sized strings.
   */
  private ascii(s: string, prefix: number): boolean {
    const n = s.length;
    this.ensure(prefix + n);
    const b = this.buf;
    const at = this.pos + prefix;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return false;
      b[at + i] = c;
    }
    return true;
  }

  labels(labels: Record<string, string>): this {
    const keys = Object.keys(labels);
    this.u16(keys.length);
    for (const k of keys) this.str16(k).str32(labels[k]!);
    return this;
  }

  /** The first `n` bytes of `b` (a digest: no view of them made per record when `b` holds `n`). */
  prefix(b: Uint8Array, n: number): this {
    return this.bytes(b.length === n ? b : b.subarray(0, n));
  }

  /** CRC-32 of the bytes written from `start` on (no view of them made). */
  crcFrom(start: number): number {
    return crc32(this.buf, start, this.pos);
  }

  /** Writes a u32 at an absolute position (for back-patching lengths). */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }

  /** A view of the bytes written so far (valid until the next write). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  reset(): void {
    this.pos = 0;
  }

  /** Drops everything written after `pos` (a frame that failed to encode). */
  rewind(pos: number): void {
    if (pos < this.pos) this.pos = pos;
  }
}

/** Strings up to this many bytes are decoded by {@link decodeShort}'s loop (V8 keeps them flat). */
const SHORT_DECODE = 12;

/**
 * UTF-8 of `buf[start, start + len)`: short ASCII strings (most label values) by a loop, which
 * costs less than half of `buf.toString` for them; anything else by `toString`.
 */
function decodeShort(buf: Buffer, start: number, len: number): string {
  if (len > SHORT_DECODE) return buf.toString('utf8', start, start + len);
  let s = '';
  for (let i = 0; i < len; i++) {
    const c = buf[start + i]!;
    if (c > 0x7f) return buf.toString('utf8', start, start + len);
    s += String.fromCharCode(c);
  }
  return s;
}

export class BinaryReader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new RangeError('truncated binary data');
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  num(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    return hi * 0x100000000 + lo;
  }

  /** Skips `n` bytes (bounds-checked), returning where they start. */
  skip(n: number): number {
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  str16(): string {
    const len = this.u16();
    this.need(len);
    const s = decodeShort(this.buf, this.pos, len);
    this.pos += len;
    return s;
  }

  str32(): string {
    const len = this.u32();
    this.need(len);
    const s = decodeShort(this.buf, this.pos, len);
    this.pos += len;
    return s;
  }

  labels(names?: InternCache): Record<string, string> {
    const n = this.u16();
    const out: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const k = names ? this.str16Interned(names) : this.str16();
      out[k] = this.str32();
    }
    return out;
  }

  /**
   * A u16-prefixed string, reusing an earlier decoded string with the same bytes (content types and
   * label names repeat across the records of a block; decoding them once saves time and memory).
   */
  str16Interned(cache: InternCache): string {
    const len = this.u16();
    this.need(len);
    const pos = this.pos;
    const buf = this.buf;
    this.pos += len;
    for (let c = 0; c < cache.length; c++) {
      const e = cache[c]!;
      if (e.len !== len) continue;
      let same = true;
      for (let i = 0; i < len; i++) {
        if (buf[e.pos + i] !== buf[pos + i]) {
          same = false;
          break;
        }
      }
      if (same) return e.s;
    }
    const s = buf.toString('utf8', pos, pos + len);
    if (len <= 128) {
      if (cache.length < 16) cache.push({ pos, len, s });
      else cache[pos % 16] = { pos, len, s };
    }
    return s;
  }
}

/** Recently decoded strings of one buffer, for `str16Interned`. */
export type InternCache = Array<{ pos: number; len: number; s: string }>;
