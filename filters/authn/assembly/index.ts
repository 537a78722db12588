// authn: end-user authentication with Istio RequestAuthentication semantics (JWT). See ../README.md.
//
//   config.ts   the configuration (rules), checked once      jwks.ts    key sets (inline or fetched)
//   jwt.ts      token form, claims, time and audience        verify.ts  the signature, via the host
//   base64url.ts                                              host.ts    host calls that never abort
//
// A request without a token passes (as in Istio: an AuthorizationPolicy decides whether that is
// allowed); a request whose token fails any check gets 401 with Envoy's message and
// `www-authenticate: Bearer realm="<url>", error="invalid_token"`. A verified payload is handed to the
// policy filter as the stream's filter state `wasmesh.jwt_payload` (proxy_set_property); the policy
// filter derives request.auth.principal, audiences, presenter and claims from it.
//
// Remote key sets are fetched by the root context through proxy_http_call from a cluster, refreshed
// every jwksRefreshMs, and on a token whose kid the set lacks (at most every kidRefreshMinMs); a
// failed fetch keeps the last good keys and is retried after jwksRetryMs. A request that needs keys
// being fetched waits for them (its stream is paused), as Envoy's jwt_authn does.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues, HeaderPair,
  send_local_response, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { AuthnConfig, LOC_COOKIE, LOC_HEADER, LOC_PARAM, Location, Rule, compileConfig, originOf, pathOf } from "./config";
import { JKind, parseJson } from "../../common/assembly/json";
import { parseJwks, MAX_JWKS_BYTES } from "./jwks";
import {
  MSG_FETCH_FAILED, MSG_NO_KEY, MSG_UNKNOWN_ISSUER, MSG_VERIFICATION_FAILS, Token, checkAudience, checkTime,
  claimHeaderValue, claimValue, parseToken,
} from "./jwt";
import { KeyMatch, verifySignature } from "./verify";
import {
  Counter, HTTP_CALL_RESPONSE_HEADERS, REQUEST_HEADERS, callResponseBody, continueRequest, encodePairs, enterContext,
  getHeader, httpCall, nowNanos, removeRequestHeader, replaceRequestHeader, setProperty, setTickPeriod,
} from "./host";

const ROOT_ID = "authn";
/** The filter state the policy filter reads (NUL-joined property path). */
const PAYLOAD_PROPERTY = String.UTF8.encode("wasmesh\0jwt_payload");
const EMPTY = new ArrayBuffer(0);
/** Distinct tokens verified per request at most; more are refused. */
const MAX_TOKENS: i32 = 4;
/** Streams that may wait for one rule's keys; past it a request is answered at once. */
const MAX_WAITING: i32 = 4096;
/** An OpenID Connect discovery document larger than this is refused (a real one is a few KiB). */
const MAX_DISCOVERY_BYTES: i32 = 64 * 1024;

const H_PATH = String.UTF8.encode(":path");
const H_AUTHORITY = String.UTF8.encode(":authority");
const H_SCHEME = String.UTF8.encode(":scheme");
const H_COOKIE = String.UTF8.encode("cookie");
const H_CONTENT_TYPE = String.UTF8.encode("content-type");
const H_STATUS = String.UTF8.encode(":status");

class AuthnRoot extends RootContext {
  config: AuthnConfig = new AuthnConfig();
  /** Fetch token -> rule index. */
  fetches: Map<u32, i32> = new Map();
  /** Tokens of fetches that get a discovery document (the others get key sets). */
  discoveries: Set<u32> = new Set();
  /** Streams paused for keys, by context id. */
  waiting: Map<u32, AuthnStream> = new Map();
  verified: Counter | null = null;
  noToken: Counter | null = null;
  denied: Counter | null = null;

  createContext(context_id: u32): Context {
    return new AuthnStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const compiled = compileConfig(this.getConfiguration());
    const config = compiled.config;
    if (config === null) {
      log(LogLevelValues.error, "authn: " + compiled.error);
      return false;
    }
    this.config = config;
    this.verified = new Counter("authn_requests_total{result=\"verified\"}");
    this.noToken = new Counter("authn_requests_total{result=\"no_token\"}");
    this.denied = new Counter("authn_requests_total{result=\"denied\"}");
    let remote = false;
    for (let i = 0; i < config.rules.length; i++) if (config.rules[i].remote !== null) remote = true;
    if (remote) {
      let tick = config.jwksRetryMs < config.jwksRefreshMs ? config.jwksRetryMs : config.jwksRefreshMs;
      if (tick > 1000) tick = 1000;
      setTickPeriod(<u32>tick);
    }
    if (log_enabled(LogLevelValues.info)) log(LogLevelValues.info, "authn: configured " + config.rules.length.toString() + " rule(s)");
    return true;
  }

