// The mesh's own filters, derived from the user's documents (what Istio did with Mixer and native
// Envoy filters): AuthorizationPolicy -> filters/policy on the inbound side, RequestAuthentication ->
// filters/authn before it (request-authn.ts), VirtualService `fault`
// -> filters/fault on the outbound side, and filters/telemetry on both sides, on by default.
//
// Where they sit in each chain: telemetry first, so it sees every answer (including a policy 403 or
// a fault abort, which travel back only through the filters before the one that answered); policy
// after the AUTHZ-phase WasmPlugins (Istio's RBAC position); fault last, just before the router.
import type { FilterBinding, WorkloadIdentity } from '../proxy-config.ts';
import { namespaceOf, type AuthorizationPolicy, type ConfigDocument, type VirtualService } from '../documents.ts';
import type { ClusterTable } from './clusters.ts';
import { policySelector } from './target-refs.ts';
import { faultFilterConfig } from './fault-filter.ts';
import { policyFilterConfig, tcpPolicyFilterConfig, type PolicyFilterConfig } from './policy-filter.ts';
import { authnFilterConfig, selectRequestAuthentications } from './request-authn.ts';
import { rateLimitFilterConfig, selectRateLimitPolicies } from './ratelimit.ts';
import { installPath } from '../../../schemas/repo-files.ts';

export interface BuiltinFilterOptions {
  /** Istio's telemetry is on for every sidecar unless turned off. */
  telemetry?: boolean;
  /** Telemetry `metrics` overrides: false turns Istio's standard metrics off on that side (default on). */
  telemetryMetrics?: { inbound: boolean; outbound: boolean };
  /** Where built filter modules live; default: this checkout's filters/ folder. */
  filtersDir?: string;
}

const DEFAULT_FILTERS_DIR = installPath('filters') + '/';

/** Where a built-in filter's module is built: <filters dir>/<name>/build/<name>.wasm. */
export function builtinModulePath(name: 'telemetry' | 'policy' | 'fault' | 'authn', dir: string = DEFAULT_FILTERS_DIR): string {
  return `${dir.endsWith('/') ? dir : `${dir}/`}${name}/build/${name}.wasm`;
}

function builtin(name: 'telemetry' | 'policy' | 'fault' | 'authn', dir: string, workload: WorkloadIdentity, phase: FilterBinding['phase'], pluginConfig: unknown): FilterBinding {
  const path = builtinModulePath(name, dir);
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
    // Policy and authn fail closed (a broken authorizer must not let traffic through); the others fail open.
    failStrategy: name === 'policy' || name === 'authn' ? 'FAIL_CLOSE' : 'FAIL_OPEN',
    env: {},
  };
}

/**
 * What stands in for a FAIL_CLOSE WasmPlugin whose module cannot be had: the policy filter with one
 * DENY policy matching every request, at the plugin's place in the chain and under its name, so the
 * streams the plugin would have run on get 403 (details
 * `rbac_access_denied_matched_policy[<namespace>.wasm-default-deny]`) instead of passing unfiltered.
 * Istio's agent does the same with an RBAC filter (its stat prefix is `wasm-default-deny`).
 */
export function denyAllStandIn(plugin: FilterBinding, filtersDir: string = DEFAULT_FILTERS_DIR): FilterBinding {
  const path = builtinModulePath('policy', filtersDir);
  const pluginConfig: PolicyFilterConfig = { policies: [{ name: 'wasm-default-deny', namespace: plugin.namespace, action: 'DENY', rules: [{}] }] };
  return {
    name: plugin.name,
    namespace: plugin.namespace,
    phase: plugin.phase,
    priority: plugin.priority,
    url: `file://${path}`,
    path,
    rootId: 'policy',
    vmId: `wasmesh.unavailable.${plugin.namespace}.${plugin.name}`,
    pluginConfig,
    failStrategy: 'FAIL_CLOSE',
    env: {},
  };
}

