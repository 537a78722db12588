// The plugin configuration (written by mesh/src/translate/request-authn.ts from RequestAuthentication
// resources, or by hand), checked and compiled once in on_configure. Every error names its field:
//   rules[0].remoteJwks.cluster: is required
import { Checker, JKind, JValue, parseJson } from "../../common/assembly/json";
import { Jwk, parseJwks } from "./jwks";

export class Location {
  /** 0: header, 1: query parameter, 2: cookie. */
  kind: i32;
  /** Header name (lowercase), parameter or cookie name. */
  name: string;
  /** Header value prefix (compared without case), e.g. "Bearer ". */
  prefix: string = "";
  nameBytes: ArrayBuffer;

  constructor(kind: i32, name: string) {
    this.kind = kind;
    this.name = name;
    this.nameBytes = String.UTF8.encode(name);
  }
}

export const LOC_HEADER: i32 = 0;
export const LOC_PARAM: i32 = 1;
export const LOC_COOKIE: i32 = 2;

export class ClaimHeader {
  header: string;
  headerBytes: ArrayBuffer;
  /** The claim's path: "a.b" is the member b of the object claim a. */
  claim: string[];

  constructor(header: string, claim: string) {
    this.header = header;
    this.headerBytes = String.UTF8.encode(header);
    this.claim = claim.split(".");
  }
}

export class RemoteJwks {
  uri: string = "";
  cluster: string = "";
  authority: string = "";
  path: string = "";
  timeoutMs: u32 = 5000;
  /**
   * OpenID Connect discovery: `path` is the issuer's /.well-known/openid-configuration, whose
   * jwks_uri (on the same origin as `uri`, so through the same cluster) is then fetched.
   */
  discovery: bool = false;
}

export class Rule {
  index: i32 = 0;
  issuer: string = "";
  audiences: string[] = [];
  locations: Location[] = [];
  forwardOriginalToken: bool = false;
  outputPayloadToHeader: string = "";
  outputPayloadBytes: ArrayBuffer = new ArrayBuffer(0);
  claimHeaders: ClaimHeader[] = [];
  /** null: inline keys only. */
  remote: RemoteJwks | null = null;
  /** Current keys (inline, or the last good fetch). */
  keys: Jwk[] = [];
  /** Remote state, kept by the root context. */
  fetched: bool = false;
  inFlight: u32 = 0;
  nextFetchNs: u64 = 0;
  lastFetchNs: u64 = 0;
  lastError: string = "";
  /** Streams waiting for this rule's keys (context ids). */
  waiting: u32[] = [];
  /** With discovery: the key set's path from the issuer's jwks_uri, "" until discovered. */
  jwksPath: string = "";
}

export class AuthnConfig {
  rules: Rule[] = [];
  clockSkewSeconds: i64 = 60;
  maxTokenBytes: i32 = 16384;
  jwksRefreshMs: u64 = 1_200_000;
  jwksRetryMs: u64 = 5_000;
  kidRefreshMinMs: u64 = 1_000;
}

export class ConfigResult {
  config: AuthnConfig | null = null;
  error: string = "";
}

const TOP_KEYS: string[] = ["rules", "clockSkewSeconds", "maxTokenBytes", "jwksRefreshMs", "jwksRetryMs", "kidRefreshMinMs"];
const RULE_KEYS: string[] = [
  "issuer", "audiences", "jwks", "remoteJwks", "fromHeaders", "fromParams", "fromCookies", "forwardOriginalToken",
  "outputPayloadToHeader", "outputClaimToHeaders",
];
const REMOTE_KEYS: string[] = ["uri", "cluster", "authority", "path", "timeoutMs", "discovery"];
const HEADER_KEYS: string[] = ["name", "prefix"];
const CLAIM_KEYS: string[] = ["header", "claim"];

export function compileConfig(text: string): ConfigResult {
  const result = new ConfigResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    result.error = parsed.error;
    return result;
  }
  const c = new Checker(text);
  const config = compile(c, root);
  if (c.failed) result.error = c.error;
  else result.config = config;
  return result;
}

