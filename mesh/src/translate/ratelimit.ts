// RateLimitPolicy documents (policy.wasmesh.io/v1alpha1, a wasmesh extension kind) -> two outputs:
//
// 1. For each workload's proxy, the rate-limit part of the policy filter's pluginConfig
//    (filters/policy): `rateLimits` (local token buckets, per proxy) and `globalRateLimit` (the gRPC
//    callout to a rate-limit service speaking Envoy's RLS v3, with the descriptors to send).
// 2. For the rate-limit service (orchestrator/src/ratelimit/), the limits of the whole mesh in
//    lyft/ratelimit's shape: per domain, a tree of descriptors (key, optional value, nested
//    descriptors) with a rate limit on the node where a request's descriptor ends.
//
// Every global limit becomes one descriptor whose first entry names it,
//   ("wasmesh_limit", "<namespace>.<policy>.<limit>"),
// followed by one entry per item of its `descriptors` list (remote address, a header, the
// destination, the source principal, a generic key). Entries without a fixed value count per value
// (one counter per client address, per header value, ...), as lyft/ratelimit does for a key without a
// value. So the same document gives the filter what to send and the service what to count, and an
// Envoy proxy or lyft/ratelimit could take either side.
//
// Pure functions of their arguments; documents must have passed validateDocuments(). What a schema
// cannot say (one service per workload, unique names) is checked by rateLimitPolicyProblems(), which
// validation calls, and again here (RateLimitTranslationError) for callers that skip validation.

import { isRecord, namespaceOf, type ConfigDocument, type Resource, type WorkloadSelector } from '../documents.ts';
import type { WorkloadIdentity } from '../proxy-config.ts';
import { resolveHost } from './clusters.ts';
import { policySelector, type PolicyTargetRef } from './target-refs.ts';
import { parseDuration } from './durations.ts';

// ---------------------------------------------------------------------------------------------
// The document

export type RateLimitUnit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY';

/** One entry of a global limit's descriptor: exactly one field. */
export interface RateLimitDescriptorSpec {
  /** The client's IP address (source.address without the port); key `remote_address`. */
  remoteAddress?: Record<string, never>;
  /** A request header's value; key `key` (default the header name). Requests without it are not counted. */
  header?: { name: string; key?: string };
  /** The request's :authority without the port, lowercase; key `destination`. */
  destination?: Record<string, never>;
  /** The peer's mTLS identity (without spiffe://); key `source_principal`. Plaintext requests are not counted. */
  sourcePrincipal?: Record<string, never>;
  /** A fixed value; key `key` (default `generic_key`). */
  genericKey?: { value: string; key?: string };
}

export interface GlobalLimitSpec {
  name: string;
  descriptors?: RateLimitDescriptorSpec[];
  requestsPerUnit: number;
  unit: RateLimitUnit;
  /** Counted and reported, never enforced. */
  shadowMode?: boolean;
}

export interface LocalLimitSpec {
  name: string;
  descriptor: { header?: string; sourcePrincipal?: true; pathPrefix?: string; global?: true };
  maxTokens: number;
  tokensPerFill?: number;
  fillInterval: string;
}

export interface RateLimitPolicySpec {
  selector?: WorkloadSelector;
  /** Gateways whose proxies the limits apply to (instead of selector; target-refs.ts). */
  targetRefs?: PolicyTargetRef[];
  local?: LocalLimitSpec[];
  global?: {
    service: { host: string; port: number };
    domain?: string;
    timeout?: string;
    failureMode?: 'ALLOW' | 'DENY';
    limits: GlobalLimitSpec[];
  };
}

export type RateLimitPolicy = Resource<'RateLimitPolicy', RateLimitPolicySpec>;

export const RATE_LIMIT_API_VERSION = 'policy.wasmesh.io/v1alpha1';
export const DEFAULT_DOMAIN = 'wasmesh';
export const DEFAULT_TIMEOUT_MS = 200;
/** The first entry of every descriptor the mesh sends: which limit it is for. */
export const LIMIT_KEY = 'wasmesh_limit';

// ---------------------------------------------------------------------------------------------
// What the policy filter gets (schemas/json/filters/policy.schema.json)

