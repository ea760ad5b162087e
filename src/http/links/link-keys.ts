/**
 * Keys of query links (api.md §15). A 32-byte master key is created once in
 * `<dataPath>/.ferry/link-key` (mode 0600) and never leaves that file, so links survive restarts.
 * Each link gets a key of its own, derived with HKDF-SHA256 from the master key, a random per-link
 * salt (carried in the link), the issuing token's name and a fingerprint of that token's current
 * value: removing the token, rotating it or giving a provisioned token a new value changes the
 * derived key, and every link it issued stops verifying.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../storage/atomic-file.js';

/** Where the master key lives, relative to the data directory. */
export const LINK_KEY_FILE = join('.ferry', 'link-key');
const MASTER_KEY_BYTES = 32;
/** Bytes of the per-link salt. */
export const LINK_SALT_BYTES = 16;
const INFO_PREFIX = 'ferry query link v1';

/** A per-link AES-256-GCM key and IV. */
export interface LinkKey {
  key: Buffer;
  iv: Buffer;
}

/** The master key and the derivation of per-link keys. */
export class LinkKeys {
  private constructor(private readonly master: Buffer) {}

  /** Reads the master key, creating it (atomically, 0600) on the first start. */
  static async open(dataPath: string, opts: { sync: boolean }): Promise<LinkKeys> {
    const path = join(dataPath, LINK_KEY_FILE);
    try {
      const master = await readFile(path);
      if (master.length !== MASTER_KEY_BYTES) {
        throw new Error(
          `Query link key ${path} is damaged (${master.length} bytes instead of ${MASTER_KEY_BYTES})`,
        );
      }
      return new LinkKeys(master);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const master = randomBytes(MASTER_KEY_BYTES);
    await writeFileAtomic(path, master, { mode: 0o600, noSync: !opts.sync });
    return new LinkKeys(master);
  }

  /** The key of one link: salt from the link, issuer name and fingerprint from the token store. */
  derive(salt: Buffer, issuer: string, fingerprint: Buffer): LinkKey {
    const info = Buffer.concat([Buffer.from(`${INFO_PREFIX}\0${issuer}\0`, 'utf8'), fingerprint]);
    const okm = Buffer.from(hkdfSync('sha256', this.master, salt, info, 44));
    return { key: okm.subarray(0, 32), iv: okm.subarray(32, 44) };
  }
}