function nonEmpty(c: Checker, v: JValue | null, path: string): string {
  const s = c.str(v, path, true);
  if (!c.failed && s.length == 0) c.fail(path, "must not be empty");
  return s;
}

/** A header name: lowercase token characters (as the proxy keeps header names). */
function headerName(c: Checker, v: JValue | null, path: string): string {
  const s = nonEmpty(c, v, path).toLowerCase();
  if (c.failed) return s;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    const ok = (ch >= 0x61 && ch <= 0x7a) || (ch >= 0x30 && ch <= 0x39) || ch == 0x2d || ch == 0x5f || ch == 0x2e;
    if (!ok) {
      c.fail(path, "\"" + s + "\" is not a valid header name");
      break;
    }
  }
  return s;
}

function compile(c: Checker, root: JValue): AuthnConfig {
  const config = new AuthnConfig();
  if (!c.object(root, "", TOP_KEYS)) return config;
  config.clockSkewSeconds = <i64>c.int(root.get("clockSkewSeconds"), "clockSkewSeconds", 0, 600, 60);
  config.maxTokenBytes = <i32>c.int(root.get("maxTokenBytes"), "maxTokenBytes", 256, 65536, 16384);
  config.jwksRefreshMs = <u64>c.int(root.get("jwksRefreshMs"), "jwksRefreshMs", 100, 86400000, 1200000);
  config.jwksRetryMs = <u64>c.int(root.get("jwksRetryMs"), "jwksRetryMs", 100, 3600000, 5000);
  config.kidRefreshMinMs = <u64>c.int(root.get("kidRefreshMinMs"), "kidRefreshMinMs", 0, 3600000, 1000);
  const rules = c.array(root.get("rules"), "rules");
  for (let i = 0; i < rules.length && !c.failed; i++) {
    const r = rule(c, rules[i], "rules[" + i.toString() + "]");
    r.index = i;
    config.rules.push(r);
  }
  return config;
}

