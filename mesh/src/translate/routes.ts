// Virtual hosts and routes: one virtual host per ServiceEntry host, carrying the VirtualService
// http rules bound to that host (or a default route to the host's cluster), plus one virtual host
// per VirtualService host that no ServiceEntry declares.

import type {
  HeaderMatch,
  HeaderOperations,
  MirrorPolicy,
  RetryPolicy,
  RouteAction,
  RouteConfig,
  RouteMatch,
  StringMatch,
  VirtualHostConfig,
  WeightedCluster,
  WorkloadIdentity,
} from '../proxy-config.ts';
import {
  namespaceOf,
  type HTTPMatchRequest,
  type HTTPRoute,
  type HeaderOperationsSpec,
  type StringMatchSpec,
  type VirtualService,
} from '../documents.ts';
import {
  type ClusterTable,
  type ServiceRegistry,
  type Service,
  hostMatches,
  hostSpecificity,
  httpPorts,
  kubernetesName,
  labelsMatch,
  resolveHost,
} from './clusters.ts';
import { durationMs } from './durations.ts';

// ---------------------------------------------------------------------------------------------
// Regular expressions

/**
 * Why `source` is outside the regex subset we accept (RE2 ∩ JavaScript), or undefined if it is in.
 * The proxy evaluates regexes with JavaScript's engine, while Istio users write RE2; the subset
 * both accept behaves the same in both (linear-time features only).
 */
export function regexProblem(source: string): string | undefined {
  try {
    new RegExp(source);
  } catch (err) {
    const hint = source.includes('(?P<')
      ? ' (write named groups as (?<name>...))'
      : /\(\?[imsU-]+[):]/.test(source)
        ? ' (inline flags like (?i) are not supported)'
        : '';
    return `invalid regex: ${(err as Error).message}${hint}`;
  }
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (!inClass && next >= '1' && next <= '9') return `backreference \\${next} is not supported (RE2 has no backreferences)`;
      if (!inClass && next === 'k' && source[i + 2] === '<') return 'named backreference \\k<...> is not supported (RE2 has no backreferences)';
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (source[i + 1] === '^') i++;
      if (source[i + 1] === ']') i++; // a leading ] is a literal
      continue;
    }
    if (c === '(' && source[i + 1] === '?') {
      const kind = source.slice(i + 2, i + 4);
      if (kind === '<=' || kind === '<!') return 'lookbehind (?<=...) / (?<!...) is not supported (RE2 has no lookaround)';
      if (kind[0] === '=' || kind[0] === '!') return 'lookahead (?=...) / (?!...) is not supported (RE2 has no lookaround)';
    }
  }
  return undefined;
}

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|]/;

/** A regex matching `text` case-insensitively, letter by letter (JavaScript has no inline (?i)). */
function caselessRegex(text: string): string {
  let out = '';
  for (const ch of text) {
    const lower = ch.toLowerCase();
    const upper = ch.toUpperCase();
    if (lower !== upper && lower.length === 1 && upper.length === 1) out += `[${lower}${upper}]`;
    else out += REGEX_SPECIAL.test(ch) ? `\\${ch}` : ch;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Matches

function stringMatch(m: StringMatchSpec): StringMatch {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { regex: m.regex ?? '' };
}

/** Header and query conditions: `{}` means presence. */
function headerMatch(m: StringMatchSpec): HeaderMatch {
  return m.exact === undefined && m.prefix === undefined && m.regex === undefined ? { present: true } : stringMatch(m);
}

function headerMatches(map: Readonly<Record<string, StringMatchSpec>> | undefined, lowercase: boolean): Record<string, HeaderMatch> | undefined {
  if (!map) return undefined;
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [lowercase ? k.toLowerCase() : k, headerMatch(v)]));
}

/**
 * ignoreUriCase applies to exact and prefix (Istio ignores it for regex). Both become anchored
 * regexes, which mean the same under whole-value and search semantics.
 */
function uriMatch(m: StringMatchSpec, ignoreCase: boolean): StringMatch {
  if (ignoreCase && m.exact !== undefined) return { regex: `^${caselessRegex(m.exact)}$` };
  if (ignoreCase && m.prefix !== undefined) return { regex: `^${caselessRegex(m.prefix)}.*` };
  return stringMatch(m);
}

