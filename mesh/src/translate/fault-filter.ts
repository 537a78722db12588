// VirtualService `fault` blocks -> the pluginConfig of the fault filter (filters/fault, root id
// "fault"), which runs on the outbound side and picks the first rule whose hosts and match hold.
//
// The rule list reproduces which route a request takes, so a fault applies exactly to the requests
// the faulty route would carry:
// * Per host, the VirtualService routing uses: the most specific host pattern wins, then the first
//   VirtualService in the given order (as buildVirtualHosts in routes.ts). Rules are therefore grouped
//   by host and ordered by specificity, and a group ends with a fault-free catch-all, so a request to
//   a host never falls through to another VirtualService's rules.
// * Within a VirtualService, routes keep their order and routes without a fault become fault-free
//   rules: an earlier route shadows a later faulty one, as in routing. Routes after the last faulty
//   one are left out, and so are fault-free rules at the end of the list.
//
// Percentages follow Istio: a delay or abort without `percentage` applies to no request (Istio's API
// text says so since istio/istio#36303; Envoy behaves that way), so the rule is kept, with 0, and still
// shadows the routes after it. The filter's own default (100) is never relied on: every percentage
// is written out.
//
// The filter matches uri, method and headers with exact, prefix and presence conditions only (it is
// AssemblyScript: no RegExp). A route the list needs whose match uses regex, authority, queryParams or
// port is refused with FaultFilterError naming the field.

import {
  formatResource,
  namespaceOf,
  type HTTPMatchRequest,
  type HTTPRoute,
  type Labels,
  type StringMatchSpec,
  type VirtualService,
} from '../documents.ts';
import { hostSpecificity, kubernetesName, labelsMatch, resolveHost } from './clusters.ts';
import { DurationError, parseDuration } from './durations.ts';
import { httpMatchApplies, httpMayApply } from './routes.ts';

/** Whether a VirtualService's own binding (its `gateways`, else `mesh`) includes the sidecars. */
function httpBoundToMesh(vs: VirtualService): boolean {
  return httpMatchApplies(vs, {}, 'mesh');
}

export type VirtualServiceDoc = VirtualService;

export interface FaultStringMatch {
  exact?: string;
  prefix?: string;
}

/** One alternative of a rule's match list; `{}` on a header means "present". */
export interface FaultMatch {
  uri?: FaultStringMatch;
  ignoreUriCase?: true;
  method?: FaultStringMatch;
  headers?: Record<string, FaultStringMatch>;
  withoutHeaders?: Record<string, FaultStringMatch>;
}

export interface FaultRule {
  /** Host names (and "*.suffix" / "*") the rule covers, compared with :authority without its port. */
  hosts: string[];
  /** Alternatives; empty matches every request to the hosts. */
  match: FaultMatch[];
  delay?: { fixedDelayMs: number; percentage: number };
  abort?: { httpStatus?: number; grpcStatus?: string; percentage: number };
}

export interface FaultFilterConfig {
  rules: FaultRule[];
}

export interface FaultFilterOptions {
  /** The workload's namespace: bare service names ("reviews") are only its own services' aliases. Default: each VirtualService's namespace. */
  readonly namespace?: string;
  /** The workload's labels, for matches with sourceLabels (a match whose sourceLabels do not select the workload is dropped). Default: none. */
  readonly labels?: Labels;
}

export class FaultFilterError extends Error {
  readonly code = 'WASMESH_ORCH_FAULT_UNSUPPORTED';
}

/** The fault filter's pluginConfig for these VirtualServices (sorted deterministically by the caller). */
export function faultFilterConfig(virtualServices: readonly VirtualServiceDoc[], options: FaultFilterOptions = {}): FaultFilterConfig {
  const applicable = virtualServices.filter(appliesToSidecars);
  if (!applicable.some((vs) => (vs.spec.http ?? []).some((h) => h.fault !== undefined))) return { rules: [] };

  // One group per host pattern: the first VirtualService naming it owns it (routing does the same).
  interface Group {
    pattern: string;
    order: number;
    vs: VirtualService;
  }
  const groups: Group[] = [];
  const owned = new Set<string>();
  for (const vs of applicable) {
    for (const h of vs.spec.hosts) {
      const pattern = resolveHost(h, namespaceOf(vs));
      if (owned.has(pattern)) continue;
      owned.add(pattern);
      groups.push({ pattern, order: groups.length, vs });
    }
  }
  groups.sort((a, b) => hostSpecificity(b.pattern) - hostSpecificity(a.pattern) || a.order - b.order);

  const rules: FaultRule[] = [];
  const cache = new Map<VirtualService, Omit<FaultRule, 'hosts'>[]>();
  for (const group of groups) {
    let body = cache.get(group.vs);
    if (!body) {
      body = ruleBodies(group.vs, options.labels ?? {});
      cache.set(group.vs, body);
    }
    const hosts = hostAliases(group.pattern, options.namespace ?? namespaceOf(group.vs));
    for (const b of body) rules.push({ hosts, ...structuredClone(b) });
  }
  const merged = mergeAdjacent(rules);
  while (merged.length > 0 && !hasFault(merged[merged.length - 1]!)) merged.pop();
  return { rules: merged };
}

