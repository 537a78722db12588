// JWT (RFC 7519) in JWS compact form: split, decoded and checked here; the signature itself is checked
// by the host (jws_verify, see verify.ts). The messages are Envoy's (jwt_verify_lib), so clients and
// logs see what an Istio sidecar would say; "" means the check passed.
import { JKind, JValue, parseJson } from "../../common/assembly/json";
import { decodeBase64Url } from "./base64url";

/** The algorithms accepted: the host's jws_verify set. `none` and HS256/384/512 are not among them. */
export const ALGORITHMS: string[] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

export const MSG_BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
export const MSG_VERIFICATION_FAILS = "Jwt verification fails";
export const MSG_EXPIRED = "Jwt is expired";
export const MSG_NOT_YET_VALID = "Jwt not yet valid";
export const MSG_ISSUED_IN_FUTURE = "Jwt issued in the future";
export const MSG_UNKNOWN_ISSUER = "Jwt issuer is not configured";
export const MSG_AUDIENCE = "Audiences in Jwt are not allowed";
export const MSG_NO_KEY = "Jwks doesn't have key to match kid or alg from Jwt";
export const MSG_FETCH_FAILED = "Jwks remote fetch is failed";
export const MSG_TOO_LARGE = "Jwt is larger than the size limit";

export class Token {
  raw: string;
  alg: string = "";
  kid: string = "";
  iss: string = "";
  sub: string = "";
  /** Decoded payload (JSON text, UTF-8). */
  payloadBytes: ArrayBuffer = new ArrayBuffer(0);
  payload: JValue = new JValue(JKind.Object, 0);
  /** raw[0, signingEnd) is the signing input "header.payload". */
  signingEnd: i32 = 0;
  payloadStart: i32 = 0;
  signature: ArrayBuffer = new ArrayBuffer(0);
  hasExp: bool = false;
  exp: i64 = 0;
  hasNbf: bool = false;
  nbf: i64 = 0;
  hasIat: bool = false;
  iat: i64 = 0;
  /** Bit i: rule i's locations carry this token. */
  foundBy: u64 = 0;
  /** The header that carried it (removed after success unless forwardOriginalToken), or "". */
  header: string = "";

  constructor(raw: string) {
    this.raw = raw;
  }
}

class Parsed {
  token: Token | null = null;
  error: string = "";
}

function isObject(v: JValue | null): bool {
  return v !== null && v.kind == JKind.Object;
}

function hasDuplicates(v: JValue): bool {
  const keys = v.keys;
  for (let i = 1, n = keys.length; i < n; i++) if (v.indexOf(unchecked(keys[i])) < i) return true;
  return false;
}

/** A NumericDate claim: absent is fine; anything but an integer is an error (Envoy's words). */
function numericDate(payload: JValue, name: string, t: Token): string {
  const v = payload.get(name);
  if (v === null) return "";
  if (v.kind != JKind.Number || Math.floor(v.number) != v.number || Math.abs(v.number) > 9007199254740991.0) {
    return "Jwt payload [" + name + "] field is not an integer";
  }
  const n = <i64>v.number;
  if (name == "exp") { t.hasExp = true; t.exp = n; }
  else if (name == "nbf") { t.hasNbf = true; t.nbf = n; }
  else { t.hasIat = true; t.iat = n; }
  return "";
}

