// The mesh's own filters, derived from the user's documents (what Istio did with Mixer and native
// Envoy filters): AuthorizationPolicy -> filters/policy on the inbound side, VirtualService `fault`
// -> filters/fault on the outbound side, and filters/telemetry on both sides, on by default.
//
// Where they sit in each chain: telemetry first, so it sees every answer (including a policy 403 or
// a fault abort, which travel back only through the filters before the one that answered); policy
// after the AUTHZ-phase WasmPlugins (Istio's RBAC position); fault last, just before the router.
import type { FilterBinding, WorkloadIdentity } from '../proxy-config.ts';
import { ROOT_NAMESPACE, namespaceOf, type AuthorizationPolicy, type ConfigDocument, type VirtualService } from '../documents.ts';
import { labelsMatch } from './clusters.ts';
import { faultFilterConfig } from './fault-filter.ts';
import { policyFilterConfig } from './policy-filter.ts';
import { rateLimitFilterConfig, selectRateLimitPolicies } from './ratelimit.ts';
import { installPath } from '../../../schemas/repo-files.ts';

export interface BuiltinFilterOptions {
  /** Istio's telemetry is on for every sidecar unless turned off. */
  telemetry?: boolean;
  /** Where built filter modules live; default: this checkout's filters/ folder. */
  filtersDir?: string;
}

const DEFAULT_FILTERS_DIR = installPath('filters') + '/';

function builtin(name: string, dir: string, workload: WorkloadIdentity, phase: FilterBinding['phase'], pluginConfig: unknown): FilterBinding {
  const path = `${dir.endsWith('/') ? dir : `${dir}/`}${name}/build/${name}.wasm`;
  return {
    name: `wasmesh-${name}`,
    namespace: workload.namespace,
    phase,
    priority: 0,
    url: `file://${path}`,
    path,
    rootId: name,
    vmId: `wasmesh.${name}`,
    pluginConfig,
    // Policy fails closed (a broken authorizer must not let traffic through); the others fail open.
    failStrategy: name === 'policy' ? 'FAIL_CLOSE' : 'FAIL_OPEN',
    env: {},
  };
}

/** AuthorizationPolicies that apply to the workload: its namespace (selector matching) or mesh-wide. */
export function selectAuthorizationPolicies(documents: readonly ConfigDocument[], workload: WorkloadIdentity): AuthorizationPolicy[] {
  const out: AuthorizationPolicy[] = [];
  for (const doc of documents) {
    const v = doc.value as AuthorizationPolicy;
    if (!v || v.kind !== 'AuthorizationPolicy') continue;
    const ns = namespaceOf(v);
    if (ns !== workload.namespace && ns !== ROOT_NAMESPACE) continue;
    if (!labelsMatch(v.spec?.selector?.matchLabels, workload.labels)) continue;
    out.push(v);
  }
  // Ordinal, not localeCompare: the order (and the config version hashed from it) must not depend on
  // the locale, and comparing through ICU costs a sidecar megabytes of its data.
  return out.sort((a, b) => ordinal(`${namespaceOf(a)}/${a.metadata.name}`, `${namespaceOf(b)}/${b.metadata.name}`));
}

/** Adds the built-in filters to the WasmPlugin chains (which are already in execution order). */
export function withBuiltinFilters(
  chains: { inbound: FilterBinding[]; outbound: FilterBinding[] },
  documents: readonly ConfigDocument[],
  virtualServices: readonly VirtualService[],
  workload: WorkloadIdentity,
  options: BuiltinFilterOptions = {},
  /** Where the rate-limit service's cluster is created (RateLimitPolicy global limits). */
  clusters?: { ensure(host: string, port: number): string },
): { inbound: FilterBinding[]; outbound: FilterBinding[] } {
  const dir = options.filtersDir ?? DEFAULT_FILTERS_DIR;
  const inbound = [...chains.inbound];
  const outbound = [...chains.outbound];
  const policies = selectAuthorizationPolicies(documents, workload);
  const limits = rateLimitFilterConfig(selectRateLimitPolicies(documents, workload), (host, port) => clusters?.ensure(host, port) ?? `outbound|${port}||${host}`);
  if (policies.length > 0 || limits.rateLimits.length > 0 || limits.globalRateLimit) {
    // After AUTHN and AUTHZ phase plugins, before STATS and unspecified ones.
    const at = inbound.findIndex((b) => b.phase === 'STATS' || b.phase === 'UNSPECIFIED_PHASE');
    const binding = builtin('policy', dir, workload, 'AUTHZ', { ...policyFilterConfig(policies, limits.rateLimits), ...(limits.globalRateLimit ? { globalRateLimit: limits.globalRateLimit } : {}) });
    inbound.splice(at < 0 ? inbound.length : at, 0, binding);
  }
  const fault = faultFilterConfig(virtualServices, { namespace: workload.namespace, labels: workload.labels });
  if (fault.rules.length > 0) outbound.push(builtin('fault', dir, workload, 'UNSPECIFIED_PHASE', fault));
  if (options.telemetry !== false) {
    // The proxy writes its own access log line per request; the filter's record (with workload labels
    // and the trace id) doubles its cost, so it is opt-in: a WasmPlugin with accessLog: true.
    const config = { metrics: true, accessLog: false };
    inbound.unshift(builtin('telemetry', dir, workload, 'STATS', config));
    outbound.unshift(builtin('telemetry', dir, workload, 'STATS', config));
  }
  return { inbound, outbound };
}

function ordinal(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