  onTick(): void {
    const now = nowNanos();
    const rules = this.config.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      if (r.remote !== null && r.inFlight == 0 && now >= r.nextFetchNs) this.fetch(r);
    }
  }

  /**
   * Starts fetching a rule's key set (nothing if one is in flight): with OpenID Connect discovery and
   * no jwks_uri known yet, the issuer's discovery document first. False when the proxy refused the call.
   */
  fetch(r: Rule): bool {
    if (r.inFlight != 0) return true;
    const remote = r.remote!;
    r.lastFetchNs = nowNanos();
    const discover = remote.discovery && r.jwksPath.length == 0;
    return this.call(r, discover ? remote.path : (remote.discovery ? r.jwksPath : remote.path), discover);
  }

  private call(r: Rule, path: string, discovery: bool): bool {
    const remote = r.remote!;
    const headers = encodePairs([":method", "GET", ":path", path, ":authority", remote.authority, ":scheme", "http", "accept", "application/json"]);
    const token = httpCall(remote.cluster, headers, remote.timeoutMs);
    if (token == 0) {
      this.fetched(r, false, "the proxy refused the call to cluster " + remote.cluster);
      return false;
    }
    r.inFlight = token;
    this.fetches.set(token, r.index);
    if (discovery) this.discoveries.add(token);
    return true;
  }

  onHttpCallResponse(token: u32, headers: u32, body_size: u32, trailers: u32): void {
    if (!this.fetches.has(token)) return;
    const r = this.config.rules[this.fetches.get(token)];
    this.fetches.delete(token);
    const discovery = this.discoveries.has(token);
    if (discovery) this.discoveries.delete(token);
    r.inFlight = 0;
    const what = discovery ? "the discovery document: " : r.remote!.discovery ? "the key set at " + r.jwksPath + ": " : "";
    const status = getHeader(HTTP_CALL_RESPONSE_HEADERS, H_STATUS);
    if (status === null) {
      this.fetched(r, false, what + "no response (connection failure or reset)");
      return;
    }
    if (status != "200") {
      this.fetched(r, false, what + "status " + status);
      return;
    }
    const max = discovery ? MAX_DISCOVERY_BYTES : MAX_JWKS_BYTES;
    const body = callResponseBody(body_size, <u32>max);
    if (body === null) {
      this.fetched(r, false, what + "the body is larger than " + max.toString() + " bytes");
      return;
    }
    if (discovery) {
      const error = this.discovered(r, String.UTF8.decode(body));
      if (error.length > 0) this.fetched(r, false, "the discovery document: " + error);
      // The key set next, through the same cluster; the waiting streams keep waiting for it.
      else this.call(r, r.jwksPath, false);
      return;
    }
    const set = parseJwks(String.UTF8.decode(body));
    if (set.error.length > 0) {
      this.fetched(r, false, set.error);
      return;
    }
    r.keys = set.keys;
    this.fetched(r, true, "");
  }

  /**
   * Reads an OpenID Connect discovery document: its issuer must be the rule's (OpenID Connect
   * Discovery 1.0, 4.3), its jwks_uri an http(s) URL on the issuer's origin (fetched through the same
   * cluster; another host would need a cluster the translator could not know). Returns why not, or "".
   */
  private discovered(r: Rule, text: string): string {
    const parsed = parseJson(text);
    const doc = parsed.value;
    if (doc === null) return "not JSON: " + parsed.error;
    if (doc.kind != JKind.Object) return "not a JSON object";
    const issuer = doc.get("issuer");
    if (issuer === null || issuer.kind != JKind.String || issuer.text != r.issuer) {
      return "its issuer is not \"" + r.issuer + "\"" + (issuer !== null && issuer.kind == JKind.String ? " (it says \"" + issuer.text + "\")" : "");
    }
    const uri = doc.get("jwks_uri");
    if (uri === null || uri.kind != JKind.String) return "it has no jwks_uri";
    const origin = originOf(uri.text);
    if (origin.length == 0) return "jwks_uri \"" + uri.text + "\" is not an http or https URL";
    if (origin != originOf(r.remote!.uri)) {
      return "jwks_uri \"" + uri.text + "\" is on another origin than the issuer: give it as the rule's jwksUri";
    }
    r.jwksPath = pathOf(uri.text);
    return "";
  }

  /** After a fetch: keys kept or replaced, the next fetch planned, the waiting streams released. */
  fetched(r: Rule, ok: bool, error: string): void {
    const now = nowNanos();
    const cfg = this.config;
    if (ok) {
      r.fetched = true;
      r.lastError = "";
      r.nextFetchNs = now + cfg.jwksRefreshMs * 1_000_000;
      if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "authn: fetched " + r.keys.length.toString() + " key(s) for " + r.issuer);
    } else {
      r.lastError = error;
      r.nextFetchNs = now + cfg.jwksRetryMs * 1_000_000;
      // Discovery is done again on the next attempt: the issuer may have moved its key set.
      r.jwksPath = "";
      log(LogLevelValues.warn, "authn: fetching the JWKS of " + r.issuer + " from " + r.remote!.uri + " failed: " + error +
        (r.keys.length > 0 ? " (keeping the last good " + r.keys.length.toString() + " key(s))" : " (no keys yet)"));
    }
    new Counter("authn_jwks_fetches_total{result=\"" + (ok ? "ok" : "failed") + "\"}").inc();
    const ids = r.waiting;
    r.waiting = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!this.waiting.has(id)) continue;
      const s = this.waiting.get(id);
      this.waiting.delete(id);
      if (!enterContext(id)) continue;
      s.resume();
    }
  }
}