/**
 * AuthorizationPolicies that apply to the workload: its namespace (selector matching) or mesh-wide,
 * and, on a gateway proxy, those whose targetRefs name a Gateway it serves (target-refs.ts).
 */
export function selectAuthorizationPolicies(documents: readonly ConfigDocument[], workload: WorkloadIdentity): AuthorizationPolicy[] {
  const out: AuthorizationPolicy[] = [];
  const applies = policySelector(documents, workload);
  for (const doc of documents) {
    const v = doc.value as AuthorizationPolicy;
    if (!v || v.kind !== 'AuthorizationPolicy' || !v.spec) continue;
    if (!applies(v)) continue;
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
  clusters?: ClusterTable,
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
  // RequestAuthentication: after AUTHN-phase plugins, before AUTHZ ones and policy (Istio's jwt_authn).
  const authn = clusters ? authnFilterConfig(selectRequestAuthentications(documents, workload), clusters) : undefined;
  if (authn !== undefined) {
    const at = inbound.findIndex((b) => b.phase !== 'AUTHN');
    inbound.splice(at < 0 ? inbound.length : at, 0, builtin('authn', dir, workload, 'AUTHN', authn));
  }
  const fault = faultFilterConfig(virtualServices, { namespace: workload.namespace, labels: workload.labels });
  if (fault.rules.length > 0) outbound.push(builtin('fault', dir, workload, 'UNSPECIFIED_PHASE', fault));
  if (options.telemetry !== false) {
    // The proxy writes its own access log line per request; the filter's record (with workload labels
    // and the trace id) doubles its cost, so it is opt-in: a WasmPlugin with accessLog: true.
    const metrics = options.telemetryMetrics ?? { inbound: true, outbound: true };
    inbound.unshift(builtin('telemetry', dir, workload, 'STATS', { metrics: metrics.inbound, accessLog: false }));
    outbound.unshift(builtin('telemetry', dir, workload, 'STATS', { metrics: metrics.outbound, accessLog: false }));
  }
  return { inbound, outbound };
}

/**
 * AuthorizationPolicy on TCP: the policy filter's module as a network filter, with the TCP reading of
 * the policies that select the workload (tcpPolicyFilterConfig), inserted into a NETWORK chain after
 * its AUTHN and AUTHZ phase plugins and before the others, as on the HTTP side (Istio's network RBAC
 * filter). Its own name and VM (`wasmesh-policy-tcp`), FAIL_CLOSE. The chain as it was when no policy
 * selects the workload.
 */
export function withTcpPolicyFilter(chain: readonly FilterBinding[], documents: readonly ConfigDocument[], workload: WorkloadIdentity, options: BuiltinFilterOptions = {}): FilterBinding[] {
  const policies = selectAuthorizationPolicies(documents, workload);
  if (policies.length === 0) return [...chain];
  const dir = options.filtersDir ?? DEFAULT_FILTERS_DIR;
  const out = [...chain];
  const binding: FilterBinding = { ...builtin('policy', dir, workload, 'AUTHZ', tcpPolicyFilterConfig(policies)), name: 'wasmesh-policy-tcp', vmId: 'wasmesh.policy-tcp' };
  const at = out.findIndex((b) => b.phase !== 'AUTHN' && b.phase !== 'AUTHZ');
  out.splice(at < 0 ? out.length : at, 0, binding);
  return out;
}

/** A sidecar's NETWORK chains with the built-in ones: the TCP policy filter on its inbound TCP listeners. */
export function withBuiltinNetworkFilters(
  chains: { inbound: FilterBinding[]; outbound: FilterBinding[] },
  documents: readonly ConfigDocument[],
  workload: WorkloadIdentity,
  options: BuiltinFilterOptions = {},
): { inbound: FilterBinding[]; outbound: FilterBinding[] } {
  return { inbound: withTcpPolicyFilter(chains.inbound, documents, workload, options), outbound: [...chains.outbound] };
}

function ordinal(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