/** Where one descriptor entry's value comes from, in the filter. Exactly one of value, header, remoteAddress, destination, sourcePrincipal. */
export interface FilterDescriptorEntry {
  key: string;
  value?: string;
  header?: string;
  remoteAddress?: true;
  destination?: true;
  sourcePrincipal?: true;
}

export interface FilterGlobalRateLimit {
  /** The cluster of the rate-limit service (a gRPC callout target). */
  cluster: string;
  domain: string;
  timeoutMs: number;
  /** When the service does not answer in time or fails: ALLOW lets the request through, DENY answers 500. */
  failureMode: 'ALLOW' | 'DENY';
  descriptors: { entries: FilterDescriptorEntry[] }[];
}

export interface FilterLocalRateLimit {
  name: string;
  descriptor: { header: string } | { sourcePrincipal: true } | { pathPrefix: string } | { global: true };
  maxTokens: number;
  tokensPerFill?: number;
  fillIntervalMs: number;
}

export interface FilterRateLimits {
  rateLimits: FilterLocalRateLimit[];
  globalRateLimit?: FilterGlobalRateLimit;
}

// ---------------------------------------------------------------------------------------------
// What the rate-limit service gets (lyft/ratelimit's configuration shape)

export interface ServiceRateLimit {
  requestsPerUnit: number;
  unit: RateLimitUnit;
  /** Reported back as current_limit.name: "<namespace>.<policy>.<limit>". */
  name?: string;
}

export interface ServiceDescriptor {
  key: string;
  /** Absent: any value, each value counted on its own. */
  value?: string;
  rateLimit?: ServiceRateLimit;
  shadowMode?: boolean;
  descriptors?: ServiceDescriptor[];
}

export interface RateLimitServiceConfig {
  /** Descriptor trees by domain. */
  domains: Record<string, ServiceDescriptor[]>;
}

export class RateLimitTranslationError extends Error {
  readonly code = 'WASMESH_MESH_RATELIMIT';
}

// ---------------------------------------------------------------------------------------------
// Selection

export function isRateLimitPolicy(value: unknown): value is RateLimitPolicy {
  return isRecord(value) && value.kind === 'RateLimitPolicy' && isRecord(value.metadata) && isRecord(value.spec);
}

/**
 * RateLimitPolicies that select the workload (its namespace with a matching selector, or mesh-wide;
 * on a gateway proxy, those whose targetRefs name a Gateway it serves), sorted by namespace/name.
 */
export function selectRateLimitPolicies(documents: readonly ConfigDocument[], workload: WorkloadIdentity): RateLimitPolicy[] {
  const out: RateLimitPolicy[] = [];
  const applies = policySelector(documents, workload);
  for (const doc of documents) {
    const v = doc.value;
    if (!isRateLimitPolicy(v)) continue;
    if (!applies(v)) continue;
    out.push(v);
  }
  return out.sort((a, b) => ordinal(policyId(a), policyId(b)));
}

function policyId(p: RateLimitPolicy): string {
  return `${namespaceOf(p)}.${p.metadata.name}`;
}

// ---------------------------------------------------------------------------------------------
// Filter config

/**
 * The rate-limit part of one workload's policy filter config. `clusterFor` names the cluster of the
 * service (resolved host and port; the caller creates it in the proxy's cluster table).
 * All policies selecting a workload must name the same service and domain (the filter makes one
 * call per request); the shortest timeout wins and DENY wins over ALLOW.
 */
