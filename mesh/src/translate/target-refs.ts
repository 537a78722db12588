// targetRefs (Istio 1.22+ policy attachment) on RequestAuthentication, AuthorizationPolicy,
// RateLimitPolicy, WasmPlugin and Telemetry: which workloads a policy applies to when it names its
// targets instead of selecting workloads by label, and the checks validation makes.
//
// Istio's rules, and what wasmesh does with each kind of target:
//   - `selector` and `targetRefs` are mutually exclusive; a target lives in the policy's namespace.
//   - kind Gateway: Istio accepts Gateway API gateways (group gateway.networking.k8s.io), whose proxies
//     run in the Gateway's namespace. wasmesh has Istio's Gateway kind (group networking.istio.io)
//     and `wasmesh gateway` proxies, so a reference names one of those: the policy applies to the
//     gateway proxies the Gateway's selector picks, when they run in the policy's namespace (any
//     namespace for a policy in the root namespace). The namespace condition keeps Istio's
//     "same namespace" boundary: a namespace's Gateway may select a shared gateway proxy elsewhere,
//     but its policies (and its WasmPlugins, which see every request) do not follow it there.
//   - kind Service: Istio applies such policies to waypoint proxies only, never to sidecars (they are
//     ignored by sidecars). wasmesh runs no waypoints, so the reference is refused instead of being
//     accepted and doing nothing; use selector for the Service's workloads.
//   - GatewayClass, ServiceEntry: not supported (refused).
// Sidecars never get a policy with targetRefs, whatever the references say.

import type { WorkloadIdentity } from '../proxy-config.ts';
import { ROOT_NAMESPACE, namespaceOf, type ConfigDocument, type Gateway, type Metadata } from '../documents.ts';
import { labelsMatch } from './clusters.ts';
import { selectGateways } from './gateways.ts';

export interface PolicyTargetRef {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

/** The API group of the Gateway kind wasmesh has (Istio's networking Gateway). */
export const GATEWAY_GROUP = 'networking.istio.io';
const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';

interface Targeting {
  metadata: Metadata;
  spec: { selector?: { matchLabels?: Readonly<Record<string, string>> }; targetRefs?: readonly PolicyTargetRef[] };
}

export function hasTargetRefs(policy: { spec?: { targetRefs?: readonly unknown[] } }): boolean {
  return Array.isArray(policy.spec?.targetRefs) && policy.spec!.targetRefs!.length > 0;
}

/**
 * Whether a policy (selector or targetRefs, Istio's namespace rules) applies to a workload.
 * `gateways`: the Gateways that configure the workload (selectGateways: none for a sidecar).
 */
export function policyApplies(policy: Targeting, workload: WorkloadIdentity, gateways: readonly Gateway[]): boolean {
  const ns = namespaceOf(policy);
  if (ns !== workload.namespace && ns !== ROOT_NAMESPACE) return false;
  if (!hasTargetRefs(policy)) return labelsMatch(policy.spec.selector?.matchLabels, workload.labels);
  return policy.spec.targetRefs!.some(
    (ref) => ref.kind === 'Gateway' && (ref.group ?? '') === GATEWAY_GROUP && (ref.namespace ?? ns) === ns && gateways.some((g) => namespaceOf(g) === ns && g.metadata.name === ref.name),
  );
}

/** A policy selector for one workload: the Gateways that configure it are looked up once. */
export function policySelector(documents: readonly ConfigDocument[], workload: WorkloadIdentity): (policy: Targeting) => boolean {
  let gateways: Gateway[] | undefined;
  return (policy) => {
    if (hasTargetRefs(policy)) gateways ??= selectGateways(documents, workload);
    return policyApplies(policy, workload, gateways ?? []);
  };
}

type Report = (path: string, message: string) => void;

/**
 * The checks of `targetRefs` a schema cannot make, for a document of `kind` that passed its schema:
 * not with selector, the policy's namespace, supported kinds and groups, and Gateways that exist
 * among `documents` (the set being validated).
 */
export function checkTargetRefs(kind: string, policy: Targeting, documents: readonly ConfigDocument[], report: Report): void {
  const refs = policy.spec.targetRefs;
  if (refs === undefined || refs.length === 0) return;
  const ns = namespaceOf(policy);
  if (policy.spec.selector !== undefined) {
    report('/spec/targetRefs', `selector and targetRefs are mutually exclusive (Istio allows at most one): select workloads by label or name the ${kind}'s targets, not both`);
  }
  const gateways = new Set<string>();
  for (const doc of documents) {
    const v = doc.value as Gateway;
    if (v && typeof v === 'object' && v.kind === 'Gateway' && v.metadata && typeof v.spec === 'object' && v.spec !== null) gateways.add(`${namespaceOf(v)}/${v.metadata.name}`);
  }
  refs.forEach((ref, i) => {
    const at = `/spec/targetRefs/${i}`;
    if (ref.namespace !== undefined && ref.namespace !== ns) {
      report(`${at}/namespace`, `a target must be in the ${kind}'s own namespace ${JSON.stringify(ns)} (got ${JSON.stringify(ref.namespace)})`);
      return;
    }
    const group = ref.group ?? '';
    switch (ref.kind) {
      case 'Gateway': {
        if (group === GATEWAY_API_GROUP) {
          report(`${at}/group`, `wasmesh has Istio Gateways (group ${GATEWAY_GROUP}, served by \`wasmesh gateway\`), not Gateway API ones: use group ${GATEWAY_GROUP}`);
          return;
        }
        if (group !== GATEWAY_GROUP) {
          report(`${at}/group`, `a Gateway is in group ${GATEWAY_GROUP} (got ${JSON.stringify(group)})`);
          return;
        }
        if (!gateways.has(`${ns}/${ref.name}`)) {
          const here = [...gateways].filter((g) => g.startsWith(`${ns}/`)).map((g) => g.slice(ns.length + 1)).sort();
          report(`${at}/name`, `no Gateway ${JSON.stringify(ref.name)} in namespace ${JSON.stringify(ns)}${here.length > 0 ? ` (Gateways there: ${here.join(', ')})` : ''}`);
        }
        return;
      }
      case 'Service':
        report(
          `${at}/kind`,
          'Istio applies a policy that targets a Service to waypoint proxies only, never to sidecars, and wasmesh runs no waypoints: select the Service\'s workloads with selector instead',
        );
        return;
      case 'GatewayClass':
      case 'ServiceEntry':
        report(`${at}/kind`, `targetRefs to a ${ref.kind} are not supported: wasmesh attaches policies to Gateways (group ${GATEWAY_GROUP}) only`);
        return;
      default:
        report(`${at}/kind`, `unsupported kind ${JSON.stringify(ref.kind)}: a policy can target a Gateway (group ${GATEWAY_GROUP})`);
    }
  });
}