export function translateMatch(m: HTTPMatchRequest): RouteMatch {
  const out: {
    name?: string;
    uri?: StringMatch;
    method?: StringMatch;
    authority?: StringMatch;
    headers?: Record<string, HeaderMatch>;
    withoutHeaders?: Record<string, HeaderMatch>;
    queryParams?: Record<string, HeaderMatch>;
    port?: number;
  } = {};
  if (m.name !== undefined) out.name = m.name;
  if (m.uri) out.uri = uriMatch(m.uri, m.ignoreUriCase === true);
  if (m.method) out.method = stringMatch(m.method);
  if (m.authority) out.authority = stringMatch(m.authority);
  const headers = headerMatches(m.headers, true);
  if (headers) out.headers = headers;
  const without = headerMatches(m.withoutHeaders, true);
  if (without) out.withoutHeaders = without;
  const query = headerMatches(m.queryParams, false);
  if (query) out.queryParams = query;
  if (m.port !== undefined) out.port = m.port;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Routes

function headerOperations(ops: HeaderOperationsSpec | undefined): HeaderOperations | undefined {
  if (!ops) return undefined;
  const out: { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] } = {};
  if (ops.set && Object.keys(ops.set).length > 0) out.set = { ...ops.set };
  if (ops.add && Object.keys(ops.add).length > 0) out.add = { ...ops.add };
  if (ops.remove && ops.remove.length > 0) out.remove = [...ops.remove];
  return Object.keys(out).length > 0 ? out : undefined;
}

// ---------------------------------------------------------------------------------------------
// Retries and mirroring

/** Istio's retry policy for a route that sets no `retries` (pilot's retry.DefaultPolicy). */
export const DEFAULT_RETRY_ON: readonly string[] = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'];
export const DEFAULT_RETRIABLE_STATUS_CODES: readonly number[] = [503];

export function defaultRetryPolicy(): RetryPolicy {
  return { attempts: 2, perTryTimeoutMs: 0, retryOn: [...DEFAULT_RETRY_ON], retriableStatusCodes: [...DEFAULT_RETRIABLE_STATUS_CODES] };
}

/**
 * VirtualService `retries` as Istio renders it: unset -> the default policy; attempts 0 -> no
 * retries (undefined); otherwise the default with the fields given. In `retryOn`, numbers are
 * retriable status codes (and imply retriable-status-codes); `retriable-status-codes` without any
 * number keeps the default code 503.
 */
export function translateRetries(retries: HTTPRoute['retries']): RetryPolicy | undefined {
  if (retries === undefined) return defaultRetryPolicy();
  const attempts = retries.attempts ?? 0;
  if (attempts <= 0) return undefined;
  const out = defaultRetryPolicy();
  out.attempts = attempts;
  const perTry = durationMs(retries.perTryTimeout);
  if (perTry !== undefined) out.perTryTimeoutMs = perTry;
  if (retries.retryOn !== undefined && retries.retryOn.trim() !== '') {
    const names: string[] = [];
    const codes: number[] = [];
    for (const part of retries.retryOn.split(',')) {
      const p = part.trim();
      if (p === '') continue;
      if (/^[0-9]+$/.test(p)) {
        const code = Number(p);
        if (code >= 100 && code <= 599 && !codes.includes(code)) codes.push(code);
      } else if (!names.includes(p)) names.push(p);
    }
    if (codes.length > 0 && !names.includes('retriable-status-codes')) names.push('retriable-status-codes');
    out.retryOn = names;
    out.retriableStatusCodes = codes.length > 0 ? codes : [...DEFAULT_RETRIABLE_STATUS_CODES];
  }
  return out;
}

export interface RouteContext {
  readonly registry: ServiceRegistry;
  readonly clusters: ClusterTable;
  readonly workload: WorkloadIdentity;
}

// ---------------------------------------------------------------------------------------------
// Gateway binding of http rules

/** The reserved gateway name meaning "every sidecar". */
const MESH = 'mesh';

/** `namespace/name` of a `gateways` entry (a bare name is in the VirtualService's namespace); `mesh` stays `mesh`. */
function bindingRef(entry: string, vsNamespace: string): string {
  return entry === MESH || entry.includes('/') ? entry : `${vsNamespace}/${entry}`;
}

/** The VirtualService's own binding: its `gateways`, or `mesh` alone when it names none (Istio). */
function topLevelBinding(vs: VirtualService): readonly string[] {
  return vs.spec.gateways && vs.spec.gateways.length > 0 ? vs.spec.gateways : [MESH];
}

/**
 * Whether an http match applies where the routes are built (`scope`: `mesh` for sidecars, else the
 * gateway's `namespace/name`). A match's own `gateways` replace the VirtualService's for that match
 * (Istio's HTTPMatchRequest.gateways); without them the VirtualService's binding decides.
 */
