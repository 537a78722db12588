// One proxy's snapshot: its translated ProxyConfig, checked for consistency, wrapped as the
// resources of the wire protocol. Immutable once built; its version is the config's content hash.
//
// Resource model (see schemas/proto/wasmesh/discovery/v1/discovery.proto): a single resource of type
// type.wasmesh.io/ProxyConfig per workload, holding the whole config. Per-type resources sent as
// diffs are a later step.

import { MODULE_URL } from '../../../mesh/src/validate.ts';
import { allFilterBindings, type FilterBinding, type ProxyConfig, type WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { PROXY_CONFIG_TYPE_URL } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { formatResource, fromObjects, isRecord, resourceRef, type ConfigDocument } from '../../../mesh/src/documents.ts';
import { denyAllStandIn, selectAuthorizationPolicies } from '../../../mesh/src/translate/builtin-filters.ts';
import { meshView, translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import { failSafeDocuments, type LeftOut } from '../../../mesh/src/translate/resource-problems.ts';
import { canonicalJson, contentVersion } from '../../../mesh/src/translate/version.ts';
import type { BuiltinModules } from './builtin-modules.ts';

export interface SnapshotResource {
  readonly name: string;
  readonly version: string;
  /** JSON of the resource, as sent. */
  readonly body: Buffer;
}

export interface ProxySnapshot {
  /** Content hash of the config; a snapshot with the same version is the same config. */
  readonly version: string;
  readonly typeUrl: string;
  readonly config: ProxyConfig;
  readonly resources: readonly SnapshotResource[];
  /** sha256 (hex) of every module the config's filters use. */
  readonly modules: readonly string[];
}

/** Part of a resource a workload's config does not carry as written (left out, or stood in for), and why. */
export type ConfigProblem = LeftOut;

export type SnapshotResult =
  | { ok: true; snapshot: ProxySnapshot; problems: readonly ConfigProblem[] }
  | { ok: false; errors: string[]; problems: readonly ConfigProblem[] };

/** The modules a snapshot may reference: uploaded to the store, or the mesh's built-in filters. */
export interface ModuleIndex {
  /** sha256 (hex) of every module in the store. */
  readonly stored: ReadonlySet<string>;
  readonly builtins: BuiltinModules;
}

export interface SnapshotOptions {
  /** The built-in telemetry filter on both sides (default true, as in Istio). */
  readonly telemetry?: boolean;
}

/** `digest:sha256:<hex>` or `sha256:<hex>`: a module uploaded to the orchestrator. */
const DIGEST_URL = /^(?:digest:)?sha256:([A-Fa-f0-9]{64})$/;

/** The canonical url of an uploaded module, as managed proxies receive it. */
export function digestUrl(sha256: string): string {
  return `digest:sha256:${sha256.toLowerCase()}`;
}

/** The module digest a binding url names, or undefined when it is not a digest url. */
export function digestOf(url: string): string | undefined {
  return DIGEST_URL.exec(url)?.[1]?.toLowerCase();
}

/** The resource name of a workload's config: "<namespace>/<name>". */
export function resourceName(workload: Pick<WorkloadIdentity, 'name' | 'namespace'>): string {
  return `${workload.namespace}/${workload.name}`;
}

/** A stable key for a workload identity: proxies with equal identities share one snapshot. */
export function workloadKey(workload: WorkloadIdentity): string {
  return canonicalJson([workload.namespace, workload.name, workload.serviceAccount, workload.labels]);
}

/**
 * Store resources as documents for translation, with WasmPlugin module urls (by digest, or by
 * name@version) made canonical
 * (`digest:sha256:<lowercase hex>`, and `sha256` set to the same digest) so that every proxy sees one
 * spelling and the content version does not depend on how the user wrote it.
 */
export function managedDocuments(resources: readonly unknown[], modules: readonly { name: string; version: string; sha256: string }[] = []): ConfigDocument[] {
  const byName = new Map(modules.map((m) => [`${m.name}@${m.version}`, m.sha256]));
  const normalized = resources.map((r) => {
    if (!isRecord(r) || r.kind !== 'WasmPlugin' || !isRecord(r.spec) || typeof r.spec.url !== 'string') return r;
    // module://<name>@<version> resolves to the digest of that upload (left as is when unknown: the
    // consistency check then holds the snapshot back until the module is uploaded).
    const resolve = (url: string): string | undefined => {
      const named = MODULE_URL.exec(url);
      return named ? byName.get(`${named[1]}@${named[2]}`) : digestOf(url);
    };
    const sha = resolve(r.spec.url);
    if (sha === undefined) return r;
    const spec: Record<string, unknown> = { ...r.spec, url: digestUrl(sha), sha256: sha };
    const canary = r.spec.canary;
    if (isRecord(canary) && typeof canary.url === 'string') {
      const canarySha = resolve(canary.url);
      if (canarySha !== undefined) spec.canary = { ...canary, url: digestUrl(canarySha), sha256: canarySha };
    }
    return { ...r, spec };
  });
  return fromObjects(normalized, '<store>');
}

/**
 * The consistency check run before a snapshot is set: every route's clusters exist in the config,
 * and every filter binding names a module (by digest) the orchestrator can serve: one in the store,
 * or a built-in filter. Returns the problems; empty means consistent.
 */
export function checkConsistency(config: ProxyConfig, modules: ReadonlySet<string>): string[] {
  const errors: string[] = [];
  for (const vh of config.virtualHosts) {
    for (const route of vh.routes) {
      if (route.action.kind !== 'forward') continue;
      for (const d of route.action.destinations) {
        if (!Object.hasOwn(config.clusters, d.cluster)) errors.push(`route ${route.name}: cluster ${d.cluster} does not exist`);
      }
    }
  }
  const seen = new Set<string>();
  for (const b of allFilterBindings(config)) {
    const id = `WasmPlugin ${b.namespace}/${b.name}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const sha = digestOf(b.url);
    if (sha === undefined) {
      errors.push(`${id}: module url ${JSON.stringify(b.url)} is not an orchestrator digest; managed proxies load modules uploaded with \`wasmesh filter deploy\` (digest:sha256:<hex>)`);
    } else if (!modules.has(sha)) {
      errors.push(`${id}: module sha256:${sha} is not in the store (upload it with \`wasmesh filter deploy\`)`);
    }
    if (b.canary === undefined) continue;
    const canarySha = digestOf(b.canary.url);
    if (canarySha === undefined) errors.push(`${id}: canary url ${JSON.stringify(b.canary.url)} is not an orchestrator digest`);
    else if (!modules.has(canarySha)) errors.push(`${id}: canary module sha256:${canarySha} is not in the store`);
  }
  return errors;
}

