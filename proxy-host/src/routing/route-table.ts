// The router's first step: pick a virtual host by :authority, then the first route whose match passes.
// Everything that depends only on config (domain maps, full-match regexes, lowercased names, cumulative
// split weights, compiled header operations, the RouteHit objects themselves) is built in the
// constructor (STYLE §4 rule 8); `match` allocates nothing unless a route needs the decoded query or a
// regex has to run on a path that carries a query string.

import type {
  HeaderMatch,
  HeaderOperations,
  RouteAction,
  RouteConfig,
  RouteMatch,
  StringMatch,
  VirtualHostConfig,
  WeightedCluster,
} from '../../../mesh/src/proxy-config.ts';

/** What the router needs to know about a request. */
export interface RequestView {
  /** `:authority` as received (case and port preserved). */
  authority: string;
  /** `:path`, query string included. */
  path: string;
  method: string;
  /** Flat `[name0, value0, name1, value1, ...]`, lowercase names. */
  headers: readonly string[];
  /** Destination port of the listener's original target, for `RouteMatch.port`. */
  port?: number;
}

export interface RouteHit {
  virtualHost: VirtualHostConfig;
  route: RouteConfig;
  /** Index of the RouteMatch that passed; -1 when the route has no match conditions. */
  matchIndex: number;
}

// ---------------------------------------------------------------------------------------------------
// Compiled matchers

const EXACT = 0;
const PREFIX = 1;
const REGEX = 2;
const PRESENT = 3;
const ABSENT = 4;

interface CompiledCondition {
  kind: number;
  value: string;
  /** Full-match regex (`^(?:…)$`, no flags, so `test` is stateless); only for REGEX. */
  re: RegExp | undefined;
}

interface CompiledMatch {
  uri: CompiledCondition | undefined;
  method: CompiledCondition | undefined;
  authority: CompiledCondition | undefined;
  /** Parallel arrays: lowercase header name and its condition. */
  headerNames: string[];
  headerConds: CompiledCondition[];
  withoutNames: string[];
  withoutConds: CompiledCondition[];
  queryNames: string[];
  queryConds: CompiledCondition[];
  /** -1 when the match does not constrain the port. */
  port: number;
}

interface CompiledRoute {
  matches: CompiledMatch[];
  /** hits[i] is returned when matches[i] passes; hits[0] (matchIndex -1) when there are no matches. */
  hits: RouteHit[];
}

interface CompiledVirtualHost {
  config: VirtualHostConfig;
  routes: CompiledRoute[];
}

function compileStringMatch(m: StringMatch): CompiledCondition {
  if ('exact' in m) return { kind: EXACT, value: m.exact, re: undefined };
  if ('prefix' in m) return { kind: PREFIX, value: m.prefix, re: undefined };
  // Istio regexes are RE2 and must match the whole value (Envoy safe_regex semantics).
  return { kind: REGEX, value: m.regex, re: new RegExp(`^(?:${m.regex})$`) };
}

function compileHeaderMatch(m: HeaderMatch): CompiledCondition {
  if ('present' in m) return { kind: m.present ? PRESENT : ABSENT, value: '', re: undefined };
  return compileStringMatch(m);
}

function compileMatch(m: RouteMatch): CompiledMatch {
  const out: CompiledMatch = {
    uri: m.uri === undefined ? undefined : compileStringMatch(m.uri),
    method: m.method === undefined ? undefined : compileStringMatch(m.method),
    authority: m.authority === undefined ? undefined : compileStringMatch(m.authority),
    headerNames: [],
    headerConds: [],
    withoutNames: [],
    withoutConds: [],
    queryNames: [],
    queryConds: [],
    port: m.port ?? -1,
  };
  if (m.headers !== undefined) {
    for (const name of Object.keys(m.headers)) {
      out.headerNames.push(name.toLowerCase());
      out.headerConds.push(compileHeaderMatch(m.headers[name]!));
    }
  }
  if (m.withoutHeaders !== undefined) {
    for (const name of Object.keys(m.withoutHeaders)) {
      out.withoutNames.push(name.toLowerCase());
      out.withoutConds.push(compileHeaderMatch(m.withoutHeaders[name]!));
    }
  }
  if (m.queryParams !== undefined) {
    for (const name of Object.keys(m.queryParams)) {
      out.queryNames.push(name);
      out.queryConds.push(compileHeaderMatch(m.queryParams[name]!));
    }
  }
  return out;
}

