// The author's loop on a standalone proxy (`wasmesh filter dev`): modules standing in for WasmPlugins'
// own, kept across config changes until cleared. Each is written to the proxy's own temporary folder
// (the plugin manager loads bindings by path) and applied by rewriting the config's bindings; the
// config version says an override is in effect.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { allFilterBindings, mapFilterBindings, type FilterBinding, type ProxyConfig } from '../../../mesh/src/proxy-config.ts';

/** A module override names no WasmPlugin of the running config (or an ambiguous one). */
export class ModuleOverrideError extends Error {
  readonly code = 'WASMESH_PROXY_NO_SUCH_PLUGIN';
}

interface Override {
  path: string;
  sha256: string;
}

export class ModuleOverrides {
  /** WasmPlugin `namespace/name` -> the module standing in for its own. */
  readonly #byPlugin = new Map<string, Override>();
  /** This proxy's own folder (several proxies may share a process), made on the first override. */
  #dir: Promise<string> | undefined;

  get size(): number {
    return this.#byPlugin.size;
  }

  /** `namespace/name` of the WasmPlugin `plugin` names in `config` (`namespace/name`, or a unique `name`). */
  keyFor(config: ProxyConfig, plugin: string): string {
    const all = new Set<string>();
    for (const b of allFilterBindings(config)) all.add(`${b.namespace}/${b.name}`);
    if (all.has(plugin)) return plugin;
    const byName = [...all].filter((k) => k.slice(k.indexOf('/') + 1) === plugin);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new ModuleOverrideError(`WasmPlugin name "${plugin}" is in several namespaces (${byName.join(', ')}): say namespace/name`);
    throw new ModuleOverrideError(`no WasmPlugin "${plugin}" in the running config (have: ${[...all].join(', ') || 'none'})`);
  }

  /** Stores the bytes and sets the override; returns what it replaced (to restore if applying fails). */
  async set(key: string, bytes: Uint8Array): Promise<{ sha256: string; restore: () => void }> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    this.#dir ??= mkdtemp(join(os.tmpdir(), 'wasmesh-dev-'));
    const path = join(await this.#dir, `${sha256}.wasm`);
    await writeFile(path, bytes);
    const previous = this.#byPlugin.get(key);
    this.#byPlugin.set(key, { path, sha256 });
    return {
      sha256,
      restore: () => {
        if (previous) this.#byPlugin.set(key, previous);
        else this.#byPlugin.delete(key);
      },
    };
  }

  /** Removes an override; false when there was none. */
  delete(key: string): boolean {
    return this.#byPlugin.delete(key);
  }

  /** The config with every overridden binding pointed at its stand-in module (and without a canary). */
  apply(config: ProxyConfig): ProxyConfig {
    if (this.#byPlugin.size === 0) return config;
    const used: string[] = [];
    const swap = (b: FilterBinding): FilterBinding => {
      const o = this.#byPlugin.get(`${b.namespace}/${b.name}`);
      if (o === undefined) return b;
      used.push(`${b.namespace}/${b.name}=${o.sha256}`);
      return { ...b, url: `file://${o.path}`, path: o.path, sha256: o.sha256, canary: undefined };
    };
    const swapped = mapFilterBindings(config, swap);
    if (used.length === 0) return config;
    const tag = createHash('sha256').update(used.sort().join(',')).digest('hex').slice(0, 12);
    return { ...swapped, version: `${config.version}+dev.${tag}` };
  }

  /** `namespace/name` -> sha256 of each override. */
  summary(): Record<string, string> {
    return Object.fromEntries([...this.#byPlugin].map(([k, o]) => [k, o.sha256]));
  }

  /** Removes the temporary module files (proxy shutdown). */
  async close(): Promise<void> {
    this.#byPlugin.clear();
    const dir = this.#dir;
    this.#dir = undefined;
    if (dir) await rm(await dir, { recursive: true, force: true }).catch(() => {});
  }
}