/**
 * Translates and checks one workload's config; never throws. One resource the config cannot carry
 * as written never holds the rest back: it is left out or stood in for, failing safe, and named in
 * `problems` (see failSafeDocuments and shipBindings). `ok: false` only when no safe config exists
 * (the policy filter's module cannot be read, translation itself failed, a route to no cluster).
 */
export function buildSnapshot(documents: readonly ConfigDocument[], workload: WorkloadIdentity, modules: ModuleIndex, options: SnapshotOptions = {}): SnapshotResult {
  const safe = failSafeDocuments(documents);
  const problems: ConfigProblem[] = safe.leftOut.filter((p) => concerns(documents, p.resource, workload));
  let translated: ProxyConfig;
  try {
    // The orchestrator cannot see the proxy's environment: vmConfig.env entries with valueFrom HOST
    // are left out (hostEnv empty).
    translated = translateProxyConfig(safe.documents, workload, { hostEnv: {}, filtersDir: modules.builtins.dir, telemetry: options.telemetry });
  } catch (err) {
    return { ok: false, errors: [`translation failed: ${err instanceof Error ? err.message : String(err)}`], problems };
  }
  const { version: _version, ...body } = translated;
  const shipped = shipBindings(body, modules, problems);
  const errors = [...shipped.errors];
  const config: ProxyConfig = deepFreeze({ version: contentVersion(shipped.body), ...shipped.body });
  errors.push(...checkConsistency(config, shipped.available));
  if (errors.length > 0) return { ok: false, errors, problems };
  const digests = new Set<string>();
  for (const b of allFilterBindings(config)) {
    digests.add(digestOf(b.url)!);
    if (b.canary !== undefined) digests.add(digestOf(b.canary.url)!);
  }
  const json = Buffer.from(JSON.stringify(config));
  return {
    ok: true,
    problems,
    snapshot: Object.freeze({
      version: config.version,
      typeUrl: PROXY_CONFIG_TYPE_URL,
      config,
      resources: Object.freeze([Object.freeze({ name: resourceName(config.workload), version: config.version, body: json })]),
      modules: Object.freeze([...digests].sort()),
    }),
  };
}

/** Whether a left-out resource is one this workload's config is made from (problems are listed per proxy). */
function concerns(documents: readonly ConfigDocument[], resource: string, workload: WorkloadIdentity): boolean {
  const doc = documents.find((d) => {
    const ref = resourceRef(d.value);
    return ref !== undefined && formatResource(ref) === resource;
  });
  if (!doc) return true;
  const value = doc.value as { kind?: unknown };
  // All the documents: a policy with targetRefs needs the Gateways it names.
  if (value.kind === 'AuthorizationPolicy') return selectAuthorizationPolicies(documents, workload).includes(doc.value as never);
  if (value.kind === 'VirtualService') return meshView([doc], workload).virtualServices.length > 0;
  return true;
}

/**
 * Makes every filter binding something a managed proxy can load, by digest. The built-in filters,
 * bound by path on the orchestrator's disk, are served by digest instead. A WasmPlugin whose module
 * the orchestrator cannot serve (a file:// url, a module not in the store) follows its failStrategy,
 * as Istio's agent does when a module cannot be fetched: FAIL_OPEN leaves it out, FAIL_CLOSE and
 * FAIL_RELOAD put a filter that denies every request in its place (denyAllStandIn). A canary that
 * cannot be served is left out (the plugin's own module serves every stream). Each is recorded in
 * `problems`; what cannot be made safe (the policy module itself unreadable) is an error.
 */
