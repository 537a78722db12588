// AuthorizationPolicy documents -> the pluginConfig of the policy filter (filters/policy).
//
// The caller has already validated the documents and picked the ones that select the workload; this
// only translates, and is a pure function of its arguments. The filter's configuration keeps Istio's
// rule shape (from[].source, to[].operation, when[]), so the translation is mostly a copy:
//   - each policy becomes { name, namespace, action, rules }; action defaults to ALLOW;
//   - a policy without rules keeps no rules (ALLOW without rules denies everything, DENY and AUDIT
//     without rules match nothing); `rules: [{}]` stays a rule that matches everything;
//   - empty lists and absent fields are left out;
//   - policies are sorted by namespace and name, so the output (and its hash) does not depend on the
//     order documents were read in. Order does not change decisions, only which DENY policy a denial
//     names when several match.
// Keys the filter would reject (an unsupported `when` key, say) throw here with the policy named,
// rather than failing the plugin later in the proxy. Reference: filters/policy/README.md.

import { namespaceOf, type AuthorizationPolicy } from '../documents.ts';

export type AuthorizationPolicyDoc = AuthorizationPolicy;

export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT';

export interface PolicySource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

export interface PolicyOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface PolicyCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}

export interface PolicyRule {
  from?: { source: PolicySource }[];
  to?: { operation: PolicyOperation }[];
  when?: PolicyCondition[];
}

export interface FilterPolicy {
  name: string;
  namespace: string;
  action: PolicyAction;
  rules?: PolicyRule[];
}

/** Which requests share a token bucket. */
export type RateLimitDescriptor = { header: string } | { sourcePrincipal: true } | { pathPrefix: string } | { global: true };

export interface RateLimitBucket {
  name: string;
  descriptor: RateLimitDescriptor;
  maxTokens: number;
  /** Tokens added per interval; default maxTokens. */
  tokensPerFill?: number;
  fillIntervalMs: number;
}

/** The policy filter's pluginConfig (schemas/json/filters/policy.schema.json). */
export interface PolicyFilterConfig {
  policies: FilterPolicy[];
  rateLimits?: RateLimitBucket[];
}

const SOURCE_FIELDS: readonly (keyof PolicySource)[] = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks',
];
const OPERATION_FIELDS: readonly (keyof PolicyOperation)[] = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];

/** `when` keys the filter evaluates (see filters/policy/README.md). */
const WHEN_KEYS = new Set([
  'source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port', 'connection.sni',
  'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter',
]);
const HEADER_KEY = /^request\.headers\[[^\[\]]+\]$/;
const CLAIM_KEY = /^request\.auth\.claims(\[[^\[\]]+\])+$/;

export function isSupportedWhenKey(key: string): boolean {
  return WHEN_KEYS.has(key) || HEADER_KEY.test(key) || CLAIM_KEY.test(key);
}

export function policyFilterConfig(policies: readonly AuthorizationPolicyDoc[], rateLimits?: readonly RateLimitBucket[]): PolicyFilterConfig {
  const sorted = [...policies].sort((a, b) => compare(namespaceOf(a), namespaceOf(b)) || compare(a.metadata.name, b.metadata.name));
  const config: PolicyFilterConfig = { policies: sorted.map(translatePolicy) };
  if (rateLimits && rateLimits.length > 0) config.rateLimits = rateLimits.map(copyBucket);
  return config;
}

function translatePolicy(doc: AuthorizationPolicyDoc): FilterPolicy {
  const namespace = namespaceOf(doc);
  const where = `AuthorizationPolicy ${namespace}/${doc.metadata.name}`;
  const out: FilterPolicy = { name: doc.metadata.name, namespace, action: doc.spec.action ?? 'ALLOW' };
  const rules = doc.spec.rules;
  if (rules !== undefined) out.rules = rules.map((rule, i) => translateRule(rule, `${where}: spec.rules[${i}]`));
  return out;
}

type SpecRule = NonNullable<AuthorizationPolicyDoc['spec']['rules']>[number];

function translateRule(rule: SpecRule, where: string): PolicyRule {
  const problem = ruleProblems(rule)[0];
  if (problem) throw new Error(`${where}${formatSegments(problem.at)}: ${problem.message}`);
  const out: PolicyRule = {};
  const from = (rule.from ?? []).map((f) => ({ source: pick<PolicySource>(f.source, SOURCE_FIELDS) }));
  if (from.length > 0) out.from = from;
  const to = (rule.to ?? []).map((t) => ({ operation: pick<PolicyOperation>(t.operation, OPERATION_FIELDS) }));
  if (to.length > 0) out.to = to;
  const when = (rule.when ?? []).map((w) => {
    const c: PolicyCondition = { key: w.key };
    if (w.values && w.values.length > 0) c.values = [...w.values];
    if (w.notValues && w.notValues.length > 0) c.notValues = [...w.notValues];
    return c;
  });
  if (when.length > 0) out.when = when;
  return out;
}

// ---------------------------------------------------------------------------------------------
// TCP: the same policies for the filter running on a sidecar's inbound TCP connections