/** A VirtualService applies to sidecars when it names no gateways, or names "mesh" (at the top or in an http match). */
function appliesToSidecars(vs: VirtualService): boolean {
  return httpMayApply(vs, 'mesh');
}

/** The names a request's :authority may carry for a host (as the route table's domains). */
function hostAliases(pattern: string, workloadNamespace: string): string[] {
  const k = kubernetesName(pattern);
  if (!k) return [pattern];
  const out = [pattern, `${k.name}.${k.namespace}.svc`, `${k.name}.${k.namespace}`];
  if (k.namespace === workloadNamespace) out.push(k.name);
  return out;
}

function hasFault(rule: Omit<FaultRule, 'hosts'>): boolean {
  return rule.delay !== undefined || rule.abort !== undefined;
}

/** The rules of one VirtualService, without hosts, ending with a fault-free catch-all. */
function ruleBodies(vs: VirtualService, labels: Labels): Omit<FaultRule, 'hosts'>[] {
  const http = vs.spec.http ?? [];
  let last = -1;
  http.forEach((route, i) => {
    if (route.fault !== undefined) last = i;
  });
  const out: Omit<FaultRule, 'hosts'>[] = [];
  for (let i = 0; i <= last; i++) {
    const route = http[i]!;
    const where = `${formatResource({ kind: 'VirtualService', name: vs.metadata.name, namespace: namespaceOf(vs) })}: spec.http[${i}]`;
    const written = route.match ?? [];
    // Without matches the rule reaches the sidecars only through the VirtualService's own gateways.
    if (written.length === 0 && !httpBoundToMesh(vs)) continue;
    const kept = written.map((m, j) => ({ m, j })).filter(({ m }) => labelsMatch(m.sourceLabels, labels) && httpMatchApplies(vs, m, 'mesh'));
    // Every match is for other workloads (or gateways): the route does not exist for this one.
    if (written.length > 0 && kept.length === 0) continue;
    const match = kept.map(({ m, j }) => translateMatch(m, `${where}.match[${j}]`));
    // An alternative without conditions (only sourceLabels, say) matches every request.
    const body: Omit<FaultRule, 'hosts'> = { match: match.some((m) => Object.keys(m).length === 0) ? [] : match };
    Object.assign(body, translateFault(route, `${where}.fault`));
    out.push(body);
    // A route matching everything ends the VirtualService: nothing after it is reachable.
    if (body.match.length === 0) return out;
  }
  out.push({ match: [] });
  return out;
}

function translateFault(route: HTTPRoute, where: string): Pick<FaultRule, 'delay' | 'abort'> {
  const fault = route.fault;
  if (!fault) return {};
  const out: Pick<FaultRule, 'delay' | 'abort'> = {};
  if (fault.delay) {
    let fixedDelayMs: number;
    try {
      fixedDelayMs = parseDuration(fault.delay.fixedDelay);
    } catch (err) {
      if (err instanceof DurationError) throw new FaultFilterError(`${where}.delay.fixedDelay: ${err.message}`);
      throw err;
    }
    out.delay = { fixedDelayMs, percentage: fault.delay.percentage?.value ?? 0 };
  }
  if (fault.abort) {
    const a = fault.abort;
    const percentage = a.percentage?.value ?? 0;
    if (a.grpcStatus !== undefined) out.abort = { grpcStatus: a.grpcStatus, percentage };
    else if (a.httpStatus !== undefined) out.abort = { httpStatus: a.httpStatus, percentage };
    else throw new FaultFilterError(`${where}.abort: give httpStatus or grpcStatus`);
  }
  return out;
}

function translateMatch(m: HTTPMatchRequest, where: string): FaultMatch {
  const problem = matchProblems(m)[0];
  if (problem) throw new FaultFilterError(`${where}${formatSegments(problem.at)}: ${problem.message}`);
  const out: FaultMatch = {};
  if (m.uri) {
    out.uri = stringMatch(m.uri);
    if (m.ignoreUriCase === true) out.ignoreUriCase = true;
  }
  if (m.method) out.method = stringMatch(m.method);
  if (m.headers) out.headers = headerMatches(m.headers);
  if (m.withoutHeaders) out.withoutHeaders = headerMatches(m.withoutHeaders);
  return out;
}

/** A field the fault filter cannot carry: where (path segments below the thing checked) and why. */
export interface FaultProblem {
  readonly at: readonly (string | number)[];
  readonly message: string;
}