class AuthnStream extends Context {
  private root: AuthnRoot;
  private tokens: Token[] = [];
  private rawTokens: string[] = [];
  /** Rule each token verified against (index), parallel to tokens; -1 until it verified. */
  private verifiedBy: i32[] = [];
  private kidRefreshed: bool = false;
  private params: Map<string, string> | null = null;
  private cookies: Map<string, string> | null = null;

  constructor(context_id: u32, root: AuthnRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const cfg = this.root.config;
    // Nothing another filter put in the stream's filter state, and no output header the client sent,
    // may pass for a verified identity.
    setProperty(PAYLOAD_PROPERTY, EMPTY);
    for (let i = 0; i < cfg.rules.length; i++) {
      const r = cfg.rules[i];
      if (r.outputPayloadToHeader.length > 0) removeRequestHeader(r.outputPayloadBytes);
      for (let j = 0; j < r.claimHeaders.length; j++) removeRequestHeader(r.claimHeaders[j].headerBytes);
    }
    this.extract(cfg);
    if (this.rawTokens.length == 0) {
      const c = this.root.noToken;
      if (c !== null) c.inc();
      return FilterHeadersStatusValues.Continue;
    }
    if (this.rawTokens.length > MAX_TOKENS) return this.fail("Jwt: too many tokens in the request", "");
    for (let i = 0; i < this.rawTokens.length; i++) {
      const p = parseToken(this.rawTokens[i], cfg.maxTokenBytes);
      const t = p.token;
      if (t === null) return this.fail(p.error, "");
      t.foundBy = this.foundBy[i];
      t.header = this.foundHeader[i];
      this.tokens.push(t);
      this.verifiedBy.push(-1);
    }
    return this.evaluate();
  }

  private foundBy: u64[] = [];
  private foundHeader: string[] = [];

  /** Collects the distinct tokens every rule's locations carry. */
  private extract(cfg: AuthnConfig): void {
    for (let i = 0; i < cfg.rules.length; i++) {
      const locs = cfg.rules[i].locations;
      for (let j = 0; j < locs.length; j++) {
        const loc = locs[j];
        const raw = this.tokenAt(loc);
        if (raw === null || raw.length == 0) continue;
        const at = this.rawTokens.indexOf(raw);
        if (at >= 0) {
          this.foundBy[at] |= (<u64>1) << <u64>(i & 63);
          continue;
        }
        this.rawTokens.push(raw);
        this.foundBy.push((<u64>1) << <u64>(i & 63));
        this.foundHeader.push(loc.kind == LOC_HEADER ? loc.name : "");
      }
    }
  }

