// WasmPlugins -> filter bindings: which plugins select the workload, on which side (inbound or
// outbound), and in which order they run.

import { isAbsolute, join, dirname, normalize } from 'node:path';
import type { FilterBinding, FilterPhase, WorkloadIdentity } from '../proxy-config.ts';
import { namespaceOf, type DocumentSource, type Gateway, type WasmPlugin } from '../documents.ts';
import { policyApplies } from './target-refs.ts';

/**
 * Does the plugin apply to the workload? A plugin applies to workloads in its own namespace, or to
 * every namespace when it lives in the root namespace (istio-system); its selector (absent = all)
 * then has to match the workload's labels. A plugin with targetRefs applies only to the gateway
 * proxies of the Gateways it names (`gateways`: those that configure the workload; target-refs.ts).
 */
export function pluginSelects(plugin: WasmPlugin, workload: WorkloadIdentity, gateways: readonly Gateway[] = []): boolean {
  return policyApplies(plugin, workload, gateways);
}

/**
 * Sides the plugin runs on. Without match entries, and for entries whose mode is absent or
 * UNDEFINED, the inbound (SERVER) side only; CLIENT is outbound; CLIENT_AND_SERVER both.
 * (Istio's API text calls an absent mode CLIENT_AND_SERVER; we keep plugins off outbound traffic
 * unless asked, as the brief for this translator specifies.) Port restrictions are not represented
 * in FilterBinding yet and are not applied.
 */
export function pluginSides(plugin: WasmPlugin): { inbound: boolean; outbound: boolean } {
  const match = plugin.spec.match ?? [];
  if (match.length === 0) return { inbound: true, outbound: false };
  let inbound = false;
  let outbound = false;
  for (const m of match) {
    const mode = m.mode ?? 'UNDEFINED';
    if (mode === 'CLIENT' || mode === 'CLIENT_AND_SERVER') outbound = true;
    if (mode !== 'CLIENT') inbound = true;
  }
  return { inbound, outbound };
}

/** Istio's phase order; UNSPECIFIED_PHASE runs last, just before the router. */
const PHASE_ORDER: Readonly<Record<FilterPhase, number>> = { AUTHN: 0, AUTHZ: 1, STATS: 2, UNSPECIFIED_PHASE: 3 };

/** Execution order: phase, then priority (higher first), then name, then namespace. */
export function compareBindings(a: FilterBinding, b: FilterBinding): number {
  return (
    PHASE_ORDER[a.phase] - PHASE_ORDER[b.phase] ||
    b.priority - a.priority ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
    (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0)
  );
}

/**
 * Local path of a file:// module: an absolute path as is; a relative one against the folder of the
 * config file the plugin came from, itself taken relative to `baseDir` when not absolute. Never
 * consults the process's working directory, so translation stays a function of its inputs.
 */
export function modulePath(url: string, source: DocumentSource | undefined, baseDir: string | undefined): string | undefined {
  if (!url.startsWith('file://')) return undefined;
  const path = decodeURIComponent(url.slice('file://'.length));
  if (isAbsolute(path)) return normalize(path);
  const fileDir = source && !source.file.startsWith('<') ? dirname(source.file) : '.';
  return isAbsolute(fileDir) ? join(fileDir, path) : join(baseDir ?? '', fileDir, path);
}

export interface FilterOptions {
  readonly baseDir?: string;
  /** Values for vmConfig.env entries with valueFrom HOST; those entries are left out when absent here. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>>;
}

export function toBinding(plugin: WasmPlugin, source: DocumentSource | undefined, options: FilterOptions): FilterBinding {
  const spec = plugin.spec;
  const namespace = namespaceOf(plugin);
  const env: Record<string, string> = {};
  for (const e of spec.vmConfig?.env ?? []) {
    if (e.valueFrom === 'HOST') {
      const value = options.hostEnv?.[e.name];
      if (value !== undefined) env[e.name] = value;
    } else {
      env[e.name] = e.value ?? '';
    }
  }
  const path = modulePath(spec.url, source, options.baseDir);
  const binding: Omit<FilterBinding, 'pluginConfig'> = {
    name: plugin.metadata.name,
    namespace,
    phase: spec.phase ?? 'UNSPECIFIED_PHASE',
    priority: spec.priority ?? 0,
    url: spec.url,
    ...(path !== undefined ? { path } : {}),
    ...(spec.sha256 !== undefined ? { sha256: spec.sha256.toLowerCase() } : {}),
    rootId: spec.pluginName ?? '',
    vmId: `${namespace}.${plugin.metadata.name}`,
    failStrategy: spec.failStrategy ?? 'FAIL_CLOSE',
    env,
    // Absent budgets stay absent: the runtime's defaults apply, and a config without them hashes as before.
    ...(spec.cpuBudget !== undefined ? { cpuBudget: spec.cpuBudget } : {}),
    ...(spec.startupCpuBudget !== undefined ? { startupCpuBudget: spec.startupCpuBudget } : {}),
    // The same for the pool: absent means one VM, and a config without it hashes as before.
    ...(spec.vms !== undefined ? { vms: spec.vms } : {}),
  };
  if (spec.canary !== undefined && spec.canary.weight > 0) {
    const c = spec.canary;
    const canaryPath = modulePath(c.url, source, options.baseDir);
    binding.canary = { url: c.url, ...(canaryPath !== undefined ? { path: canaryPath } : {}), ...(c.sha256 !== undefined ? { sha256: c.sha256.toLowerCase() } : {}), weight: c.weight };
  }
  // No pluginConfig: the key is left out (the plugin gets an empty configuration, as in Istio).
  // Otherwise a copy, so the frozen config never aliases (or freezes) the caller's documents.
  if (spec.pluginConfig === undefined) return binding as FilterBinding;
  return { ...binding, pluginConfig: structuredClone(spec.pluginConfig) };
}

export interface PluginInput {
  readonly plugin: WasmPlugin;
  readonly source?: DocumentSource;
}

/** A WasmPlugin of type NETWORK: an L4 filter for the TCP proxy, never an HTTP filter. */
export function isNetworkPlugin(plugin: WasmPlugin): boolean {
  return plugin.spec.type === 'NETWORK';
}

/**
 * Inbound and outbound filter chains for the workload, each in execution order: the HTTP plugins
 * (`network` false, the default) or the NETWORK plugins (`network` true), never both in one chain.
 */
export function selectFilters(
  plugins: readonly PluginInput[],
  workload: WorkloadIdentity,
  options: FilterOptions,
  network = false,
): { inbound: FilterBinding[]; outbound: FilterBinding[] } {
  const inbound: FilterBinding[] = [];
  const outbound: FilterBinding[] = [];
  for (const { plugin, source } of plugins) {
    if (isNetworkPlugin(plugin) !== network) continue;
    if (!pluginSelects(plugin, workload)) continue;
    const sides = pluginSides(plugin);
    const binding = toBinding(plugin, source, options);
    if (sides.inbound) inbound.push(binding);
    if (sides.outbound) outbound.push(binding);
  }
  return { inbound: inbound.sort(compareBindings), outbound: outbound.sort(compareBindings) };
}