/** Exact/prefix/regex on a value that is known to exist. */
function testValue(c: CompiledCondition, value: string): boolean {
  switch (c.kind) {
    case EXACT:
      return value === c.value;
    case PREFIX:
      return value.startsWith(c.value);
    case REGEX:
      return (c.re as RegExp).test(value);
    default:
      return true; // PRESENT: the caller checked existence
  }
}

/** A header/query condition against a value that may be missing. */
function testOptional(c: CompiledCondition, value: string | undefined): boolean {
  if (c.kind === ABSENT) return value === undefined;
  if (value === undefined) return false;
  return testValue(c, value);
}

/** First value of a header in a flat list (a repeated header compares its first value). */
function firstHeader(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] === name) return headers[i + 1];
  }
  return undefined;
}

/** Query components are form-encoded: `+` is a space, then percent-decoding (kept raw when malformed). */
function decodeQueryComponent(raw: string): string {
  let s = raw;
  if (s.indexOf('+') !== -1) s = s.replaceAll('+', ' ');
  if (s.indexOf('%') === -1) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// ---------------------------------------------------------------------------------------------------
// Domain selection

/** `host:port` → `host` (IPv6 literals keep their brackets); returns the input when there is no port. */
function stripPort(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon <= 0) return host;
  if (host.charCodeAt(0) === 0x5b /* [ */ && host.lastIndexOf(']') > colon) return host;
  for (let i = colon + 1; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return host;
  }
  return host.slice(0, colon);
}

interface WildcardEntry {
  /** The fixed part: ".example.com" for "*.example.com", "api." for "api.*". */
  part: string;
  vhost: CompiledVirtualHost;
}

export class RouteTable {
  private readonly exact = new Map<string, CompiledVirtualHost>();
  /** `*.x` domains, longest suffix first (Envoy: exact, then suffix wildcards, then prefix wildcards, then `*`). */
  private readonly suffixes: WildcardEntry[] = [];
  /** `x.*` domains, longest prefix first. */
  private readonly prefixes: WildcardEntry[] = [];
  private readonly catchAll: CompiledVirtualHost | undefined;
  /** Some route matches on `port`: only then does a request's port need working out (RequestView.port). */
  readonly matchesPort: boolean;

  // Per-request scratch, valid during one synchronous `match` call (the proxy is single-threaded per
  // worker). It avoids allocating a context object per request.
  private reqPath = '';
  private pathEnd = 0;
  private pathOnly: string | undefined = undefined;
  private queryParsed = false;
  /** Decoded query as a flat `[name, value, ...]` list, reused across requests. */
  private readonly query: string[] = [];

  constructor(virtualHosts: readonly VirtualHostConfig[]) {
    let catchAll: CompiledVirtualHost | undefined;
    let matchesPort = false;
    for (const vh of virtualHosts) {
      const compiled: CompiledVirtualHost = { config: vh, routes: vh.routes.map((r) => compileRoute(vh, r)) };
      for (const r of compiled.routes) for (const m of r.matches) if (m.port !== -1) matchesPort = true;
      for (const raw of vh.domains) {
        const domain = raw.toLowerCase();
        // A domain claimed twice keeps its first virtual host (Envoy rejects duplicates outright).
        if (domain === '*') {
          catchAll ??= compiled;
        } else if (domain.startsWith('*')) {
          const part = domain.slice(1);
          if (!this.suffixes.some((e) => e.part === part)) this.suffixes.push({ part, vhost: compiled });
        } else if (domain.endsWith('*')) {
          const part = domain.slice(0, -1);
          if (!this.prefixes.some((e) => e.part === part)) this.prefixes.push({ part, vhost: compiled });
        } else if (!this.exact.has(domain)) {
          this.exact.set(domain, compiled);
        }
      }
    }
    this.catchAll = catchAll;
    this.matchesPort = matchesPort;
    this.suffixes.sort((a, b) => b.part.length - a.part.length);
    this.prefixes.sort((a, b) => b.part.length - a.part.length);
  }

  /** The virtual host for an authority: exact host, longest `*.suffix`, longest `prefix.*`, then `*`. */
  selectVirtualHost(authority: string): VirtualHostConfig | undefined {
    return this.selectCompiled(authority)?.config;
  }

