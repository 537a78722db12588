// Which workloads a store change can affect: the rule the snapshot cache uses to skip
// re-translating the others. It mirrors what translation reads (mesh/src/translate/: proxy-config.ts
// meshView, filters.ts pluginSelects, builtin-filters.ts selectAuthorizationPolicies, clusters.ts
// endpoints) and errs on the side of "affected": a kind it does not know, or a document it cannot read,
// affects every workload.
//
//   ServiceEntry, VirtualService      exported to the workload's namespace (exportTo)
//   DestinationRule                   exported, and its workloadSelector (if any: same namespace) matches
//   WasmPlugin, AuthorizationPolicy,  in the workload's namespace or the root namespace, and its
//   RateLimitPolicy                   selector (absent = all) matches the workload's labels
//   PeerAuthentication                every workload: clients read it too (auto mTLS is off to
//                                     endpoints whose policy is DISABLE), as Istio pushes it to all
//   TLSSecret                         gateway proxies of its namespace (the only ones that read it)
//   WorkloadEntry                     a ServiceEntry in its namespace (before or after the change)
//                                     selects its labels and is exported to the workload's namespace
//
// Both the old and the new version of a changed resource are checked (a selector that moves from
// one workload to another affects both). Resources are compared without the fields translation
// never reads (resourceVersion, generation, creationTimestamp, and the auto-registration
// connection annotation, which changes on every proxy reconnect).

import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { ROOT_NAMESPACE } from '../../../mesh/src/documents.ts';
import { isExportedTo, labelsMatch } from '../../../mesh/src/translate/clusters.ts';
import { canonicalJson } from '../../../mesh/src/translate/version.ts';
import { GATEWAY_ROLE, GATEWAY_ROLE_LABEL } from '../../../mesh/src/translate/gateway-labels.ts';

/** Auto-registration's "which stream holds this WorkloadEntry" (xds/registration.ts). */
export const CONNECTION_ANNOTATION = 'wasmesh.io/connection';

/** Annotations that change without changing what translation produces (translation reads no annotation). */
export const VOLATILE_ANNOTATIONS: readonly string[] = [CONNECTION_ANNOTATION];

type Labels = Record<string, string>;

interface RawResource {
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown; labels?: unknown; annotations?: unknown };
  spec?: Record<string, unknown>;
}

export interface IndexedResource {
  readonly resource: RawResource;
  /** Canonical JSON of what translation may read. */
  readonly fingerprint: string;
}

/** Resources by "<kind>/<namespace>/<name>", with their fingerprints. */
export type ResourceIndex = ReadonlyMap<string, IndexedResource>;

export type WorkloadPredicate = (workload: WorkloadIdentity) => boolean;

const all: WorkloadPredicate = () => true;
const none: WorkloadPredicate = () => false;