function shipBindings(
  body: Omit<ProxyConfig, 'version'>,
  modules: ModuleIndex,
  problems: ConfigProblem[],
): { body: Omit<ProxyConfig, 'version'>; available: Set<string>; errors: string[] } {
  const errors: string[] = [];
  const available = new Set(modules.stored);
  const note = (p: ConfigProblem): void => {
    if (!problems.some((q) => q.resource === p.resource && q.path === p.path && q.message === p.message)) problems.push(p);
  };
  const servable = (url: string): string | undefined => {
    const sha = digestOf(url);
    if (sha !== undefined) return available.has(sha) ? undefined : `module sha256:${sha} is not in the store (upload it with \`wasmesh filter deploy\`)`;
    const named = MODULE_URL.exec(url);
    if (named) return `module ${named[1]}@${named[2]} has not been uploaded (upload it with \`wasmesh filter deploy\`)`;
    if (url.startsWith('file://')) {
      return `${JSON.stringify(url)} is a file, and managed proxies load modules from the orchestrator only: upload it (\`wasmesh filter deploy <module.wasm> --name NAME --version VERSION\`) and use url module://NAME@VERSION`;
    }
    return `${JSON.stringify(url)} is not a module uploaded to the orchestrator`;
  };
  const builtin = (b: FilterBinding, standingInFor?: string): FilterBinding | undefined => {
    let sha: string;
    try {
      sha = modules.builtins.digest(b.path!);
    } catch (err) {
      const why = `cannot read ${b.path} (build the filters: npm run build:filters): ${err instanceof Error ? err.message : String(err)}`;
      if (standingInFor !== undefined) errors.push(`${standingInFor}: its module cannot be served and the filter that would deny its streams instead is missing: ${why}`);
      else if (b.failStrategy === 'FAIL_OPEN') {
        note({ resource: `built-in filter ${b.name}`, path: '', message: `${why}: left out (it fails open)` });
        return undefined;
      } else errors.push(`built-in filter ${b.name}: ${why}`);
      return b;
    }
    available.add(sha);
    const { path: _path, ...rest } = b;
    return { ...rest, url: digestUrl(sha), sha256: sha };
  };
  const ship = (b: FilterBinding): FilterBinding | undefined => {
    if (b.path !== undefined && b.url.startsWith('file://') && modules.builtins.owns(b.path)) return builtin(b);
    const resource = `WasmPlugin ${b.namespace}/${b.name}`;
    const why = servable(b.url);
    if (why !== undefined) {
      if (b.failStrategy === 'FAIL_OPEN') {
        note({ resource, path: '/spec/url', message: `${why}: left out (failStrategy FAIL_OPEN: its streams pass without it)` });
        return undefined;
      }
      note({ resource, path: '/spec/url', message: `${why}: every request it would filter is denied (403) until it can be loaded (failStrategy ${b.failStrategy})` });
      return builtin(denyAllStandIn(b, modules.builtins.dir), resource);
    }
    if (b.canary !== undefined) {
      const canaryWhy = servable(b.canary.url);
      if (canaryWhy !== undefined) {
        note({ resource, path: '/spec/canary/url', message: `${canaryWhy}: the canary is left out (the plugin's module serves every stream)` });
        const { canary: _canary, ...rest } = b;
        return rest;
      }
    }
    return b;
  };
  const chain = (list: readonly FilterBinding[]): FilterBinding[] => list.flatMap((b) => ship(b) ?? []);
  // A NETWORK plugin whose module cannot be served: FAIL_OPEN leaves it out as above; FAIL_CLOSE has
  // no stand-in (the deny-all filter is an HTTP filter), so the config is refused (the proxies keep theirs).
  const network = body.networkFilters;
  const shipNetwork = (list: readonly FilterBinding[]): FilterBinding[] =>
    list.flatMap((b) => {
      // The mesh's own network filters (the policy filter on TCP) are served like the HTTP built-ins.
      const own = b.path !== undefined && b.url.startsWith('file://') && modules.builtins.owns(b.path);
      const why = b.failStrategy === 'FAIL_OPEN' || own ? undefined : servable(b.url);
      if (why !== undefined) {
        errors.push(`WasmPlugin ${b.namespace}/${b.name} (type NETWORK): ${why}; a NETWORK plugin that fails closed has no stand-in, so this config is not sent`);
        return [b];
      }
      return ship(b) ?? [];
    });
  const networkFilters = network ? { inbound: shipNetwork(network.inbound), outbound: shipNetwork(network.outbound) } : undefined;
  return {
    body: { ...body, inboundFilters: chain(body.inboundFilters), outboundFilters: chain(body.outboundFilters), ...(networkFilters ? { networkFilters } : {}) },
    available,
    errors,
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