  match(req: RequestView): RouteHit | undefined {
    const vh = this.selectCompiled(req.authority);
    if (vh === undefined) return undefined;

    const path = req.path;
    this.reqPath = path;
    this.pathEnd = pathLength(path);
    this.pathOnly = undefined;
    this.queryParsed = false;

    const routes = vh.routes;
    for (let r = 0; r < routes.length; r++) {
      const route = routes[r]!;
      const matches = route.matches;
      if (matches.length === 0) return route.hits[0];
      for (let m = 0; m < matches.length; m++) {
        if (this.passes(matches[m]!, req)) return route.hits[m];
      }
    }
    return undefined;
  }

  private selectCompiled(authority: string): CompiledVirtualHost | undefined {
    const lower = authority.toLowerCase();
    let vh = this.exact.get(lower);
    if (vh !== undefined) return vh;
    const host = stripPort(lower);
    if (host !== lower) {
      vh = this.exact.get(host);
      if (vh !== undefined) return vh;
    }
    // Linear scans: a sidecar has few wildcard domains, and endsWith/startsWith allocate nothing.
    const suffixes = this.suffixes;
    for (let i = 0; i < suffixes.length; i++) {
      const e = suffixes[i]!;
      // The wildcard stands for at least one character.
      if (host.length > e.part.length && host.endsWith(e.part)) return e.vhost;
    }
    const prefixes = this.prefixes;
    for (let i = 0; i < prefixes.length; i++) {
      const e = prefixes[i]!;
      if (host.length > e.part.length && host.startsWith(e.part)) return e.vhost;
    }
    return this.catchAll;
  }

  private passes(m: CompiledMatch, req: RequestView): boolean {
    if (m.port !== -1 && req.port !== m.port) return false;
    const uri = m.uri;
    if (uri !== undefined) {
      const path = this.reqPath;
      const end = this.pathEnd;
      switch (uri.kind) {
        case EXACT:
          if (end !== uri.value.length || !path.startsWith(uri.value)) return false;
          break;
        case PREFIX:
          if (uri.value.length > end || !path.startsWith(uri.value)) return false;
          break;
        default:
          if (!(uri.re as RegExp).test(this.pathWithoutQuery())) return false;
      }
    }
    if (m.method !== undefined && !testValue(m.method, req.method)) return false;
    if (m.authority !== undefined && !testValue(m.authority, req.authority)) return false;

    const headers = req.headers;
    const names = m.headerNames;
    for (let i = 0; i < names.length; i++) {
      if (!testOptional(m.headerConds[i]!, firstHeader(headers, names[i]!))) return false;
    }
    // withoutHeaders is Envoy's invert_match, which Istio generates for it: a string condition only
    // passes when the header is present with a non-matching value (a missing header fails it, see
    // istio/istio#50988); `present: true` passes when the header is absent, `present: false` when present.
    const without = m.withoutNames;
    for (let i = 0; i < without.length; i++) {
      const c = m.withoutConds[i]!;
      const value = firstHeader(headers, without[i]!);
      if (c.kind === PRESENT || c.kind === ABSENT) {
        if (testOptional(c, value)) return false;
      } else if (value === undefined || testValue(c, value)) {
        return false;
      }
    }
    const qnames = m.queryNames;
    if (qnames.length > 0) {
      const query = this.decodedQuery();
      for (let i = 0; i < qnames.length; i++) {
        if (!testOptional(m.queryConds[i]!, firstHeader(query, qnames[i]!))) return false;
      }
    }
    return true;
  }

  private pathWithoutQuery(): string {
    if (this.pathOnly === undefined) {
      this.pathOnly = this.pathEnd === this.reqPath.length ? this.reqPath : this.reqPath.slice(0, this.pathEnd);
    }
    return this.pathOnly;
  }

  /** Parsed once per request, only when some route asks for query parameters. */
  private decodedQuery(): readonly string[] {
    const query = this.query;
    if (this.queryParsed) return query;
    this.queryParsed = true;
    query.length = 0;
    const path = this.reqPath;
    if (this.pathEnd >= path.length || path.charCodeAt(this.pathEnd) !== 0x3f /* ? */) return query;
    let end = path.indexOf('#', this.pathEnd);
    if (end === -1) end = path.length;
    let start = this.pathEnd + 1;
    while (start < end) {
      let amp = path.indexOf('&', start);
      if (amp === -1 || amp > end) amp = end;
      if (amp > start) {
        const eq = path.indexOf('=', start);
        if (eq === -1 || eq > amp) {
          query.push(decodeQueryComponent(path.slice(start, amp)), '');
        } else {
          query.push(decodeQueryComponent(path.slice(start, eq)), decodeQueryComponent(path.slice(eq + 1, amp)));
        }
      }
      start = amp + 1;
    }
    return query;
  }
}

