// What the proxy reports about its filters (admin /filters, and the orchestrator's rollout controller):
// for each position of each chain, the module version(s) serving it and how their streams ended.
import type { FilterVersionStatsMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { CanaryPair, type FilterChain, type FilterPlugin } from './chain.ts';

export interface ModuleVersionStatus {
  /** sha256 of the module, hex. */
  sha256: string;
  state: 'running' | 'failed' | 'stopped';
  /** Failed BAD_AFTER_CONSECUTIVE_FAILURES times in a row. */
  bad: boolean;
  /** VM failures since this version was loaded. */
  traps: number;
  /** Streams finished through this version, and those that ended in a 5xx or a reset. */
  streams: number;
  failedStreams: number;
  activeStreams: number;
  lastFailure?: string;
  /** 'component' for a wasmesh:filter component (absent: a proxy-wasm core module). */
  kind?: 'component';
  /** How the module was made, from its producers section (absent fields: the module does not say). */
  producers?: { language?: string; processedBy?: string; sdk?: string };
  /** A pool of more than one VM (spec.vms): its size and how many are live now. */
  vms?: { size: number; live: number };
}

export interface FilterStatus {
  direction: 'inbound' | 'outbound';
  /** `namespace.name` of the WasmPlugin (its plugin name in logs and metrics). */
  plugin: string;
  /** `namespace/name`, for canaried filters. */
  id?: string;
  stable: ModuleVersionStatus;
  /** During a canary rollout: the new version and its share of streams (0..100). */
  canary?: ModuleVersionStatus & { weight: number };
}

export function versionStatus(p: FilterPlugin): ModuleVersionStatus {
  return {
    sha256: p.compiled.sha256,
    state: p.state,
    bad: p.bad,
    traps: p.trapCount,
    streams: p.streamsFinished,
    failedStreams: p.streamsFailed,
    activeStreams: p.activeStreams,
    ...(p.lastFailure ? { lastFailure: p.lastFailure } : {}),
    ...(p.compiled.metadata.kind === 'component' ? { kind: 'component' as const } : {}),
    ...producersOf(p),
    ...poolOf(p),
  };
}

function poolOf(p: FilterPlugin): Pick<ModuleVersionStatus, 'vms'> {
  const pool = p.vms;
  if (pool === undefined || pool.length <= 1) return {};
  let live = 0;
  for (const vm of pool) if (!vm.failed) live++;
  return { vms: { size: pool.length, live } };
}

function producersOf(p: FilterPlugin): Pick<ModuleVersionStatus, 'producers'> {
  const { language, processedBy, sdk } = p.compiled.metadata;
  if (language === undefined && processedBy === undefined && sdk === undefined) return {};
  return { producers: { ...(language ? { language } : {}), ...(processedBy ? { processedBy } : {}), ...(sdk ? { sdk } : {}) } };
}

export function filterStatus(direction: FilterStatus['direction'], chain: FilterChain): FilterStatus[] {
  return chain.slots.map((slot) => {
    if (slot instanceof CanaryPair) {
      return { direction, plugin: slot.stable.settings.name, id: slot.id, stable: versionStatus(slot.stable), canary: { ...versionStatus(slot.canary), weight: slot.weight } };
    }
    return { direction, plugin: slot.settings.name, stable: versionStatus(slot) };
  });
}

/**
 * The canaried filters' versions, as reported to the orchestrator (each version once across both
 * chains). `stallsSince`: the process's event-loop stalls since that version was loaded.
 */
export function canaryReport(chains: readonly FilterChain[], stallsSince: (p: FilterPlugin) => number = () => 0): FilterVersionStatsMessage[] {
  const out: FilterVersionStatsMessage[] = [];
  const seen = new Set<FilterPlugin>();
  const add = (id: string, p: FilterPlugin, canary: boolean) => {
    if (seen.has(p)) return;
    seen.add(p);
    out.push({
      plugin: id,
      sha256: p.compiled.sha256,
      canary,
      streams: p.streamsFinished,
      failed_streams: p.streamsFailed,
      traps: p.trapCount,
      bad: p.bad,
      traps_by_cause: Object.fromEntries(p.trapsByCause),
      stalls: stallsSince(p),
    });
  };
  for (const chain of chains) {
    for (const slot of chain.slots) {
      if (!(slot instanceof CanaryPair)) continue;
      add(slot.id, slot.stable, false);
      add(slot.id, slot.canary, true);
    }
  }
  return out;
}