/** Source and operation fields a TCP connection has nothing to match against (Istio's HTTP-only fields). */
const HTTP_ONLY_SOURCE: readonly (keyof PolicySource)[] = ['requestPrincipals', 'notRequestPrincipals'];
const HTTP_ONLY_OPERATION: readonly (keyof PolicyOperation)[] = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];

/** `when` keys that exist on HTTP requests only: request headers and the JWT's request.auth.*. */
export function isHttpOnlyWhenKey(key: string): boolean {
  return key.startsWith('request.');
}

/** Whether a (translated) rule uses a field a TCP connection cannot be matched on. */
export function usesHttpOnlyFields(rule: PolicyRule): boolean {
  return (
    (rule.from ?? []).some((f) => HTTP_ONLY_SOURCE.some((k) => f.source[k] !== undefined)) ||
    (rule.to ?? []).some((t) => HTTP_ONLY_OPERATION.some((k) => t.operation[k] !== undefined)) ||
    (rule.when ?? []).some((w) => isHttpOnlyWhenKey(w.key))
  );
}

function withoutHttpOnlyFields(rule: PolicyRule): PolicyRule {
  const out: PolicyRule = {};
  const strip = <T extends object>(o: T, keys: readonly (keyof T)[]): T => {
    const copy = { ...o };
    for (const k of keys) delete copy[k];
    return copy;
  };
  if (rule.from) out.from = rule.from.map((f) => ({ source: strip(f.source, HTTP_ONLY_SOURCE) }));
  if (rule.to) out.to = rule.to.map((t) => ({ operation: strip(t.operation, HTTP_ONLY_OPERATION) }));
  const when = (rule.when ?? []).filter((w) => !isHttpOnlyWhenKey(w.key));
  if (when.length > 0) out.when = when;
  return out;
}

/**
 * The policy filter's configuration for TCP connections, with Istio's rules for HTTP-only fields
 * (request principals, hosts, methods, paths, request.* conditions), which a connection cannot match:
 *   - an ALLOW rule using one is left out (it never matches; the policy stays, so without another
 *     ALLOW rule that matches, the connection is denied, as in Istio's "Authorization for TCP
 *     traffic" task);
 *   - a DENY or AUDIT rule keeps its other fields and loses those (so it matches more: safer for
 *     DENY, as Istio does it; a source or operation left empty matches every connection).
 * No rate limits: they are per request.
 */
export function tcpPolicyFilterConfig(policies: readonly AuthorizationPolicyDoc[]): PolicyFilterConfig {
  const http = policyFilterConfig(policies);
  return {
    policies: http.policies.map((p) => {
      if (!p.rules) return p;
      const rules = p.action === 'ALLOW' ? p.rules.filter((r) => !usesHttpOnlyFields(r)) : p.rules.map((r) => (usesHttpOnlyFields(r) ? withoutHttpOnlyFields(r) : r));
      return { ...p, rules };
    }),
  };
}

/** A field of a rule the filter cannot evaluate: where (path segments below the rule) and why. */
export interface RuleProblem {
  readonly at: readonly (string | number)[];
  readonly message: string;
}

/**
 * What in one AuthorizationPolicy rule the policy filter cannot evaluate (translation refuses it):
 * an unsupported `when` key, a condition without values, a source or operation field it does not
 * know. Empty when the rule translates.
 */
export function ruleProblems(rule: SpecRule): RuleProblem[] {
  const out: RuleProblem[] = [];
  const fields = (input: Readonly<Record<string, unknown>> | undefined, allowed: readonly string[], at: (string | number)[]) => {
    for (const key of Object.keys(input ?? {})) if (!allowed.includes(key)) out.push({ at, message: `unsupported field ${JSON.stringify(key)}` });
  };
  (rule.from ?? []).forEach((f, i) => fields(f.source, SOURCE_FIELDS, ['from', i, 'source']));
  (rule.to ?? []).forEach((t, i) => fields(t.operation, OPERATION_FIELDS, ['to', i, 'operation']));
  (rule.when ?? []).forEach((w, i) => {
    if (!isSupportedWhenKey(w.key)) out.push({ at: ['when', i, 'key'], message: `unsupported key ${JSON.stringify(w.key)}` });
    else if (!(w.values && w.values.length > 0) && !(w.notValues && w.notValues.length > 0)) out.push({ at: ['when', i], message: 'needs values or notValues' });
  });
  return out;
}

/** ["when", 0, "key"] -> ".when[0].key" */
function formatSegments(at: readonly (string | number)[]): string {
  return at.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('');
}

function pick<T extends object>(input: Readonly<Record<string, string[]>> | undefined, fields: readonly (keyof T)[]): T {
  const out: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(input ?? {})) if (value !== undefined && value.length > 0) out[key] = [...value];
  // Fixed field order, whatever order the document used.
  const ordered: Record<string, string[]> = {};
  for (const f of fields as readonly string[]) if (out[f]) ordered[f] = out[f];
  return ordered as T;
}

function copyBucket(b: RateLimitBucket): RateLimitBucket {
  const out: RateLimitBucket = { name: b.name, descriptor: { ...b.descriptor } as RateLimitDescriptor, maxTokens: b.maxTokens, fillIntervalMs: b.fillIntervalMs };
  if (b.tokensPerFill !== undefined) out.tokensPerFill = b.tokensPerFill;
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