  private tokenAt(loc: Location): string | null {
    if (loc.kind == LOC_HEADER) {
      const v = getHeader(REQUEST_HEADERS, loc.nameBytes);
      if (v === null) return null;
      const prefix = loc.prefix;
      if (prefix.length == 0) return v.trim();
      if (v.length < prefix.length || v.substring(0, prefix.length).toLowerCase() != prefix.toLowerCase()) return null;
      return v.substring(prefix.length).trim();
    }
    if (loc.kind == LOC_PARAM) {
      let params = this.params;
      if (params === null) {
        params = parseQuery(getHeader(REQUEST_HEADERS, H_PATH));
        this.params = params;
      }
      return params.has(loc.name) ? params.get(loc.name) : null;
    }
    let cookies = this.cookies;
    if (cookies === null) {
      cookies = parseCookies(getHeader(REQUEST_HEADERS, H_COOKIE));
      this.cookies = cookies;
    }
    return cookies.has(loc.name) ? cookies.get(loc.name) : null;
  }

  /**
   * Checks every token not yet verified. Returns Continue when all verified (outputs written),
   * StopIteration after a 401 or while keys are being fetched (resume() continues).
   */
  evaluate(): FilterHeadersStatusValues {
    const root = this.root;
    const cfg = root.config;
    const now = <i64>(nowNanos() / 1_000_000_000);
    for (let i = 0; i < this.tokens.length; i++) {
      if (this.verifiedBy[i] >= 0) continue;
      const t = this.tokens[i];
      // The rule whose locations carried the token and whose issuer it names.
      let rule: Rule | null = null;
      for (let k = 0; k < cfg.rules.length && k < 64; k++) {
        if ((t.foundBy & ((<u64>1) << <u64>k)) != 0 && cfg.rules[k].issuer == t.iss) {
          rule = cfg.rules[k];
          break;
        }
      }
      if (rule === null) return this.fail(MSG_UNKNOWN_ISSUER, "iss " + t.iss);
      let e = checkTime(t, now, cfg.clockSkewSeconds);
      if (e.length == 0) e = checkAudience(t, rule.audiences);
      if (e.length > 0) return this.fail(e, "");
      if (rule.remote !== null && !rule.fetched && rule.keys.length == 0) {
        // No keys yet: fetch (unless a failed fetch is waiting out its retry delay) and wait.
        if (rule.inFlight == 0 && rule.lastFetchNs != 0 && nowNanos() < rule.nextFetchNs) return this.fail(MSG_FETCH_FAILED, rule.lastError);
        return this.waitFor(rule);
      }
      const v = verifySignature(t, rule.keys);
      if (v.match == KeyMatch.Verified) {
        this.verifiedBy[i] = rule.index;
        continue;
      }
      if (v.match == KeyMatch.UnknownKid && rule.remote !== null && !this.kidRefreshed) {
        const sinceMs = (nowNanos() - rule.lastFetchNs) / 1_000_000;
        if (rule.inFlight != 0 || sinceMs >= cfg.kidRefreshMinMs) {
          this.kidRefreshed = true;
          return this.waitFor(rule);
        }
      }
      if (v.match == KeyMatch.Failed) return this.fail(MSG_VERIFICATION_FAILS, v.detail);
      return this.fail(MSG_NO_KEY, "kid \"" + t.kid + "\", alg " + t.alg);
    }
    this.succeed();
    return FilterHeadersStatusValues.Continue;
  }

  private waitFor(rule: Rule): FilterHeadersStatusValues {
    const root = this.root;
    if (rule.waiting.length >= MAX_WAITING) return this.fail(MSG_FETCH_FAILED, "too many requests waiting for keys");
    if (!root.fetch(rule)) return this.fail(MSG_FETCH_FAILED, rule.lastError);
    rule.waiting.push(this.context_id);
    root.waiting.set(this.context_id, this);
    return FilterHeadersStatusValues.StopIteration;
  }

  /** Called by the root once the keys this stream waited for arrived (or did not). */
  resume(): void {
    if (this.evaluate() == FilterHeadersStatusValues.Continue) continueRequest();
  }

  private succeed(): void {
    const cfg = this.root.config;
    const first = this.tokens[0];
    setProperty(PAYLOAD_PROPERTY, first.payloadBytes);
    for (let i = 0; i < this.tokens.length; i++) {
      const t = this.tokens[i];
      const r = cfg.rules[this.verifiedBy[i]];
      if (r.outputPayloadToHeader.length > 0) {
        replaceRequestHeader(r.outputPayloadBytes, t.raw.substring(t.payloadStart, t.signingEnd));
      }
      for (let j = 0; j < r.claimHeaders.length; j++) {
        const ch = r.claimHeaders[j];
        const v = claimValue(t, ch.claim);
        if (v === null) continue;
        const text = claimHeaderValue(v);
        if (text !== null && isHeaderValue(text)) replaceRequestHeader(ch.headerBytes, text);
      }
      if (!r.forwardOriginalToken && t.header.length > 0) removeRequestHeader(String.UTF8.encode(t.header));
    }
    const c = this.root.verified;
    if (c !== null) c.inc();
  }