/** Length of the path part of `:path` (before `?` or `#`). */
function pathLength(path: string): number {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x3f /* ? */ || c === 0x23 /* # */) return i;
  }
  return path.length;
}

function compileRoute(vh: VirtualHostConfig, route: RouteConfig): CompiledRoute {
  const matches = route.match.map(compileMatch);
  const hits: RouteHit[] =
    matches.length === 0
      ? [Object.freeze({ virtualHost: vh, route, matchIndex: -1 })]
      : matches.map((_, i) => Object.freeze({ virtualHost: vh, route, matchIndex: i }));
  // Warm the per-config caches so the first request does not pay for them.
  compiledOps(route.requestHeaders);
  compiledOps(route.responseHeaders);
  if (route.action.kind === 'forward') {
    cumulativeWeights(route.action.destinations);
    for (const d of route.action.destinations) {
      compiledOps(d.requestHeaders);
      compiledOps(d.responseHeaders);
    }
  }
  return { matches, hits };
}

// ---------------------------------------------------------------------------------------------------
// Weighted split

/** Cumulative weights per destination list, keyed by the (immutable) config array itself. */
const cumulativeCache = new WeakMap<readonly WeightedCluster[], Float64Array>();

function cumulativeWeights(destinations: readonly WeightedCluster[]): Float64Array {
  let cum = cumulativeCache.get(destinations);
  if (cum === undefined) {
    cum = new Float64Array(destinations.length);
    let total = 0;
    for (let i = 0; i < destinations.length; i++) {
      const w = destinations[i]!.weight;
      total += w > 0 ? w : 0;
      cum[i] = total;
    }
    cumulativeCache.set(destinations, cum);
  }
  return cum;
}

/**
 * Picks a destination for `random` in [0, 1). Weights are integers out of 100 (any positive total works);
 * zero-weight destinations are never picked. The cumulative weights are computed once per destination list.
 */
export function pickWeighted(destinations: readonly WeightedCluster[], random: number): WeightedCluster {
  const n = destinations.length;
  if (n === 1) return destinations[0]!;
  if (n === 0) throw new RangeError('pickWeighted: a forward route needs at least one destination');
  const cum = cumulativeWeights(destinations);
  const total = cum[n - 1]!;
  if (total <= 0) return destinations[0]!;
  const target = random * total;
  for (let i = 0; i < n - 1; i++) {
    if (target < cum[i]!) return destinations[i]!;
  }
  return destinations[n - 1]!;
}

// ---------------------------------------------------------------------------------------------------
// Header operations

interface CompiledOps {
  remove: string[];
  /** Flat name/value lists. */
  set: string[];
  add: string[];
}

const opsCache = new WeakMap<HeaderOperations, CompiledOps>();

// Pseudo-headers are never touched by header operations (Envoy refuses to remove or add them; the
// authority changes through rewriteAuthority, the path through rewriteUri).
function compiledOps(ops: HeaderOperations | undefined): CompiledOps | undefined {
  if (ops === undefined) return undefined;
  let c = opsCache.get(ops);
  if (c === undefined) {
    c = { remove: [], set: [], add: [] };
    for (const name of ops.remove ?? []) {
      const n = name.toLowerCase();
      if (!n.startsWith(':')) c.remove.push(n);
    }
    if (ops.set !== undefined) {
      for (const name of Object.keys(ops.set)) {
        const n = name.toLowerCase();
        if (!n.startsWith(':')) c.set.push(n, ops.set[name]!);
      }
    }
    if (ops.add !== undefined) {
      for (const name of Object.keys(ops.add)) {
        const n = name.toLowerCase();
        if (!n.startsWith(':')) c.add.push(n, ops.add[name]!);
      }
    }
    opsCache.set(ops, c);
  }
  return c;
}

/**
 * Applies Istio header operations in place, in Envoy's order: remove, then set (the first occurrence
 * takes the new value, later occurrences are dropped, a missing header is appended), then add (append).
 */
