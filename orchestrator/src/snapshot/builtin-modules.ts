// The mesh's own filter modules (telemetry, policy, fault: mesh/src/translate/builtin-filters.ts),
// which the translator binds by file:// path on the orchestrator's disk. Managed proxies cannot read
// that disk, so the snapshot rewrites those bindings to digests and FetchModule serves the bytes from
// here. Only files under the built-in filters folder are served: a user's file:// WasmPlugin never
// turns an orchestrator file into something proxies can download.

import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { installPath } from '../../../schemas/repo-files.ts';

/** This installation's filters/ folder, as mesh/src/translate/builtin-filters.ts finds it. */
export const DEFAULT_FILTERS_DIR = installPath('filters') + '/';

interface Entry {
  readonly sha256: string;
  readonly mtimeMs: number;
  readonly size: number;
}

export class BuiltinModules {
  readonly dir: string;
  /** path -> digest, re-hashed when the file changes (a rebuilt filter is a new module version). */
  readonly #byPath = new Map<string, Entry>();
  /** digest -> path, for FetchModule. */
  readonly #bySha = new Map<string, string>();

  constructor(dir: string = DEFAULT_FILTERS_DIR) {
    this.dir = resolve(dir);
  }

  /** Whether a binding path is one of ours. */
  owns(path: string): boolean {
    return resolve(path).startsWith(this.dir + sep);
  }

  /** The digest of a built-in module file; throws if it is not ours or cannot be read. */
  digest(path: string): string {
    const full = resolve(path);
    if (!this.owns(full)) throw new Error(`${path} is not a built-in filter module`);
    const st = statSync(full);
    const cached = this.#byPath.get(full);
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached.sha256;
    const sha256 = createHash('sha256').update(readFileSync(full)).digest('hex');
    this.#byPath.set(full, { sha256, mtimeMs: st.mtimeMs, size: st.size });
    this.#bySha.set(sha256, full);
    return sha256;
  }

  /** The bytes of a built-in module seen by digest(), if the file still has that digest. */
  async get(sha256: string): Promise<Uint8Array | undefined> {
    const path = this.#bySha.get(sha256);
    if (path === undefined) return undefined;
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return undefined;
    }
    return createHash('sha256').update(bytes).digest('hex') === sha256 ? bytes : undefined;
  }
}
