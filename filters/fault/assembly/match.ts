// Which rule applies to a request: the first whose hosts cover the request's :authority (port removed)
// and one of whose match entries holds. Semantics follow the proxy's route table
// (proxy-host/src/routing/route-table.ts): uri conditions look at :path without its query string; a
// repeated header compares its first value; withoutHeaders is Envoy's invert_match.
import { HeaderPair, stream_context } from "@solo-io/proxy-runtime";
import { COND_EXACT, COND_PREFIX, COND_PRESENT, HeaderCond, MatchSpec, Rule, StringCond } from "./config";

/** What the rules look at, read once per request. Header names are lowercase. */
export class RequestView {
  /** :authority without its port, lowercased ("" when missing). */
  host: string = "";
  /** :path up to (not including) '?' or '#'. */
  path: string = "";
  method: string = "";
  names: string[] = [];
  values: string[] = [];

  /** First value of a header, or null when the request does not carry it. */
  header(name: string): string | null {
    const names = this.names;
    for (let i = 0, n = names.length; i < n; i++) {
      if (unchecked(names[i]) == name) return unchecked(this.values[i]);
    }
    return null;
  }
}

/** Reads the current stream's request headers (never aborts: a missing map is an empty request). */
export function readRequest(): RequestView {
  const view = new RequestView();
  const pairs: HeaderPair[] = stream_context.headers.request.get_headers();
  for (let i = 0, n = pairs.length; i < n; i++) {
    const pair = unchecked(pairs[i]);
    view.names.push(String.UTF8.decode(pair.key).toLowerCase());
    view.values.push(String.UTF8.decode(pair.value));
  }
  const authority = view.header(":authority");
  view.host = authority === null ? "" : stripPort(authority).toLowerCase();
  const path = view.header(":path");
  view.path = path === null ? "" : pathOnly(path);
  const method = view.header(":method");
  view.method = method === null ? "" : method;
  return view;
}

/** The first rule that applies, or null. */
export function findRule(rules: Rule[], req: RequestView): Rule | null {
  for (let i = 0, n = rules.length; i < n; i++) {
    const rule = unchecked(rules[i]);
    if (!hostCovered(rule.hosts, req.host)) continue;
    if (matchesAny(rule.match, req)) return rule;
  }
  return null;
}

/** "host:port" -> "host"; "[v6]:port" -> "[v6]"; anything without a numeric port is kept. */
export function stripPort(authority: string): string {
  const colon = authority.lastIndexOf(":");
  if (colon <= 0) return authority;
  if (authority.charCodeAt(0) == 0x5b && authority.lastIndexOf("]") > colon) return authority;
  for (let i = colon + 1, n = authority.length; i < n; i++) {
    const c = authority.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return authority;
  }
  return authority.substring(0, colon);
}

function pathOnly(path: string): string {
  for (let i = 0, n = path.length; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c == 0x3f || c == 0x23) return path.substring(0, i);
  }
  return path;
}

function hostCovered(hosts: string[], host: string): bool {
  const n = hosts.length;
  if (n == 0) return true;
  for (let i = 0; i < n; i++) {
    const pattern = unchecked(hosts[i]);
    if (pattern == host || pattern == "*") return true;
    // "*.example.com" covers "a.example.com" (and deeper names), not "example.com".
    if (pattern.startsWith("*.") && host.length > pattern.length - 1 && host.endsWith(pattern.substring(1))) return true;
  }
  return false;
}

function matchesAny(list: MatchSpec[], req: RequestView): bool {
  const n = list.length;
  if (n == 0) return true;
  for (let i = 0; i < n; i++) {
    if (matches(unchecked(list[i]), req)) return true;
  }
  return false;
}

function matches(m: MatchSpec, req: RequestView): bool {
  const uri = m.uri;
  if (uri !== null && !test(uri, uri.ignoreCase ? req.path.toLowerCase() : req.path)) return false;
  const method = m.method;
  if (method !== null && !test(method, req.method)) return false;
  const headers = m.headers;
  for (let i = 0, n = headers.length; i < n; i++) {
    const h = unchecked(headers[i]);
    const value = req.header(h.name);
    if (value === null) return false;
    if (h.cond.kind != COND_PRESENT && !test(h.cond, value)) return false;
  }
  const without = m.withoutHeaders;
  for (let i = 0, n = without.length; i < n; i++) {
    if (!passesWithout(unchecked(without[i]), req)) return false;
  }
  return true;
}

/** A withoutHeaders entry: `{}` wants the header absent; a string condition wants it present with another value. */
function passesWithout(h: HeaderCond, req: RequestView): bool {
  const value = req.header(h.name);
  if (h.cond.kind == COND_PRESENT) return value === null;
  if (value === null) return false;
  return !test(h.cond, value);
}

function test(c: StringCond, value: string): bool {
  if (c.kind == COND_EXACT) return value == c.value;
  if (c.kind == COND_PREFIX) return value.startsWith(c.value);
  return true;
}