export function applyHeaderOperations(headers: string[], ops: HeaderOperations | undefined): void {
  const c = compiledOps(ops);
  if (c === undefined) return;

  const remove = c.remove;
  if (remove.length > 0) {
    let w = 0;
    for (let r = 0; r + 1 < headers.length; r += 2) {
      const name = headers[r]!;
      let drop = false;
      for (let k = 0; k < remove.length; k++) {
        if (remove[k] === name) {
          drop = true;
          break;
        }
      }
      if (!drop) {
        if (w !== r) {
          headers[w] = name;
          headers[w + 1] = headers[r + 1]!;
        }
        w += 2;
      }
    }
    headers.length = w;
  }

  const set = c.set;
  for (let k = 0; k < set.length; k += 2) setHeader(headers, set[k]!, set[k + 1]!);

  const add = c.add;
  for (let k = 0; k < add.length; k++) headers.push(add[k]!);
}

function setHeader(headers: string[], name: string, value: string): void {
  let found = -1;
  let w = 0;
  for (let r = 0; r + 1 < headers.length; r += 2) {
    if (headers[r] === name) {
      if (found !== -1) continue; // later duplicates are dropped
      found = w;
      headers[w] = name;
      headers[w + 1] = value;
      w += 2;
      continue;
    }
    if (w !== r) {
      headers[w] = headers[r]!;
      headers[w + 1] = headers[r + 1]!;
    }
    w += 2;
  }
  headers.length = w;
  if (found === -1) headers.push(name, value);
}

// ---------------------------------------------------------------------------------------------------
// Rewrites and redirects

/**
 * Istio `rewrite.uri`. After a prefix match the matched prefix is replaced and the rest of the path kept;
 * after an exact or regex match, or with no uri match, the whole path is replaced. The query string is
 * always kept.
 */
export function rewritePath(path: string, match: RouteMatch | undefined, rewriteUri: string): string {
  const end = pathLength(path);
  const rest = end === path.length ? '' : path.slice(end);
  const uri = match?.uri;
  let newPath: string;
  if (uri !== undefined && 'prefix' in uri && uri.prefix.length <= end && path.startsWith(uri.prefix)) {
    newPath = rewriteUri + path.slice(uri.prefix.length, end);
  } else {
    newPath = rewriteUri;
  }
  if (newPath === '') newPath = '/';
  return newPath + rest;
}

function defaultPort(scheme: string): string {
  return scheme === 'https' ? '443' : scheme === 'http' ? '80' : '';
}

/** The port written in an `:authority` (`host:port`), else undefined. */
export function authorityPort(authority: string): number | undefined {
  const host = stripPort(authority);
  return host === authority ? undefined : Number(authority.slice(host.length + 1));
}

/** Splits `host[:port]` into [host, port] with port '' when absent. */
function splitHostPort(authority: string): [string, string] {
  const host = stripPort(authority);
  return host === authority ? [authority, ''] : [host, authority.slice(host.length + 1)];
}

/**
 * The `location` of an Istio HTTPRedirect. `uri` replaces the path (the request's query is kept unless
 * `uri` carries its own, as Envoy's path_redirect does), `authority`, `scheme` and `port` replace theirs.
 * A port equal to the scheme's default is left out, and a scheme change drops the old scheme's default
 * port (http://a:80 → https://a).
 */
export function redirectLocation(
  action: Extract<RouteAction, { kind: 'redirect' }>,
  req: { scheme: string; authority: string; path: string },
): string {
  const scheme = action.scheme ?? req.scheme;
  const [host, authorityPort] = splitHostPort(action.authority ?? req.authority);
  let port: string;
  if (action.port !== undefined) {
    port = String(action.port);
  } else if (action.scheme !== undefined && action.scheme !== req.scheme && authorityPort === defaultPort(req.scheme)) {
    port = '';
  } else {
    port = authorityPort;
  }
  if (port === defaultPort(scheme)) port = '';

  let path = req.path;
  if (action.uri !== undefined) {
    if (action.uri.indexOf('?') !== -1) {
      path = action.uri;
    } else {
      const end = pathLength(req.path);
      path = action.uri + (end === req.path.length ? '' : req.path.slice(end));
    }
  }
  return `${scheme}://${host}${port === '' ? '' : ':' + port}${path}`;
}