export function httpMatchApplies(vs: VirtualService, m: HTTPMatchRequest, scope: string): boolean {
  const ns = namespaceOf(vs);
  const list = m.gateways && m.gateways.length > 0 ? m.gateways : topLevelBinding(vs);
  return list.some((g) => bindingRef(g, ns) === scope);
}

/**
 * Whether any of a VirtualService's http rules may apply at `scope`: through its own binding, or
 * through the `gateways` of one of its http matches (so a VirtualService bound to an egress gateway
 * alone still reaches the sidecars through a match naming `mesh`, as in Istio's egress task).
 */
export function httpMayApply(vs: VirtualService, scope: string): boolean {
  const ns = namespaceOf(vs);
  if (topLevelBinding(vs).some((g) => bindingRef(g, ns) === scope)) return true;
  return (vs.spec.http ?? []).some((h) => (h.match ?? []).some((m) => (m.gateways ?? []).some((g) => bindingRef(g, ns) === scope)));
}

/** The host a destination names, as the cluster table knows it. */
function destinationHost(host: string, namespace: string, ctx: RouteContext): string {
  return ctx.registry.lookup(host, namespace)?.host ?? resolveHost(host, namespace);
}

function translateAction(http: HTTPRoute, namespace: string, ctx: RouteContext): RouteAction {
  if (http.redirect) {
    const r = http.redirect;
    return {
      kind: 'redirect',
      ...(r.uri !== undefined ? { uri: r.uri } : {}),
      ...(r.authority !== undefined ? { authority: r.authority } : {}),
      ...(r.scheme !== undefined ? { scheme: r.scheme } : {}),
      ...(r.port !== undefined ? { port: r.port } : {}),
      status: r.redirectCode ?? 301,
    };
  }
  if (http.directResponse) {
    const d = http.directResponse;
    return { kind: 'direct', status: d.status, ...(d.body ? { body: d.body.string } : {}) };
  }
  const route = http.route ?? [];
  const destinations: WeightedCluster[] = route.map((d) => {
    const host = destinationHost(d.destination.host, namespace, ctx);
    const port = d.destination.port?.number ?? ctx.clusters.defaultPort(host);
    const requestHeaders = headerOperations(d.headers?.request);
    const responseHeaders = headerOperations(d.headers?.response);
    return {
      cluster: ctx.clusters.ensure(host, port, d.destination.subset),
      // A single destination takes all traffic (Istio), whatever weight it was given.
      weight: route.length === 1 ? 100 : (d.weight ?? 0),
      ...(requestHeaders ? { requestHeaders } : {}),
      ...(responseHeaders ? { responseHeaders } : {}),
    };
  });
  const retry = translateRetries(http.retries);
  let mirror: MirrorPolicy | undefined;
  if (http.mirror) {
    const host = destinationHost(http.mirror.host, namespace, ctx);
    const port = http.mirror.port?.number ?? ctx.clusters.defaultPort(host);
    // Istio: mirrorPercentage unset mirrors every request.
    mirror = { cluster: ctx.clusters.ensure(host, port, http.mirror.subset), percentage: http.mirrorPercentage?.value ?? 100 };
  }
  return {
    kind: 'forward',
    destinations,
    ...(http.rewrite?.uri !== undefined ? { rewriteUri: http.rewrite.uri } : {}),
    ...(http.rewrite?.authority !== undefined ? { rewriteAuthority: http.rewrite.authority } : {}),
    timeoutMs: durationMs(http.timeout) ?? 0,
    ...(retry ? { retry } : {}),
    ...(mirror ? { mirror } : {}),
  };
}

/**
 * The routes of a VirtualService for this workload, in order. Matches whose sourceLabels do not
 * select the workload, or whose gateways (else the VirtualService's) do not include `scope`, are
 * dropped, and so is a rule left with no match (Istio does the same per proxy); a rule without
 * matches needs the VirtualService itself bound to `scope`. `scope` is `mesh` for sidecars, else the
 * gateway's `namespace/name`. Faults become filters (fault-filter.ts); retries and mirror go on the
 * route action.
 */
