// Turns the filter bindings of a config version into running plugins. Everything a new version needs
// (read, verify, compile, start, configure) happens before anything switches; a version with one bad
// binding is refused whole and the running plugins stay as they are (the caller keeps its last good
// config). A plugin whose module and settings did not change is kept, VM and all; a plugin no longer
// bound drains its in-flight streams and is stopped in the background.
import { readFile } from 'node:fs/promises';
import { isComponent, LogLevel, ModuleCache, Plugin, sha256Hex, type CompiledModule, type PluginConfig, type PluginHost } from '../../../wasm/src/index.ts';
import type { FilterBinding } from '../../../mesh/src/proxy-config.ts';
import { ComponentCache, DEFAULT_COMPONENT_STARTUP_CPU_BUDGET, type CompiledComponent } from '../component-filter/component-filter.ts';
import { ComponentPlugin } from '../component-filter/component-plugin.ts';
import { CanaryPair, type FilterPlugin, type FilterSlot } from './chain.ts';

export const PLUGIN_LOAD_FAILED = 'WASMESH_PROXY_PLUGIN_LOAD_FAILED';

/**
 * How many compiled modules no binding uses any more stay compiled (the most recently unbound ones):
 * going back to a previous version (a rollback, an aborted canary) swaps without compiling again.
 */
export const RECENT_MODULES_KEPT = 2;

/** A binding could not be turned into a running plugin; nothing of the new version was applied. */
export class PluginLoadError extends Error {
  readonly code = PLUGIN_LOAD_FAILED;
  /** The WasmPlugin, as `namespace/name`. */
  readonly plugin: string;

  constructor(plugin: string, detail: string, options?: { cause?: unknown }) {
    super(`WasmPlugin ${plugin}: ${detail}`, options);
    this.name = 'PluginLoadError';
    this.plugin = plugin;
  }
}

interface Entry {
  readonly plugin: FilterPlugin;
  readonly sha256: string;
  /** How many bindings of the current version use this plugin (inbound and outbound lists alike). */
  refs: number;
}

interface Resolved {
  readonly key: string;
  readonly plugin: FilterPlugin;
  readonly sha256: string;
  /** Loaded by this apply (to be stopped if the apply fails). */
  readonly created: boolean;
}

export class PluginManager {
  readonly #host: PluginHost;
  readonly #cache: ModuleCache;
  /** Components (wasmesh:filter), transpiled and compiled once per version. */
  readonly #components: ComponentCache;
  /** Current plugins by identity (WasmPlugin, module sha256, settings). */
  #entries = new Map<string, Entry>();
  /** Plugins dropped from the config, waiting for their streams to drain. */
  readonly #retiring = new Set<FilterPlugin>();
  /** sha256 of compiled modules no longer bound, oldest first (at most RECENT_MODULES_KEPT). */
  #recent: string[] = [];
  /** Applies run one after another. */
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;

  /**
   * `host` is shared by every plugin (metrics, shared data, callouts); `cache` compiles each module
   * once, `components` each component (give it a TranspileCache to keep jco's output on disk).
   */
  constructor(host: PluginHost, cache: ModuleCache = new ModuleCache(), components: ComponentCache = new ComponentCache()) {
    this.#host = host;
    this.#cache = cache;
    this.#components = components;
  }

  /**
   * Resolves every binding of a config version to a running plugin, in the same order. Pass the whole
   * version at once (inbound then outbound, say): plugins of the previous version that are not in
   * `bindings` are retired. A binding that appears twice with the same module and settings gets the
   * same Plugin both times. Throws PluginLoadError (and changes nothing) if any binding fails.
   */
  async apply(bindings: readonly FilterBinding[]): Promise<FilterPlugin[]> {
    return (await this.load(bindings)).map((s) => (s instanceof CanaryPair ? s.stable : s));
  }