const UNMATCHABLE = 'a route that precedes or carries a fault may use uri, method, headers, withoutHeaders and sourceLabels';
const NO_REGEX = 'regex matches are not supported by the fault filter (it is AssemblyScript, which has no RegExp); use exact or prefix';

/** What in one match alternative the fault filter cannot evaluate. */
function matchProblems(m: HTTPMatchRequest): FaultProblem[] {
  const out: FaultProblem[] = [];
  for (const field of ['authority', 'queryParams', 'port'] as const) {
    if (m[field] !== undefined) out.push({ at: [field], message: `the fault filter cannot match on ${field}; ${UNMATCHABLE}` });
  }
  if (m.uri?.regex !== undefined) out.push({ at: ['uri', 'regex'], message: NO_REGEX });
  if (m.method?.regex !== undefined) out.push({ at: ['method', 'regex'], message: NO_REGEX });
  for (const field of ['headers', 'withoutHeaders'] as const) {
    for (const [name, sm] of Object.entries(m[field] ?? {})) if (sm.regex !== undefined) out.push({ at: [field, name, 'regex'], message: NO_REGEX });
  }
  return out;
}

/**
 * Why the fault filter cannot carry a VirtualService's faults, with each field's path below the
 * resource (["spec", "http", 0, "match", 1, "port"]); empty when it can. Checks what translation
 * needs (every route up to the last one with a fault), for any source workload: matches are checked
 * whatever their sourceLabels.
 */
export function faultProblems(vs: VirtualServiceDoc): FaultProblem[] {
  if (!appliesToSidecars(vs)) return [];
  const http = vs.spec.http ?? [];
  let last = -1;
  http.forEach((route, i) => {
    if (route.fault !== undefined) last = i;
  });
  const out: FaultProblem[] = [];
  for (let i = 0; i <= last; i++) {
    const route = http[i]!;
    (route.match ?? []).forEach((m, j) => {
      // A match for gateways only never reaches the fault filter.
      if (!httpMatchApplies(vs, m, 'mesh')) return;
      for (const p of matchProblems(m)) out.push({ at: ['spec', 'http', i, 'match', j, ...p.at], message: p.message });
    });
    const fault = route.fault;
    if (fault?.delay) {
      try {
        parseDuration(fault.delay.fixedDelay);
      } catch (err) {
        if (!(err instanceof DurationError)) throw err;
        out.push({ at: ['spec', 'http', i, 'fault', 'delay', 'fixedDelay'], message: err.message });
      }
    }
    if (fault?.abort && fault.abort.grpcStatus === undefined && fault.abort.httpStatus === undefined) {
      out.push({ at: ['spec', 'http', i, 'fault', 'abort'], message: 'give httpStatus or grpcStatus' });
    }
  }
  return out;
}

/** ["uri", "regex"] -> ".uri.regex" */
function formatSegments(at: readonly (string | number)[]): string {
  return at.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('');
}

function stringMatch(m: StringMatchSpec): FaultStringMatch {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return {};
}

function headerMatches(map: Readonly<Record<string, StringMatchSpec>>): Record<string, FaultStringMatch> {
  const out: Record<string, FaultStringMatch> = {};
  for (const [name, m] of Object.entries(map)) out[name.toLowerCase()] = stringMatch(m);
  return out;
}

/** Joins neighbouring rules that differ only in hosts (one VirtualService's several hosts). */
function mergeAdjacent(rules: FaultRule[]): FaultRule[] {
  // Rules come in per-host runs of one VirtualService's body; runs with equal bodies next to each
  // other are merged rule by rule.
  const out: FaultRule[] = [];
  let i = 0;
  while (i < rules.length) {
    const run = runLength(rules, i);
    let j = i + run;
    const hosts = rules.slice(i, i + run).map((r) => [...r.hosts]);
    while (j < rules.length && runLength(rules, j) === run && sameBodies(rules, i, j, run)) {
      for (let k = 0; k < run; k++) hosts[k]!.push(...rules[j + k]!.hosts);
      j += run;
    }
    for (let k = 0; k < run; k++) out.push({ ...rules[i + k]!, hosts: dedupe(hosts[k]!) });
    i = j;
  }
  return out;
}

/** Length of the run of rules sharing rules[i]'s hosts. */
function runLength(rules: FaultRule[], i: number): number {
  const key = rules[i]!.hosts.join('\n');
  let n = 1;
  while (i + n < rules.length && rules[i + n]!.hosts.join('\n') === key) n++;
  return n;
}

function sameBodies(rules: FaultRule[], a: number, b: number, n: number): boolean {
  if (b + n > rules.length) return false;
  for (let k = 0; k < n; k++) {
    const { hosts: _x, ...x } = rules[a + k]!;
    const { hosts: _y, ...y } = rules[b + k]!;
    if (JSON.stringify(x) !== JSON.stringify(y)) return false;
  }
  return true;
}

function dedupe(list: string[]): string[] {
  return [...new Set(list)];
}