  /** 401 with Envoy's message and www-authenticate; `detail` goes to the debug log only. */
  private fail(message: string, detail: string): FilterHeadersStatusValues {
    const c = this.root.denied;
    if (c !== null) c.inc();
    if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "authn: 401 " + message + (detail.length > 0 ? " (" + detail + ")" : ""));
    const challenge = "Bearer realm=\"" + realm() + "\", error=\"invalid_token\"";
    const headers: HeaderPair[] = [new HeaderPair(String.UTF8.encode("www-authenticate"), String.UTF8.encode(challenge))];
    const ct = getHeader(REQUEST_HEADERS, H_CONTENT_TYPE);
    const grpc = ct !== null && ct.startsWith("application/grpc") ? GrpcStatusValues.Unauthenticated : GrpcStatusValues.InvalidCode;
    send_local_response(401, "jwt_authn_access_denied{" + message.replaceAll(" ", "_") + "}", String.UTF8.encode(message), headers, grpc);
    return FilterHeadersStatusValues.StopIteration;
  }

  onDelete(): void {
    this.root.waiting.delete(this.context_id);
  }
}

/** The request URL as Envoy puts it in the realm: scheme://authority/path, without the query. */
function realm(): string {
  const scheme = getHeader(REQUEST_HEADERS, H_SCHEME);
  const authority = getHeader(REQUEST_HEADERS, H_AUTHORITY);
  let path = getHeader(REQUEST_HEADERS, H_PATH);
  if (path === null) path = "/";
  const q = path.indexOf("?");
  if (q >= 0) path = path.substring(0, q);
  const s = (scheme !== null ? scheme : "http") + "://" + (authority !== null ? authority : "") + path;
  // The realm sits in a quoted string: no quote, backslash or control character may end it early.
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c && c != 0x7f) out += String.fromCharCode(c);
  }
  return out;
}

/** Printable ASCII and tabs only: a claim never becomes a header that splits or corrupts the block. */
function isHeaderValue(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c != 0x09) || c == 0x7f) return false;
  }
  return true;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** %XX escapes decoded (ASCII only; anything else is kept as written). */
function percentDecode(s: string): string {
  if (s.indexOf("%") < 0) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x25 && i + 2 < s.length) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0 && ((hi << 4) | lo) < 0x80) {
        out += String.fromCharCode((hi << 4) | lo);
        i += 2;
        continue;
      }
    }
    out += String.fromCharCode(c);
  }
  return out;
}

/** Query parameters of a :path (the first value of each name). */
function parseQuery(path: string | null): Map<string, string> {
  const m = new Map<string, string>();
  if (path === null) return m;
  const q = path.indexOf("?");
  if (q < 0) return m;
  let end = path.indexOf("#", q);
  if (end < 0) end = path.length;
  const parts = path.substring(q + 1, end).split("&");
  for (let i = 0; i < parts.length && i < 256; i++) {
    const p = parts[i];
    const eq = p.indexOf("=");
    const name = percentDecode(eq < 0 ? p : p.substring(0, eq));
    if (!m.has(name)) m.set(name, eq < 0 ? "" : percentDecode(p.substring(eq + 1)));
  }
  return m;
}

/** Cookies of a cookie header (the first value of each name). */
function parseCookies(header: string | null): Map<string, string> {
  const m = new Map<string, string>();
  if (header === null) return m;
  const parts = header.split(";");
  for (let i = 0; i < parts.length && i < 256; i++) {
    const p = parts[i].trim();
    const eq = p.indexOf("=");
    if (eq <= 0) continue;
    const name = p.substring(0, eq).trim();
    let value = p.substring(eq + 1).trim();
    if (value.length >= 2 && value.startsWith("\"") && value.endsWith("\"")) value = value.substring(1, value.length - 1);
    if (!m.has(name)) m.set(name, value);
  }
  return m;
}

function newRoot(context_id: u32): RootContext {
  return new AuthnRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
registerRootContext(newRoot, "");
