// jco's transpile of a component, kept on disk by the component's sha256, so that a proxy restart
// (or another proxy on the host sharing the dir) loads a JavaScript component without the seconds
// a transpile takes. One file per entry, `<sha256>.jco`, written whole (temp file, then rename),
// mode 0600 in a 0700 directory (it holds code the proxy runs). The file carries the sha256 of its
// payload: an entry that does not match (truncated, corrupted, edited) is removed and rebuilt, never
// run. The directory is bounded in bytes: after a write, the least recently used entries go until
// it fits. The key includes jco's version: another jco transpiles anew.
import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** What the proxy needs of a transpile: the generated module, its core wasm files, its imports. */
export interface TranspiledFiles {
  js: string;
  cores: Record<string, Uint8Array>;
  imports: string[];
}

/** Default bound on the cache directory: about twenty JavaScript components (12 MB each). */
export const DEFAULT_TRANSPILE_CACHE_BYTES = 256 * 1024 * 1024;

const MAGIC = 'wasmesh-jco-cache 1\n';
const SUFFIX = '.jco';

function jcoVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    return (require('@bytecodealliance/jco/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export interface TranspileCacheOptions {
  maxBytes?: number;
  /** Told when an entry is refused or a write fails (the proxy logs it); the load goes on. */
  onError?: (message: string) => void;
}

export class TranspileCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly onError: ((message: string) => void) | undefined;
  readonly #version = jcoVersion();
  /** Entries read and written by this process (for tests and logs). */
  hits = 0;
  writes = 0;
  rejected = 0;

  constructor(dir: string, options: TranspileCacheOptions = {}) {
    this.dir = dir;
    this.maxBytes = options.maxBytes ?? DEFAULT_TRANSPILE_CACHE_BYTES;
    if (!(Number.isInteger(this.maxBytes) && this.maxBytes > 0)) throw new Error(`component cache ${dir}: maxBytes must be a positive whole number, got ${options.maxBytes}`);
    this.onError = options.onError;
  }

  /** The file an entry lives in. */
  fileFor(sha256: string): string {
    return join(this.dir, `${sha256}-${this.#version.replace(/[^0-9A-Za-z.-]/g, '_')}${SUFFIX}`);
  }

  /** The entry for `sha256`, or undefined (missing, or unsound: then it is removed). */
  async read(sha256: string): Promise<TranspiledFiles | undefined> {
    const file = this.fileFor(sha256);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch {
      return undefined;
    }
    const files = this.#decode(data, sha256);
    if (typeof files === 'string') {
      this.rejected++;
      this.onError?.(`component cache entry ${file} is ignored and rebuilt: ${files}`);
      await rm(file, { force: true }).catch(() => undefined);
      return undefined;
    }
    this.hits++;
    // Most recently used: the bound evicts by modification time.
    const now = new Date();
    await utimes(file, now, now).catch(() => undefined);
    return files;
  }

  async write(sha256: string, files: TranspiledFiles): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const parts: Array<{ name: string; bytes: Uint8Array }> = [{ name: '', bytes: Buffer.from(files.js, 'utf8') }];
    for (const [name, bytes] of Object.entries(files.cores)) parts.push({ name, bytes });
    const payloadLength = parts.reduce((n, p) => n + p.bytes.length, 0);
    const hash = createHash('sha256');
    for (const p of parts) hash.update(p.bytes);
    const header = JSON.stringify({
      component: sha256,
      jco: this.#version,
      imports: files.imports,
      parts: parts.map((p) => ({ name: p.name, length: p.bytes.length })),
      payloadLength,
      payloadSha256: hash.digest('hex'),
    });
    const file = this.fileFor(sha256);
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.write(`${MAGIC}${header}\n`);
      for (const p of parts) await handle.write(p.bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    this.writes++;
    await this.#bound(file);
  }

  /** The entry, or why it is not sound. */
  #decode(data: Buffer, sha256: string): TranspiledFiles | string {
    if (!data.subarray(0, MAGIC.length).equals(Buffer.from(MAGIC))) return 'not a wasmesh jco cache file';
    const nl = data.indexOf(0x0a, MAGIC.length);
    if (nl < 0) return 'no header';
    let header: { component?: unknown; jco?: unknown; imports?: unknown; parts?: unknown; payloadLength?: unknown; payloadSha256?: unknown };
    try {
      header = JSON.parse(data.subarray(MAGIC.length, nl).toString('utf8')) as typeof header;
    } catch {
      return 'header is not JSON';
    }
    if (header.component !== sha256) return `written for component ${String(header.component)}`;
    if (header.jco !== this.#version) return `written by jco ${String(header.jco)}`;
    const payload = data.subarray(nl + 1);
    if (payload.length !== header.payloadLength) return `payload is ${payload.length} bytes, expected ${String(header.payloadLength)}`;
    if (createHash('sha256').update(payload).digest('hex') !== header.payloadSha256) return 'payload does not match its sha256';
    if (!Array.isArray(header.parts) || !Array.isArray(header.imports)) return 'header lacks parts or imports';
    const files: TranspiledFiles = { js: '', cores: {}, imports: header.imports.map(String) };
    let at = 0;
    for (const part of header.parts as Array<{ name: string; length: number }>) {
      const bytes = payload.subarray(at, at + part.length);
      at += part.length;
      if (part.name === '') files.js = bytes.toString('utf8');
      else files.cores[part.name] = new Uint8Array(bytes);
    }
    if (files.js === '') return 'no JavaScript in the entry';
    return files;
  }

  /** Removes the least recently used entries (never `keep`) until the directory fits maxBytes. */
  async #bound(keep: string): Promise<void> {
    const entries: Array<{ file: string; size: number; mtime: number }> = [];
    for (const name of await readdir(this.dir)) {
      const file = join(this.dir, name);
      // A write that died midway (the process was killed) leaves its temp file: gone after an hour.
      if (name.endsWith('.tmp')) {
        const s = await stat(file).catch(() => undefined);
        if (s && Date.now() - s.mtimeMs > 3_600_000) await rm(file, { force: true });
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      const s = await stat(file).catch(() => undefined);
      if (s) entries.push({ file, size: s.size, mtime: s.mtimeMs });
    }
    let total = entries.reduce((n, e) => n + e.size, 0);
    entries.sort((a, b) => a.mtime - b.mtime);
    for (const e of entries) {
      if (total <= this.maxBytes) break;
      if (e.file === keep) continue;
      await rm(e.file, { force: true });
      total -= e.size;
    }
  }
}