export function rateLimitFilterConfig(policies: readonly RateLimitPolicy[], clusterFor: (host: string, port: number) => string): FilterRateLimits {
  const out: FilterRateLimits = { rateLimits: [] };
  const localNames = new Set<string>();
  let service: { host: string; port: number; domain: string; from: string } | undefined;
  for (const p of policies) {
    const id = policyId(p);
    for (const l of p.spec.local ?? []) {
      // Bucket names are the policy's id and the limit's name, unique across policies.
      const name = `${id}.${l.name}`;
      if (localNames.has(name)) throw new RateLimitTranslationError(`RateLimitPolicy ${namespaceOf(p)}/${p.metadata.name}: spec.local: limit ${JSON.stringify(l.name)} is listed twice`);
      localNames.add(name);
      out.rateLimits.push(localBucket(name, l));
    }
    const g = p.spec.global;
    if (!g || g.limits.length === 0) continue;
    const host = resolveHost(g.service.host, namespaceOf(p));
    const domain = g.domain ?? DEFAULT_DOMAIN;
    if (service && (service.host !== host || service.port !== g.service.port || service.domain !== domain)) {
      throw new RateLimitTranslationError(
        `RateLimitPolicy ${namespaceOf(p)}/${p.metadata.name}: spec.global: a workload selected by several policies must use one rate-limit service and domain ` +
          `(${service.from} uses ${service.host}:${service.port} domain ${service.domain}, this one ${host}:${g.service.port} domain ${domain})`,
      );
    }
    service ??= { host, port: g.service.port, domain, from: `${namespaceOf(p)}/${p.metadata.name}` };
    const timeoutMs = g.timeout !== undefined ? parseDuration(g.timeout) : DEFAULT_TIMEOUT_MS;
    const current = out.globalRateLimit;
    if (!current) {
      out.globalRateLimit = { cluster: clusterFor(host, g.service.port), domain, timeoutMs, failureMode: g.failureMode ?? 'ALLOW', descriptors: [] };
    } else {
      current.timeoutMs = Math.min(current.timeoutMs, timeoutMs);
      if (g.failureMode === 'DENY') current.failureMode = 'DENY';
    }
    for (const limit of g.limits) {
      const entries: FilterDescriptorEntry[] = [{ key: LIMIT_KEY, value: `${id}.${limit.name}` }];
      for (const d of limit.descriptors ?? []) entries.push(filterEntry(d));
      out.globalRateLimit!.descriptors.push({ entries });
    }
  }
  return out;
}

function localBucket(name: string, l: LocalLimitSpec): FilterLocalRateLimit {
  const d = l.descriptor;
  const descriptor: FilterLocalRateLimit['descriptor'] =
    d.header !== undefined ? { header: d.header } : d.pathPrefix !== undefined ? { pathPrefix: d.pathPrefix } : d.sourcePrincipal ? { sourcePrincipal: true } : { global: true };
  const out: FilterLocalRateLimit = { name, descriptor, maxTokens: l.maxTokens, fillIntervalMs: parseDuration(l.fillInterval) };
  if (l.tokensPerFill !== undefined) out.tokensPerFill = l.tokensPerFill;
  return out;
}

/** The descriptor key of an entry, as the service sees it. */
export function entryKey(d: RateLimitDescriptorSpec): string {
  if (d.header) return d.header.key ?? d.header.name.toLowerCase();
  if (d.genericKey) return d.genericKey.key ?? 'generic_key';
  if (d.remoteAddress) return 'remote_address';
  if (d.destination) return 'destination';
  return 'source_principal';
}

function filterEntry(d: RateLimitDescriptorSpec): FilterDescriptorEntry {
  const key = entryKey(d);
  if (d.header) return { key, header: d.header.name.toLowerCase() };
  if (d.genericKey) return { key, value: d.genericKey.value };
  if (d.remoteAddress) return { key, remoteAddress: true };
  if (d.destination) return { key, destination: true };
  return { key, sourcePrincipal: true };
}

// ---------------------------------------------------------------------------------------------
// Service config

/** The limits of every RateLimitPolicy among the documents, for the rate-limit service. */
export function rateLimitServiceConfig(documents: readonly ConfigDocument[] | readonly unknown[]): RateLimitServiceConfig {
  const policies: RateLimitPolicy[] = [];
  for (const d of documents) {
    const v = isRecord(d) && 'source' in d && 'value' in d ? (d as unknown as ConfigDocument).value : d;
    if (isRateLimitPolicy(v)) policies.push(v);
  }
  policies.sort((a, b) => ordinal(policyId(a), policyId(b)));
  const domains: Record<string, ServiceDescriptor[]> = {};
  for (const p of policies) {
    const g = p.spec.global;
    if (!g) continue;
    const list = (domains[g.domain ?? DEFAULT_DOMAIN] ??= []);
    for (const limit of g.limits) {
      const name = `${policyId(p)}.${limit.name}`;
      const rateLimit: ServiceRateLimit = { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit, name };
      // The chain of entries, innermost last; the limit sits on the last node.
      const chain = (limit.descriptors ?? []).map((d) => {
        const node: ServiceDescriptor = { key: entryKey(d) };
        if (d.genericKey) node.value = d.genericKey.value;
        return node;
      });
      const root: ServiceDescriptor = { key: LIMIT_KEY, value: name };
      let last = root;
      for (const node of chain) {
        last.descriptors = [node];
        last = node;
      }
      last.rateLimit = rateLimit;
      if (limit.shadowMode) last.shadowMode = true;
      list.push(root);
    }
  }
  return { domains };
}