  /**
   * Like apply, but a binding with a canary module resolves to a CanaryPair (both versions loaded and
   * started before anything switches); the filter chain picks between them per stream. Bindings in
   * `network` (WasmPlugins of type NETWORK) must resolve to proxy-wasm modules: a component has no
   * network callbacks, and the whole version is refused if one is bound there.
   */
  load(bindings: readonly FilterBinding[], network?: ReadonlySet<FilterBinding>): Promise<FilterSlot[]> {
    const run = this.#queue.then(() => this.#apply(bindings, network));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Convenience for a whole config: the inbound and outbound lists applied as one version. */
  async applyConfig(inbound: readonly FilterBinding[], outbound: readonly FilterBinding[]): Promise<{ inbound: FilterPlugin[]; outbound: FilterPlugin[] }> {
    const plugins = await this.apply([...inbound, ...outbound]);
    return { inbound: plugins.slice(0, inbound.length), outbound: plugins.slice(inbound.length) };
  }

  /** The running plugins of the current version (each once). */
  get plugins(): FilterPlugin[] {
    return [...this.#entries.values()].map((e) => e.plugin);
  }

  /** How many bindings of the current version use `plugin` (0 when it is not current). */
  refs(plugin: FilterPlugin): number {
    for (const e of this.#entries.values()) if (e.plugin === plugin) return e.refs;
    return 0;
  }

  /** Plugins retired but not yet stopped (still draining). */
  get retiring(): number {
    return this.#retiring.size;
  }

  /** Stops every plugin now, current and draining alike (proxy shutdown). Later applies are refused. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#queue;
    const plugins = new Set<FilterPlugin>(this.#retiring);
    for (const e of this.#entries.values()) plugins.add(e.plugin);
    this.#entries = new Map();
    this.#retiring.clear();
    await Promise.all([...plugins].map((p) => p.stop()));
  }

  async #apply(bindings: readonly FilterBinding[], network?: ReadonlySet<FilterBinding>): Promise<FilterSlot[]> {
    if (this.#stopped) throw new Error('plugin manager is stopped');
    // A canary is one more plugin: the binding's settings with the canary's module.
    const expanded: FilterBinding[] = [];
    const withCanary: boolean[] = [];
    for (const b of bindings) {
      expanded.push(b);
      const c = b.canary;
      withCanary.push(c !== undefined && c.weight > 0);
      if (c !== undefined && c.weight > 0) expanded.push({ ...b, url: c.url, path: c.path, sha256: c.sha256, canary: undefined });
    }
    // Each distinct plugin is loaded once, and each file read once, even if bound several times.
    const loads = new Map<string, Promise<Resolved>>();
    const reads = new Map<string, Promise<Buffer>>();
    const pending = expanded.map((b) => this.#resolve(b, loads, reads));
    if (network !== undefined && network.size > 0) {
      for (let k = 0; k < expanded.length; k++) {
        if (!network.has(expanded[k]!)) continue;
        const b = expanded[k]!;
        pending[k] = pending[k]!.then((r) => {
          if ('createNetworkStream' in r.plugin) return r;
          // Stopped with the rest of this apply's new plugins (the failure path below).
          return Promise.reject(Object.assign(new PluginLoadError(`${b.namespace}/${b.name}`, `type NETWORK needs a proxy-wasm module, and ${b.path ?? b.url} is a component (wasmesh:filter components run on HTTP requests only)`), { resolved: r }));
        });
      }
    }
    const settled = await Promise.allSettled(pending);
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure !== undefined) {
      const created = new Set<FilterPlugin>();
      for (const s of settled) {
        const r = s.status === 'fulfilled' ? s.value : ((s.reason as { resolved?: Resolved } | undefined)?.resolved);
        if (r?.created) created.add(r.plugin);
      }
      await Promise.all([...created].map((p) => p.stop().catch(() => undefined)));
      const inUse = new Set<string>();
      for (const e of this.#entries.values()) inUse.add(e.sha256);
      for (const p of created) if (!inUse.has(p.compiled.sha256)) this.#forget(p.compiled.sha256);
      throw failure.reason;
    }
    const resolved = settled.map((s) => (s as PromiseFulfilledResult<Resolved>).value);

    // Switch: the new version's entries, with reference counts; whatever is left over retires.
    const previous = this.#entries;
    const next = new Map<string, Entry>();
    for (const r of resolved) {
      let entry = next.get(r.key);
      if (entry === undefined) {
        entry = previous.get(r.key) ?? { plugin: r.plugin, sha256: r.sha256, refs: 0 };
        entry.refs = 0;
        next.set(r.key, entry);
      }
      entry.refs++;
    }
    this.#entries = next;
    const shas = new Set<string>();
    for (const e of next.values()) shas.add(e.sha256);
    this.#recent = this.#recent.filter((sha) => !shas.has(sha));
    for (const [key, e] of previous) {
      if (next.has(key)) continue;
      e.refs = 0;
      if (!shas.has(e.sha256)) this.#keepRecent(e.sha256);
      this.#retire(e.plugin);
    }
    const slots: FilterSlot[] = [];
    let i = 0;
    for (let k = 0; k < bindings.length; k++) {
      const stable = resolved[i++].plugin;
      if (!withCanary[k]) {
        slots.push(stable);
        continue;
      }
      const canary = resolved[i++].plugin;
      slots.push(canary === stable ? stable : new CanaryPair(`${bindings[k].namespace}/${bindings[k].name}`, stable, canary, bindings[k].canary!.weight));
    }
    return slots;
  }

  async #resolve(b: FilterBinding, loads: Map<string, Promise<Resolved>>, reads: Map<string, Promise<Buffer>>): Promise<Resolved> {
    const id = `${b.namespace}/${b.name}`;
    let settings: string;
    try {
      settings = settingsKey(b);
    } catch (err) {
      throw new PluginLoadError(id, `pluginConfig cannot be serialized: ${messageOf(err)}`, { cause: err });
    }
    const expected = b.sha256 === undefined || b.sha256 === '' ? undefined : normalizeSha(b.sha256);
    // A pinned digest that is already running needs no read at all.
    if (expected !== undefined) {
      const key = `${id}\0${expected}\0${settings}`;
      const current = this.#entries.get(key);
      if (current !== undefined) return { key, plugin: current.plugin, sha256: current.sha256, created: false };
    }
    const bytes = await this.#read(b, id, reads);
    const sha256 = sha256Hex(bytes);
    if (expected !== undefined && expected !== sha256) {
      throw new PluginLoadError(id, `module ${b.path} has sha256 ${sha256}, expected ${expected}`);
    }
    const key = `${id}\0${sha256}\0${settings}`;
    const current = this.#entries.get(key);
    if (current !== undefined) return { key, plugin: current.plugin, sha256, created: false };
    let load = loads.get(key);
    if (load === undefined) {
      load = this.#load(b, id, bytes).then((plugin) => ({ key, plugin, sha256, created: true }));
      loads.set(key, load);
    }
    return load;
  }

  #read(b: FilterBinding, id: string, reads: Map<string, Promise<Buffer>>): Promise<Buffer> {
    const path = b.path;
    if (path === undefined || path === '') {
      return Promise.reject(new PluginLoadError(id, `no local module file for url ${b.url}`));
    }
    let read = reads.get(path);
    if (read === undefined) {
      read = readFile(path);
      reads.set(path, read);
    }
    return read.catch((err: unknown) => {
      throw new PluginLoadError(id, `cannot read module ${path} (url ${b.url}): ${messageOf(err)}`, { cause: err });
    });
  }

  async #load(b: FilterBinding, id: string, bytes: Buffer): Promise<FilterPlugin> {
    if (isComponent(bytes)) return this.#loadComponent(b, id, bytes);
    let compiled: CompiledModule;
    try {
      compiled = await this.#cache.get(bytes, { name: b.path ?? b.url });
    } catch (err) {
      throw new PluginLoadError(id, messageOf(err), { cause: err });
    }
    try {
      return await Plugin.load(compiled, pluginConfig(b), this.#host);
    } catch (err) {
      throw new PluginLoadError(id, messageOf(err), { cause: err });
    }
  }

  /** A wasmesh:filter component: transpiled (cached on disk when the cache has a dir), metered, compiled, instantiated. */
  async #loadComponent(b: FilterBinding, id: string, bytes: Buffer): Promise<FilterPlugin> {
    if (b.vms !== undefined && b.vms !== 1) {
      throw new PluginLoadError(id, `spec.vms ${b.vms}: ${b.path ?? b.url} is a component (wasmesh:filter), which runs as one instance; a pool of VMs is for proxy-wasm modules`);
    }
    const config = pluginConfig(b);
    let compiled: CompiledComponent;
    try {
      compiled = await this.#components.get(bytes, { name: b.path ?? b.url, startupCpuBudget: config.startupCpuBudget ?? DEFAULT_COMPONENT_STARTUP_CPU_BUDGET });
    } catch (err) {
      throw new PluginLoadError(id, messageOf(err), { cause: err });
    }
    try {
      return await ComponentPlugin.load(compiled, config, this.#host);
    } catch (err) {
      throw new PluginLoadError(id, messageOf(err), { cause: err });
    }
  }

  /** Keeps an unbound module compiled for a while; the oldest beyond RECENT_MODULES_KEPT is dropped. */
  #keepRecent(sha256: string): void {
    if (this.#recent.includes(sha256)) return;
    this.#recent.push(sha256);
    while (this.#recent.length > RECENT_MODULES_KEPT) this.#forget(this.#recent.shift()!);
  }

  #forget(sha256: string): void {
    this.#cache.delete(sha256);
    this.#components.delete(sha256);
  }

  /** In the background, once the caller switched to the new plugins: wait for the streams, then stop. */
  #retire(plugin: FilterPlugin): void {
    this.#retiring.add(plugin);
    setImmediate(() => {
      plugin
        .drained()
        .then(() => plugin.stop())
        .catch((err: unknown) => {
          const message = `stopping retired plugin failed: ${messageOf(err)}`;
          if (this.#host.log) this.#host.log(LogLevel.Error, message, plugin.settings.name);
          else process.stderr.write(`[wasm ${plugin.settings.name}] error: ${message}\n`);
        })
        .finally(() => this.#retiring.delete(plugin));
    });
  }
}

/** The runtime's config for a binding; the plugin is named `<namespace>.<name>` (metrics, logs). */
function pluginConfig(b: FilterBinding): PluginConfig {
  return {
    name: `${b.namespace}.${b.name}`,
    rootId: b.rootId,
    vmId: b.vmId === '' ? undefined : b.vmId,
    configuration: configurationOf(b.pluginConfig),
    failStrategy: b.failStrategy,
    logLevel: b.logLevel,
    env: { ...b.env },
    cpuBudget: b.cpuBudget,
    startupCpuBudget: b.startupCpuBudget,
    vms: b.vms,
  };
}

function configurationOf(value: unknown): PluginConfig['configuration'] {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  if (typeof value === 'object') return value;
  return JSON.stringify(value);
}

/**
 * Everything of a binding but its module that the running plugin depends on (a canary binding is the
 * plugin's own settings with another module, so it shares this key's settings part).
 */
function settingsKey(b: FilterBinding): string {
  const config = b.pluginConfig instanceof Uint8Array ? `bytes:${sha256Hex(b.pluginConfig)}` : canonicalJson(b.pluginConfig ?? null);
  return canonicalJson([b.rootId, b.vmId, b.failStrategy, b.logLevel ?? null, config, b.env ?? {}, b.cpuBudget ?? null, b.startupCpuBudget ?? null, ...(b.vms !== undefined && b.vms !== 1 ? [b.vms] : [])]);
}

/** JSON with object keys sorted, so equal settings written in another order compare equal. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  const obj = value as Record<string, unknown>;
  return `{${keys.filter((k) => obj[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

function normalizeSha(sha: string): string {
  const s = sha.trim().toLowerCase();
  return s.startsWith('sha256:') ? s.slice(7) : s;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
