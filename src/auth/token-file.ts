/**
 * Persistence of the token store: `<dataPath>/.ferry/tokens.json`, mode 0600, replaced atomically
 * (write temp file, fsync, rename, fsync directory) so that a crash leaves either the old or the
 * new file. Token values are never stored, only `sha256(salt || value)` with a per-token salt.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** One persisted (non-provisioned) token. */
export interface StoredToken {
  name: string;
  /** Hex salt, unique per token value. */
  salt: string;
  /** Hex sha256(salt || value). */
  hash: string;
  created_at: string;
  permissions: { full_access: boolean; read: string[]; write: string[] };
  expires_at: string | null;
  ttl: number | null;
  last_access: string | null;
  ip_allowlist: string[];
}

/** File content. */
export interface TokenFileContent {
  version: 1;
  /** Set once `RS_INIT_API_TOKEN` has created `init-token`, so that it is created only once. */
  init_token_created: boolean;
  tokens: StoredToken[];
}

/** Reads the file; undefined when it does not exist. Throws with the path on corrupt content. */
export async function readTokenFile(path: string): Promise<TokenFileContent | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`Token file ${path} is corrupt: ${(e as Error).message}`);
  }
  const c = parsed as Partial<TokenFileContent> | null;
  if (!c || c.version !== 1 || !Array.isArray(c.tokens)) {
    throw new Error(`Token file ${path} has an unknown format`);
  }
  return { version: 1, init_token_created: c.init_token_created === true, tokens: c.tokens };
}

/** Replaces the file atomically with mode 0600. */
export async function writeTokenFile(path: string, content: TokenFileContent): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.chmod(0o600); // the umask or an older temp file must not widen the mode
    await fh.writeFile(JSON.stringify(content, null, 1));
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