export function translateRoutes(vs: VirtualService, ctx: RouteContext, scope: string = MESH): RouteConfig[] {
  const namespace = namespaceOf(vs);
  const routes: RouteConfig[] = [];
  const boundHere = topLevelBinding(vs).some((g) => bindingRef(g, namespace) === scope);
  (vs.spec.http ?? []).forEach((http, index) => {
    const written = http.match ?? [];
    if (written.length === 0 && !boundHere) return;
    const applicable = written.filter((m) => labelsMatch(m.sourceLabels, ctx.workload.labels) && httpMatchApplies(vs, m, scope));
    if (written.length > 0 && applicable.length === 0) return;
    const requestHeaders = headerOperations(http.headers?.request);
    const responseHeaders = headerOperations(http.headers?.response);
    routes.push({
      name: `${vs.metadata.name}.${namespace}/${http.name ?? String(index)}`,
      match: applicable.map(translateMatch),
      action: translateAction(http, namespace, ctx),
      ...(requestHeaders ? { requestHeaders } : {}),
      ...(responseHeaders ? { responseHeaders } : {}),
    });
  });
  return routes;
}

/** Without a VirtualService: every request to the host goes to its cluster (one route per HTTP port when it has several). */
function defaultRoutes(service: Service, ctx: RouteContext): RouteConfig[] {
  const ports = httpPorts(service.entry);
  const forward = (port: number): RouteAction => ({
    kind: 'forward',
    destinations: [{ cluster: ctx.clusters.ensure(service.host, port), weight: 100 }],
    timeoutMs: 0,
    // Istio gives default routes its default retry policy too.
    retry: defaultRetryPolicy(),
  });
  if (ports.length === 1) return [{ name: `${service.host}/default`, match: [], action: forward(ports[0]!.number) }];
  return ports.map((p) => ({ name: `${service.host}/default:${p.number}`, match: [{ port: p.number }], action: forward(p.number) }));
}

// ---------------------------------------------------------------------------------------------
// Virtual hosts

/** A VirtualService applies to sidecars when it names no gateways, or names "mesh" (at the top or in an http match). */
function appliesToSidecars(vs: VirtualService): boolean {
  return httpMayApply(vs, MESH);
}

/** Short names a Kubernetes-style host also answers to (Istio's virtual host domains, without ports). */
function aliases(host: string, workloadNamespace: string): string[] {
  const k = kubernetesName(host);
  if (!k) return [];
  const out = [`${k.name}.${k.namespace}.svc`, `${k.name}.${k.namespace}`];
  // The bare name means <name>.<caller's namespace>, so only callers in that namespace get it.
  if (k.namespace === workloadNamespace) out.push(k.name);
  return out;
}

/**
 * Builds the virtual hosts (and, through the cluster table, the clusters they and the services
 * need). `virtualServices` must be visible to the workload and sorted deterministically; when two
 * bind the same host, the most specific host wins, then the first in that order.
 */
export function buildVirtualHosts(virtualServices: readonly VirtualService[], ctx: RouteContext): VirtualHostConfig[] {
  const bound = virtualServices
    .filter(appliesToSidecars)
    .flatMap((vs) => vs.spec.hosts.map((h) => ({ vs, host: resolveHost(h, namespaceOf(vs)) })));

  const pick = (host: string): VirtualService | undefined => {
    let best: { vs: VirtualService; specificity: number } | undefined;
    for (const b of bound) {
      if (!hostMatches(b.host, host)) continue;
      const specificity = hostSpecificity(b.host);
      if (!best || specificity > best.specificity) best = { vs: b.vs, specificity };
    }
    return best?.vs;
  };

  const hosts: { host: string; routes: RouteConfig[] }[] = [];
  const services = ctx.registry.all();
  for (const service of services) {
    ctx.clusters.addService(service);
    const vs = pick(service.host);
    if (vs) hosts.push({ host: service.host, routes: translateRoutes(vs, ctx) });
    else if (httpPorts(service.entry).length > 0) hosts.push({ host: service.host, routes: defaultRoutes(service, ctx) });
  }
  const declared = new Set(services.map((s) => s.host));
  const own = new Set<string>();
  for (const b of bound) {
    if (declared.has(b.host) || own.has(b.host)) continue;
    own.add(b.host);
    const vs = pick(b.host)!;
    hosts.push({ host: b.host, routes: translateRoutes(vs, ctx) });
  }

  hosts.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  // A domain belongs to one virtual host: hosts claim their own name first, then short names in order.
  const taken = new Set(hosts.map((h) => h.host));
  return hosts.map(({ host, routes }) => {
    const domains = [host];
    for (const alias of aliases(host, ctx.workload.namespace)) {
      if (taken.has(alias)) continue;
      taken.add(alias);
      domains.push(alias);
    }
    return { name: host, domains, routes };
  });
}