// ---------------------------------------------------------------------------------------------
// Checks a schema cannot express (called by validateDocuments)

export interface RateLimitProblem {
  /** JSON pointer inside the document. */
  path: string;
  message: string;
}

/** Problems of one RateLimitPolicy that passed its schema: duplicate names, a service host no ServiceEntry declares. */
export function rateLimitPolicyProblems(p: RateLimitPolicy, knownHost: (host: string, namespace: string) => { ports: number[] } | undefined): RateLimitProblem[] {
  const problems: RateLimitProblem[] = [];
  const seen = new Map<string, number>();
  (p.spec.local ?? []).forEach((l, i) => {
    const interval = durationOrUndefined(l.fillInterval);
    if (interval !== undefined && (interval < 1 || interval > 86_400_000)) problems.push({ path: `/spec/local/${i}/fillInterval`, message: `must be from 1ms to 24h (got ${l.fillInterval})` });
    if (l.tokensPerFill !== undefined && l.tokensPerFill > l.maxTokens) problems.push({ path: `/spec/local/${i}/tokensPerFill`, message: `${l.tokensPerFill} is more than maxTokens (${l.maxTokens}): the bucket never holds more than maxTokens` });
    const j = seen.get(l.name);
    if (j !== undefined) problems.push({ path: `/spec/local/${i}/name`, message: `limit ${JSON.stringify(l.name)} is already defined at spec.local[${j}]` });
    else seen.set(l.name, i);
  });
  const g = p.spec.global;
  if (!g) return problems;
  const timeout = g.timeout !== undefined ? durationOrUndefined(g.timeout) : undefined;
  if (timeout !== undefined && (timeout < 1 || timeout > 60_000)) problems.push({ path: '/spec/global/timeout', message: `must be from 1ms to 60s (got ${g.timeout})` });
  const names = new Map<string, number>();
  g.limits.forEach((l, i) => {
    const j = names.get(l.name);
    if (j !== undefined) problems.push({ path: `/spec/global/limits/${i}/name`, message: `limit ${JSON.stringify(l.name)} is already defined at spec.global.limits[${j}]` });
    else names.set(l.name, i);
    const keys = new Map<string, number>();
    (l.descriptors ?? []).forEach((d, k) => {
      const key = entryKey(d);
      const earlier = keys.get(key);
      if (key === LIMIT_KEY) problems.push({ path: `/spec/global/limits/${i}/descriptors/${k}`, message: `the key ${JSON.stringify(LIMIT_KEY)} is reserved (the first entry of every descriptor names its limit)` });
      else if (earlier !== undefined) problems.push({ path: `/spec/global/limits/${i}/descriptors/${k}`, message: `key ${JSON.stringify(key)} is already used by descriptors[${earlier}]: give one of them another key` });
      else keys.set(key, k);
    });
  });
  const service = knownHost(g.service.host, namespaceOf(p));
  const host = resolveHost(g.service.host, namespaceOf(p));
  if (!service && !g.service.host.includes('.')) {
    problems.push({ path: '/spec/global/service/host', message: `unknown host ${JSON.stringify(g.service.host)}: no ServiceEntry declares ${JSON.stringify(host)}; name the ServiceEntry of the rate-limit service` });
  } else if (service && !service.ports.includes(g.service.port)) {
    problems.push({ path: '/spec/global/service/port', message: `port ${g.service.port} is not a port of ${host} (ports: ${service.ports.join(', ')})` });
  }
  return problems;
}

/** Milliseconds, or undefined for text the schema already reports. */
function durationOrUndefined(text: string): number | undefined {
  try {
    return parseDuration(text);
  } catch {
    return undefined;
  }
}

function ordinal(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