function rule(c: Checker, v: JValue, path: string): Rule {
  const r = new Rule();
  if (!c.object(v, path, RULE_KEYS)) return r;
  r.issuer = nonEmpty(c, v.get("issuer"), path + ".issuer");
  const auds = c.array(v.get("audiences"), path + ".audiences");
  for (let i = 0; i < auds.length && !c.failed; i++) r.audiences.push(nonEmpty(c, auds[i], path + ".audiences[" + i.toString() + "]"));
  const inline = v.get("jwks");
  const remote = v.get("remoteJwks");
  if (c.failed) return r;
  if ((inline === null || inline.kind == JKind.Null) == (remote === null || remote.kind == JKind.Null)) {
    c.fail(path, "needs exactly one of jwks and remoteJwks");
    return r;
  }
  if (inline !== null && inline.kind != JKind.Null) {
    const text = c.str(inline, path + ".jwks", true);
    if (c.failed) return r;
    const set = parseJwks(text);
    if (set.error.length > 0) {
      c.fail(path + ".jwks", set.error);
      return r;
    }
    r.keys = set.keys;
  } else {
    const rp = path + ".remoteJwks";
    const m = <JValue>remote;
    if (!c.object(m, rp, REMOTE_KEYS)) return r;
    const jr = new RemoteJwks();
    jr.uri = c.str(m.get("uri"), rp + ".uri");
    jr.cluster = nonEmpty(c, m.get("cluster"), rp + ".cluster");
    jr.authority = nonEmpty(c, m.get("authority"), rp + ".authority");
    jr.path = nonEmpty(c, m.get("path"), rp + ".path");
    jr.timeoutMs = <u32>c.int(m.get("timeoutMs"), rp + ".timeoutMs", 1, 600000, 5000);
    if (!c.failed && !jr.path.startsWith("/")) c.fail(rp + ".path", "must start with '/'");
    jr.discovery = c.bool(m.get("discovery"), rp + ".discovery");
    if (!c.failed && jr.discovery && originOf(jr.uri).length == 0) c.fail(rp + ".uri", "must be an http or https URL (discovery compares jwks_uri's origin with it)");
    r.remote = jr;
  }
  const headers = c.array(v.get("fromHeaders"), path + ".fromHeaders");
  for (let i = 0; i < headers.length && !c.failed; i++) {
    const hp = path + ".fromHeaders[" + i.toString() + "]";
    if (!c.object(headers[i], hp, HEADER_KEYS)) break;
    const loc = new Location(LOC_HEADER, headerName(c, headers[i].get("name"), hp + ".name"));
    loc.prefix = c.str(headers[i].get("prefix"), hp + ".prefix");
    r.locations.push(loc);
  }
  const params = c.array(v.get("fromParams"), path + ".fromParams");
  for (let i = 0; i < params.length && !c.failed; i++) r.locations.push(new Location(LOC_PARAM, nonEmpty(c, params[i], path + ".fromParams[" + i.toString() + "]")));
  const cookies = c.array(v.get("fromCookies"), path + ".fromCookies");
  for (let i = 0; i < cookies.length && !c.failed; i++) r.locations.push(new Location(LOC_COOKIE, nonEmpty(c, cookies[i], path + ".fromCookies[" + i.toString() + "]")));
  if (!c.failed && r.locations.length == 0) {
    // Istio's default locations: Authorization: Bearer <token>, then ?access_token=<token>.
    const auth = new Location(LOC_HEADER, "authorization");
    auth.prefix = "Bearer ";
    r.locations.push(auth);
    r.locations.push(new Location(LOC_PARAM, "access_token"));
  }
  r.forwardOriginalToken = c.bool(v.get("forwardOriginalToken"), path + ".forwardOriginalToken");
  const out = v.get("outputPayloadToHeader");
  if (out !== null && out.kind != JKind.Null) {
    r.outputPayloadToHeader = headerName(c, out, path + ".outputPayloadToHeader");
    r.outputPayloadBytes = String.UTF8.encode(r.outputPayloadToHeader);
  }
  const claims = c.array(v.get("outputClaimToHeaders"), path + ".outputClaimToHeaders");
  for (let i = 0; i < claims.length && !c.failed; i++) {
    const cp = path + ".outputClaimToHeaders[" + i.toString() + "]";
    if (!c.object(claims[i], cp, CLAIM_KEYS)) break;
    const header = headerName(c, claims[i].get("header"), cp + ".header");
    const claim = nonEmpty(c, claims[i].get("claim"), cp + ".claim");
    if (!c.failed) r.claimHeaders.push(new ClaimHeader(header, claim));
  }
  return r;
}

/**
 * "scheme://host:port" of an http(s) URL, lowercase, with the scheme's default port written out;
 * "" when the text is not one (userinfo is refused).
 */
export function originOf(url: string): string {
  let scheme = "";
  let rest = "";
  if (url.startsWith("https://")) {
    scheme = "https";
    rest = url.substring(8);
  } else if (url.startsWith("http://")) {
    scheme = "http";
    rest = url.substring(7);
  } else {
    return "";
  }
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const ch = rest.charCodeAt(i);
    if (ch == 0x2f || ch == 0x3f || ch == 0x23) {
      end = i;
      break;
    }
  }
  let authority = rest.substring(0, end).toLowerCase();
  if (authority.length == 0 || authority.indexOf("@") >= 0) return "";
  // A port after the host (an IPv6 literal ends with "]").
  const colon = authority.lastIndexOf(":");
  if (colon < 0 || colon < authority.lastIndexOf("]")) authority += scheme == "https" ? ":443" : ":80";
  return scheme + "://" + authority;
}

/** The path and query of an http(s) URL ("/" when it has none); "" when the text is not one. */
export function pathOf(url: string): string {
  const origin = originOf(url);
  if (origin.length == 0) return "";
  const start = url.indexOf("//") + 2;
  let i = start;
  while (i < url.length) {
    const ch = url.charCodeAt(i);
    if (ch == 0x2f || ch == 0x3f || ch == 0x23) break;
    i++;
  }
  let path = url.substring(i);
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.substring(0, hash);
  if (path.length == 0 || path.charCodeAt(0) != 0x2f) path = "/" + path;
  return path;
}
