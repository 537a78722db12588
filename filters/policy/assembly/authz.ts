// Authorization with Istio AuthorizationPolicy semantics, on the compiled configuration:
//   1. a request that matches any DENY policy is denied;
//   2. AUDIT policies it matches are logged (and counted), nothing else;
//   3. with no ALLOW policy it is allowed; otherwise one ALLOW policy must match, or it is denied.
// A policy matches when any of its rules matches (no rules: it never matches, so an ALLOW policy
// without rules denies everything). A rule matches when its `from` (any source), `to` (any operation)
// and `when` (every condition) match; a part left out matches everything.
import { Cidr, IpAddr, StringMatcher, namespaceOf, normalizePath, parseAddressIp, principalOf } from "./match";
import { Counter, getPropertyBytes, getPropertyInt, getPropertyString, getRequestHeader } from "./host";
import { RequestAuth } from "./request-auth";

export const enum Action {
  Allow = 0,
  Deny = 1,
  Audit = 2,
}

/** The request attribute a condition looks at. */
export const enum Attr {
  Principal = 0, // peer certificate URI SAN without "spiffe://"
  Namespace = 1, // "/ns/<ns>/" of the principal
  SourceIp = 2, // ip of source.address
  DestinationIp = 3, // ip of destination.address
  Host = 4, // :authority, lowercase
  Port = 5, // destination.port
  Method = 6, // :method
  Path = 7, // :path, normalized, without query
  Header = 8, // a request header (Cond.name: the lowercase name)
  Property = 9, // a string property (Cond.name: the NUL-joined path), e.g. connection.sni
  RequestAuth = 10, // request.auth.* from the verified JWT (Cond.authPath), see request-auth.ts
}

/**
 * One field of a source or operation, or one half of a `when` condition. It matches when the attribute
 * is present and one of the patterns matches it; a negated condition matches otherwise (so
 * `notPrincipals: ["*"]` matches requests without a peer identity).
 */
export class Cond {
  attr: Attr;
  negate: bool;
  strings: StringMatcher[] = [];
  cidrs: Cidr[] = [];
  ports: i32[] = [];
  /** Header name or property path, UTF-8 (kept here so the host reads it in place). */
  name: ArrayBuffer = new ArrayBuffer(0);
  /** For Attr.RequestAuth: ["principal"], ["audiences"], ["presenter"] or ["claims", name, ...]. */
  authPath: string[] = [];

  constructor(attr: Attr, negate: bool) {
    this.attr = attr;
    this.negate = negate;
  }
}

export class Rule {
  /** Each source is a list of conditions that must all hold; any source may match. Empty: any. */
  from: Array<Cond[]> = [];
  to: Array<Cond[]> = [];
  /** All must hold. */
  when: Cond[] = [];
}

export class Policy {
  /** "<namespace>.<name>" (or just the name without a namespace). */
  id: string;
  action: Action;
  rules: Rule[] = [];
  /** policy_authz_decisions_total{decision=<action>,policy=<id>} */
  counter: Counter | null = null;

  constructor(id: string, action: Action) {
    this.id = id;
    this.action = action;
  }
}

/** The attributes of one request, read from the host on first use only. */
export class RequestAttrs {
  /** request.auth.*, read on first use. */
  auth: RequestAuth = new RequestAuth();
  private principalRead: bool = false;
  private principal_: string | null = null;
  private sourceRead: bool = false;
  private sourceIp_: IpAddr | null = null;
  private destinationRead: bool = false;
  private destinationIp_: IpAddr | null = null;
  private hostRead: bool = false;
  private host_: string | null = null;
  private portRead: bool = false;
  private port_: i64 = -1;
  private methodRead: bool = false;
  private method_: string | null = null;
  private pathRead: bool = false;
  private path_: string | null = null;

  principal(): string | null {
    if (!this.principalRead) {
      this.principalRead = true;
      const san = getPropertyString(P_PEER_URI_SAN);
      this.principal_ = san === null || san.length == 0 ? null : principalOf(san);
    }
    return this.principal_;
  }

  sourceIp(): IpAddr | null {
    if (!this.sourceRead) {
      this.sourceRead = true;
      const a = getPropertyString(P_SOURCE_ADDRESS);
      this.sourceIp_ = a === null ? null : parseAddressIp(a);
    }
    return this.sourceIp_;
  }

  destinationIp(): IpAddr | null {
    if (!this.destinationRead) {
      this.destinationRead = true;
      const a = getPropertyString(P_DESTINATION_ADDRESS);
      this.destinationIp_ = a === null ? null : parseAddressIp(a);
    }
    return this.destinationIp_;
  }

  host(): string | null {
    if (!this.hostRead) {
      this.hostRead = true;
      const h = getRequestHeader(H_AUTHORITY);
      this.host_ = h === null ? null : h.toLowerCase();
    }
    return this.host_;
  }

  port(): i64 {
    if (!this.portRead) {
      this.portRead = true;
      this.port_ = getPropertyInt(P_DESTINATION_PORT);
    }
    return this.port_;
  }

  method(): string | null {
    if (!this.methodRead) {
      this.methodRead = true;
      this.method_ = getRequestHeader(H_METHOD);
    }
    return this.method_;
  }

