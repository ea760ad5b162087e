/**
 * The sealed part of a query link (api.md §15): the link request (bucket, query, record, expiry)
 * as bigint-safe JSON, deflated, then encrypted and authenticated with AES-256-GCM under the
 * link's own key (link-keys.ts). Any change to the ciphertext, the salt or the issuer name makes
 * `openLink` fail, so a link cannot be altered or forged without the server's master key.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { parseJson, stringifyJson } from '../../protocol/json.js';
import { LINK_SALT_BYTES, type LinkKeys } from './link-keys.js';

/** What a link encodes. */
export interface LinkPayload {
  bucket: string;
  /** QueryEntry body (api.md §12) with `entries` filled in. */
  query: Record<string, unknown>;
  record_entry: string;
  record_timestamp: bigint;
  /** Unix seconds; null = no expiry. */
  expire_at: number | null;
}

/** URL parameters carrying a sealed payload (base64url). */
export interface SealedLink {
  ct: string;
  s: string;
}

const TAG_BYTES = 16;
/** Bound on an inflated payload (a query body is small; this stops decompression bombs). */
const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** Seals a payload for `issuer` (the token name) with its current fingerprint. */
export function sealLink(
  keys: LinkKeys,
  issuer: string,
  fingerprint: Buffer,
  payload: LinkPayload,
): SealedLink {
  const salt = randomBytes(LINK_SALT_BYTES);
  const { key, iv } = keys.derive(salt, issuer, fingerprint);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const plain = deflateRawSync(Buffer.from(stringifyJson(payload), 'utf8'));
  const ct = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  return { ct: ct.toString('base64url'), s: salt.toString('base64url') };
}

/** Opens a sealed payload; undefined when it does not verify (altered, forged or token changed). */
export function openLink(
  keys: LinkKeys,
  issuer: string,
  fingerprint: Buffer,
  sealed: SealedLink,
): LinkPayload | undefined {
  const salt = Buffer.from(sealed.s, 'base64url');
  const ct = Buffer.from(sealed.ct, 'base64url');
  if (salt.length !== LINK_SALT_BYTES || ct.length <= TAG_BYTES) return undefined;
  const { key, iv } = keys.derive(salt, issuer, fingerprint);
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
    plain = Buffer.concat([decipher.update(ct.subarray(0, ct.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
  // Authenticated: the content is what this server sealed, so it is well-formed.
  const json = inflateRawSync(plain, { maxOutputLength: MAX_PAYLOAD_BYTES }).toString('utf8');
  return parseJson(json) as LinkPayload;
}