function namespaceOf(r: RawResource): string {
  const ns = r.metadata?.namespace;
  return typeof ns === 'string' && ns !== '' ? ns : 'default';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function indexResources(resources: readonly unknown[]): ResourceIndex {
  const index = new Map<string, IndexedResource>();
  for (const value of resources) {
    const r = (isObject(value) ? value : {}) as RawResource;
    const name = typeof r.metadata?.name === 'string' ? r.metadata.name : '';
    const key = `${String(r.kind)}/${namespaceOf(r)}/${name}`;
    let annotations: Record<string, unknown> | undefined;
    if (isObject(r.metadata?.annotations)) {
      annotations = { ...r.metadata.annotations };
      for (const a of VOLATILE_ANNOTATIONS) delete annotations[a];
      if (Object.keys(annotations).length === 0) annotations = undefined;
    }
    const fingerprint = canonicalJson({
      apiVersion: (value as { apiVersion?: unknown }).apiVersion,
      kind: r.kind,
      name,
      namespace: namespaceOf(r),
      labels: r.metadata?.labels,
      annotations,
      spec: r.spec,
    });
    index.set(key, { resource: r, fingerprint });
  }
  return index;
}

/** The resources added, changed (as translation sees them) or removed between two indexes. */
export function changedResources(before: ResourceIndex, after: ResourceIndex): { before?: RawResource; after?: RawResource }[] {
  const out: { before?: RawResource; after?: RawResource }[] = [];
  for (const [key, b] of before) {
    const a = after.get(key);
    if (!a) out.push({ before: b.resource });
    else if (a.fingerprint !== b.fingerprint) out.push({ before: b.resource, after: a.resource });
  }
  for (const [key, a] of after) if (!before.has(key)) out.push({ after: a.resource });
  return out;
}

function exportTo(r: RawResource): string[] | undefined {
  const e = r.spec?.exportTo;
  return Array.isArray(e) ? (e as string[]) : undefined;
}

function selectorLabels(selector: unknown, field: 'matchLabels' | 'labels'): Labels | undefined {
  if (!isObject(selector)) return undefined;
  const labels = selector[field];
  return isObject(labels) ? (labels as Labels) : undefined;
}

/** The workloads one version of a resource can affect. */
function scopeOf(r: RawResource, serviceEntries: readonly RawResource[]): WorkloadPredicate {
  if (!isObject(r.spec)) return all;
  const ns = namespaceOf(r);
  switch (r.kind) {
    case 'ServiceEntry':
    case 'VirtualService': {
      const to = exportTo(r);
      return (w) => isExportedTo(to, ns, w.namespace);
    }
    case 'DestinationRule': {
      const to = exportTo(r);
      const selector = r.spec.workloadSelector;
      if (selector === undefined) return (w) => isExportedTo(to, ns, w.namespace);
      const labels = selectorLabels(selector, 'matchLabels');
      return (w) => isExportedTo(to, ns, w.namespace) && ns === w.namespace && labelsMatch(labels, w.labels);
    }
    case 'TLSSecret':
      // Only gateway proxies of its namespace read it (credentialName, mesh/src/tls-secret.ts).
      return (w) => w.namespace === ns && w.labels[GATEWAY_ROLE_LABEL] === GATEWAY_ROLE;
    case 'PeerAuthentication':
    case 'MeshConfig':
    case 'Telemetry':
      return all;
    case 'WasmPlugin':
    case 'AuthorizationPolicy':
    case 'RequestAuthentication':
    case 'RateLimitPolicy': {
      const selector = r.spec.selector;
      if (selector !== undefined && !isObject(selector)) return all;
      const labels = selectorLabels(selector, 'matchLabels');
      return (w) => (ns === w.namespace || ns === ROOT_NAMESPACE) && labelsMatch(labels, w.labels);
    }
    case 'WorkloadEntry': {
      const labels = isObject(r.spec.labels) ? (r.spec.labels as Labels) : {};
      const selecting = serviceEntries.filter((se) => {
        if (namespaceOf(se) !== ns || !isObject(se.spec)) return false;
        const selector = se.spec.workloadSelector;
        if (selector === undefined) return false;
        const sel = selectorLabels(selector, 'labels');
        return sel === undefined || labelsMatch(sel, labels);
      });
      if (selecting.length === 0) return none;
      return (w) => selecting.some((se) => isExportedTo(exportTo(se), ns, w.namespace));
    }
    default:
      return all;
  }
}

/**
 * The workloads a set of changes can affect. `before` and `after` are the whole store before and
 * after them (WorkloadEntries are looked up against the ServiceEntries of both).
 */
export function changeScope(before: ResourceIndex, after: ResourceIndex): { changes: number; affects: WorkloadPredicate } {
  const changes = changedResources(before, after);
  if (changes.length === 0) return { changes: 0, affects: none };
  const serviceEntries: RawResource[] = [];
  if (changes.some((c) => (c.before ?? c.after)?.kind === 'WorkloadEntry')) {
    for (const index of [before, after]) for (const { resource } of index.values()) if (resource.kind === 'ServiceEntry') serviceEntries.push(resource);
  }
  const predicates: WorkloadPredicate[] = [];
  for (const c of changes) {
    for (const r of [c.before, c.after]) {
      if (!r) continue;
      let p: WorkloadPredicate;
      try {
        p = scopeOf(r, serviceEntries);
      } catch {
        p = all;
      }
      if (p === all) return { changes: changes.length, affects: all };
      if (p !== none) predicates.push(p);
    }
  }
  return {
    changes: changes.length,
    affects: (w) => {
      for (const p of predicates) {
        try {
          if (p(w)) return true;
        } catch {
          return true;
        }
      }
      return false;
    },
  };
}