  path(): string | null {
    if (!this.pathRead) {
      this.pathRead = true;
      const p = getRequestHeader(H_PATH);
      this.path_ = p === null ? null : normalizePath(p);
    }
    return this.path_;
  }
}

const P_PEER_URI_SAN = String.UTF8.encode("connection\0uri_san_peer_certificate");
const P_SOURCE_ADDRESS = String.UTF8.encode("source\0address");
const P_DESTINATION_ADDRESS = String.UTF8.encode("destination\0address");
const P_DESTINATION_PORT = String.UTF8.encode("destination\0port");
const H_AUTHORITY = String.UTF8.encode(":authority");
const H_METHOD = String.UTF8.encode(":method");
const H_PATH = String.UTF8.encode(":path");

function anyString(c: Cond, value: string | null): bool {
  if (value === null) return false;
  const list = c.strings;
  for (let i = 0, n = list.length; i < n; i++) {
    if (unchecked(list[i]).matches(value)) return true;
  }
  return false;
}

function anyCidr(c: Cond, ip: IpAddr | null): bool {
  if (ip === null) return false;
  const list = c.cidrs;
  for (let i = 0, n = list.length; i < n; i++) {
    if (unchecked(list[i]).contains(ip)) return true;
  }
  return false;
}

/** Hosts match the authority as sent, and also without its port ("reviews:9080" matches "reviews"). */
function anyHost(c: Cond, host: string | null): bool {
  if (host === null) return false;
  if (anyString(c, host)) return true;
  const colon = host.lastIndexOf(":");
  if (colon > 0 && host.indexOf("]") < colon) return anyString(c, host.substring(0, colon));
  return false;
}

function attributeMatches(c: Cond, req: RequestAttrs): bool {
  switch (c.attr) {
    case Attr.Principal: return anyString(c, req.principal());
    case Attr.Namespace: {
      const p = req.principal();
      if (p === null) return false;
      const ns = namespaceOf(p);
      return ns.length > 0 && anyString(c, ns);
    }
    case Attr.SourceIp: return anyCidr(c, req.sourceIp());
    case Attr.DestinationIp: return anyCidr(c, req.destinationIp());
    case Attr.Host: return anyHost(c, req.host());
    case Attr.Port: {
      const port = req.port();
      if (port < 0) return false;
      const list = c.ports;
      for (let i = 0, n = list.length; i < n; i++) {
        if (<i64>unchecked(list[i]) == port) return true;
      }
      return false;
    }
    case Attr.Method: return anyString(c, req.method());
    case Attr.Path: return anyString(c, req.path());
    case Attr.Header: return anyString(c, getRequestHeader(c.name));
    case Attr.RequestAuth: {
      const values = req.auth.values(c.authPath);
      if (values === null) return false;
      for (let i = 0, n = values.length; i < n; i++) if (anyString(c, unchecked(values[i]))) return true;
      return false;
    }
    default: {
      const bytes = getPropertyBytes(c.name);
      return anyString(c, bytes === null ? null : String.UTF8.decode(bytes));
    }
  }
}

function allHold(conds: Cond[], req: RequestAttrs): bool {
  for (let i = 0, n = conds.length; i < n; i++) {
    const c = unchecked(conds[i]);
    if (attributeMatches(c, req) == c.negate) return false;
  }
  return true;
}

function anyHolds(groups: Array<Cond[]>, req: RequestAttrs): bool {
  const n = groups.length;
  if (n == 0) return true;
  for (let i = 0; i < n; i++) {
    if (allHold(unchecked(groups[i]), req)) return true;
  }
  return false;
}

export function policyMatches(p: Policy, req: RequestAttrs): bool {
  const rules = p.rules;
  for (let i = 0, n = rules.length; i < n; i++) {
    const r = unchecked(rules[i]);
    if (anyHolds(r.from, req) && anyHolds(r.to, req) && allHold(r.when, req)) return true;
  }
  return false;
}

export class AuthzConfig {
  deny: Policy[] = [];
  audit: Policy[] = [];
  allow: Policy[] = [];
  /** {decision="allow",policy="none"}: no ALLOW policy exists. */
  allowedByDefault: Counter | null = null;
  /** {decision="deny",policy="none"}: ALLOW policies exist and none matched. */
  deniedByDefault: Counter | null = null;
}

export class Decision {
  allowed: bool = true;
  /** The policy that decided, or null for the defaults (reported as "none"). */
  policy: Policy | null = null;
  /** AUDIT policies that matched. */
  audited: Policy[] = [];
}

export function authorize(cfg: AuthzConfig, req: RequestAttrs): Decision {
  const d = new Decision();
  const deny = cfg.deny;
  for (let i = 0, n = deny.length; i < n; i++) {
    const p = unchecked(deny[i]);
    if (policyMatches(p, req)) {
      d.allowed = false;
      d.policy = p;
      return d;
    }
  }
  const audit = cfg.audit;
  for (let i = 0, n = audit.length; i < n; i++) {
    const p = unchecked(audit[i]);
    if (policyMatches(p, req)) d.audited.push(p);
  }
  const allow = cfg.allow;
  if (allow.length == 0) return d;
  for (let i = 0, n = allow.length; i < n; i++) {
    const p = unchecked(allow[i]);
    if (policyMatches(p, req)) {
      d.policy = p;
      return d;
    }
  }
  d.allowed = false;
  return d;
}
