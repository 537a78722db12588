// A WasmPlugin's deploy history: every module it has pointed at, when, by whom and why, kept by the
// orchestrator in an annotation of the resource itself (so it lives in whichever store holds the
// resource, and replicas share it). Written on every write that changes the module url, whatever the
// tool (REST PUT, apply, filter deploy, rollback, a finished rollout); the writer's
// `wasmesh.io/change-cause` annotation (kubectl's convention) says why.
import type { ModuleRecord, Resource, ResourceInput } from '../store/types.ts';

export const HISTORY_ANNOTATION = 'wasmesh.io/deploy-history';
export const CHANGE_CAUSE_ANNOTATION = 'wasmesh.io/change-cause';
/** The module name a plugin's versions are looked up under (default: the plugin's name). */
export const MODULE_ANNOTATION = 'wasmesh.io/module';
/** Entries kept; older ones drop off (the module versions themselves are kept in the store). */
export const HISTORY_LIMIT = 30;

export interface HistoryEntry {
  /** The module url as written (digest:sha256:<hex> or module://name@version). */
  url: string;
  at: string;
  /** `<role>:<token id>` of the writer. */
  by: string;
  cause?: string;
}

const DIGEST = /^(?:digest:)?sha256:([A-Fa-f0-9]{64})$/;
const NAMED = /^module:\/\/([A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9][A-Za-z0-9._+-]*)$/;

/** The history stored on a resource (empty when absent or unreadable). */
export function readHistory(resource: Pick<Resource, 'metadata'> | undefined): HistoryEntry[] {
  const raw = resource?.metadata.annotations?.[HISTORY_ANNOTATION];
  if (raw === undefined) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    return Array.isArray(parsed) ? parsed.filter((e): e is HistoryEntry => typeof e === 'object' && e !== null && typeof (e as HistoryEntry).url === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * The input as it is stored: for a WasmPlugin, the history is the stored one (clients cannot rewrite
 * it), plus an entry when the module url changed.
 */
export function withHistory(input: ResourceInput, existing: Resource | undefined, by: string, now = new Date()): ResourceInput {
  if (input.kind !== 'WasmPlugin') return input;
  const url = typeof input.spec.url === 'string' ? input.spec.url : undefined;
  const history = readHistory(existing);
  const annotations: Record<string, string> = { ...(input.metadata.annotations ?? {}) };
  const previousUrl = typeof existing?.spec.url === 'string' ? existing.spec.url : undefined;
  const changed = url !== undefined && (previousUrl === undefined || normalizeUrl(previousUrl) !== normalizeUrl(url));
  if (changed) {
    const cause = annotations[CHANGE_CAUSE_ANNOTATION];
    history.push({ url, at: now.toISOString(), by, ...(cause ? { cause } : {}) });
  }
  if (history.length === 0) {
    delete annotations[HISTORY_ANNOTATION];
  } else {
    annotations[HISTORY_ANNOTATION] = JSON.stringify(history.slice(-HISTORY_LIMIT));
  }
  return { ...input, metadata: { ...input.metadata, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) } };
}

function normalizeUrl(url: string): string {
  const d = DIGEST.exec(url);
  return d ? `sha256:${d[1]!.toLowerCase()}` : url;
}

/** The module version a url names, from the uploaded modules (preferring the plugin's module name). */
export function resolveVersion(url: string, modules: readonly ModuleRecord[], moduleName?: string): { sha256?: string; name?: string; version?: string } {
  const named = NAMED.exec(url);
  if (named) {
    const record = modules.find((m) => m.name === named[1] && m.version === named[2]);
    return { name: named[1], version: named[2], ...(record ? { sha256: record.sha256 } : {}) };
  }
  const sha = DIGEST.exec(url)?.[1]?.toLowerCase();
  if (sha === undefined) return {};
  const matches = modules.filter((m) => m.sha256 === sha);
  const record = matches.find((m) => m.name === moduleName) ?? matches[0];
  return { sha256: sha, ...(record ? { name: record.name, version: record.version } : {}) };
}

/** The module name of a plugin: its annotation, else the plugin's own name. */
export function moduleNameOf(resource: Pick<Resource, 'metadata'>): string {
  return resource.metadata.annotations?.[MODULE_ANNOTATION] ?? resource.metadata.name;
}
