// The managed proxy's content-addressed module cache: <dir>/sha256/<hex>.wasm. A file is only ever
// written whole (temporary name, then rename) after its sha256 was checked, so a file that exists
// under a digest has exactly those bytes.

import { createHash } from 'node:crypto';
import { access, mkdir, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export class ModuleDigestError extends Error {
  readonly code = 'WASMESH_PROXY_MODULE_DIGEST';
  constructor(expected: string, actual: string) {
    super(`module bytes have sha256 ${actual}, expected ${expected}`);
    this.name = 'ModuleDigestError';
  }
}

export class ModuleStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  pathOf(sha256: string): string {
    return join(this.dir, 'sha256', `${sha256}.wasm`);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await access(this.pathOf(sha256));
      return true;
    } catch {
      return false;
    }
  }

  /** Checks the digest and stores the bytes; returns the file's path. Throws ModuleDigestError on a mismatch. */
  async put(sha256: string, bytes: Uint8Array): Promise<string> {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new ModuleDigestError(sha256, actual);
    const path = this.pathOf(sha256);
    await mkdir(join(this.dir, 'sha256'), { recursive: true });
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    try {
      await writeFile(tmp, bytes, { mode: 0o644 });
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    return path;
  }

  /** Digests of every module in the cache. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, 'sha256'));
    } catch {
      return [];
    }
    return names.filter((n) => /^[0-9a-f]{64}\.wasm$/.test(n)).map((n) => n.slice(0, 64));
  }

  /** Removes every module not in `keep`; returns the digests removed. */
  async retain(keep: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const sha of await this.list()) {
      if (keep.has(sha)) continue;
      await unlink(this.pathOf(sha)).catch(() => {});
      removed.push(sha);
    }
    return removed;
  }
}