/** Splits and decodes a token, checking its form; the signature is not checked here. */
export function parseToken(raw: string, maxBytes: i32): Parsed {
  const p = new Parsed();
  if (raw.length > maxBytes) {
    p.error = MSG_TOO_LARGE;
    return p;
  }
  const d1 = raw.indexOf(".");
  const d2 = d1 < 0 ? -1 : raw.indexOf(".", d1 + 1);
  if (d1 <= 0 || d2 < 0 || raw.indexOf(".", d2 + 1) >= 0) {
    p.error = MSG_BAD_FORMAT;
    return p;
  }
  const t = new Token(raw);
  t.signingEnd = d2;
  t.payloadStart = d1 + 1;
  const headerBytes = decodeBase64Url(raw, 0, d1);
  if (headerBytes === null) {
    p.error = "Jwt header is an invalid Base64url encoded";
    return p;
  }
  const header = parseJson(String.UTF8.decode(headerBytes)).value;
  if (header === null || !isObject(header) || hasDuplicates(header)) {
    p.error = "Jwt header is an invalid JSON";
    return p;
  }
  const alg = header.get("alg");
  if (alg === null || alg.kind != JKind.String) {
    p.error = "Jwt header [alg] field is required and must be a string";
    return p;
  }
  if (!ALGORITHMS.includes(alg.text)) {
    p.error = "Jwt header [alg] is not supported";
    return p;
  }
  t.alg = alg.text;
  const kid = header.get("kid");
  if (kid !== null) {
    if (kid.kind != JKind.String) {
      p.error = "Jwt header [kid] field is not a string";
      return p;
    }
    t.kid = kid.text;
  }
  if (header.get("crit") !== null) {
    p.error = "Jwt header [crit] is not supported";
    return p;
  }
  const payloadBytes = decodeBase64Url(raw, d1 + 1, d2);
  if (payloadBytes === null) {
    p.error = "Jwt payload is an invalid Base64url encoded";
    return p;
  }
  const payload = parseJson(String.UTF8.decode(payloadBytes)).value;
  if (payload === null || !isObject(payload) || hasDuplicates(payload)) {
    p.error = "Jwt payload is an invalid JSON";
    return p;
  }
  t.payloadBytes = payloadBytes;
  t.payload = payload;
  const iss = payload.get("iss");
  if (iss !== null) {
    if (iss.kind != JKind.String) {
      p.error = "Jwt payload [iss] field is not a string";
      return p;
    }
    t.iss = iss.text;
  }
  const sub = payload.get("sub");
  if (sub !== null) {
    if (sub.kind != JKind.String) {
      p.error = "Jwt payload [sub] field is not a string";
      return p;
    }
    t.sub = sub.text;
  }
  const aud = payload.get("aud");
  if (aud !== null && aud.kind != JKind.String) {
    let ok = aud.kind == JKind.Array;
    for (let i = 0; ok && i < aud.items.length; i++) ok = aud.items[i].kind == JKind.String;
    if (!ok) {
      p.error = "Jwt payload [aud] field is not a string or string list";
      return p;
    }
  }
  let e = numericDate(payload, "exp", t);
  if (e.length == 0) e = numericDate(payload, "nbf", t);
  if (e.length == 0) e = numericDate(payload, "iat", t);
  if (e.length > 0) {
    p.error = e;
    return p;
  }
  const sig = decodeBase64Url(raw, d2 + 1, raw.length);
  if (sig === null || sig.byteLength == 0) {
    p.error = "Jwt signature is an invalid Base64url encoded";
    return p;
  }
  t.signature = sig;
  p.token = t;
  return p;
}

/** exp, nbf and iat against the clock (seconds), with `skew` seconds of tolerance either way. */
export function checkTime(t: Token, now: i64, skew: i64): string {
  if (t.hasNbf && t.nbf > now + skew) return MSG_NOT_YET_VALID;
  if (t.hasExp && t.exp + skew < now) return MSG_EXPIRED;
  if (t.hasIat && t.iat > now + skew) return MSG_ISSUED_IN_FUTURE;
  return "";
}

/** An audience as compared: without "http://" or "https://" and without a trailing "/" (jwt_verify_lib). */
function normalizeAudience(a: string): string {
  let s = a;
  if (s.startsWith("http://")) s = s.substring(7);
  else if (s.startsWith("https://")) s = s.substring(8);
  if (s.endsWith("/")) s = s.substring(0, s.length - 1);
  return s;
}

/** The token's audiences ("aud" as a string or a list). */
export function audiences(t: Token): string[] {
  const out: string[] = [];
  const aud = t.payload.get("aud");
  if (aud === null) return out;
  if (aud.kind == JKind.String) out.push(aud.text);
  else for (let i = 0; i < aud.items.length; i++) out.push(aud.items[i].text);
  return out;
}

/** Passes when `allowed` is empty or shares an audience with the token. */
export function checkAudience(t: Token, allowed: string[]): string {
  if (allowed.length == 0) return "";
  const auds = audiences(t);
  for (let i = 0; i < auds.length; i++) {
    const a = normalizeAudience(auds[i]);
    for (let j = 0; j < allowed.length; j++) if (normalizeAudience(allowed[j]) == a) return "";
  }
  return MSG_AUDIENCE;
}

/** A claim by path (["a","b"] is member b of object a); null when absent. */
export function claimValue(t: Token, path: string[]): JValue | null {
  let v: JValue | null = t.payload;
  for (let i = 0; i < path.length && v !== null; i++) {
    if (v.kind != JKind.Object) return null;
    v = v.get(path[i]);
  }
  return v;
}

/** A claim as a header value: strings as they are, numbers and booleans as written, string lists joined with ","; else null. */
export function claimHeaderValue(v: JValue): string | null {
  if (v.kind == JKind.String || v.kind == JKind.Number) return v.text;
  if (v.kind == JKind.Bool) return v.boolean ? "true" : "false";
  if (v.kind == JKind.Array) {
    const parts: string[] = [];
    for (let i = 0; i < v.items.length; i++) {
      const item = v.items[i];
      if (item.kind != JKind.String) return null;
      parts.push(item.text);
    }
    return parts.join(",");
  }
  return null;
}
