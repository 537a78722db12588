// JSON Web Key Sets (RFC 7517): parsed once per fetch (or once at configure for inline keys) into the
// keys a token may be checked with. Only public signature keys of the families the host's jws_verify
// offers are kept (RSA, EC P-256/384/521, OKP Ed25519/Ed448); a key of another type, for encryption
// (`use: "enc"`), or with private members is skipped, not fatal. Each kept key carries a compact JWK
// text with only its public members: that is what the host imports (and caches) per key.
import { JKind, JValue, parseJson } from "../../common/assembly/json";
import { isBase64Url } from "./base64url";

/** A JWKS body larger than this is refused (Envoy has no bound; a real set is a few KiB). */
export const MAX_JWKS_BYTES: i32 = 256 * 1024;
/** Keys kept per set; more are ignored. */
export const MAX_KEYS: i32 = 64;

export class Jwk {
  kid: string = "";
  /** The key's own `alg`, or "" when it does not say. */
  alg: string = "";
  kty: string = "";
  crv: string = "";
  /** {"kty":...,"n":...,"e":...} with only the public members: what jws_verify gets. */
  json: ArrayBuffer = new ArrayBuffer(0);
}

export class JwksResult {
  keys: Jwk[] = [];
  /** Why the set is unusable ("" when keys is not empty). */
  error: string = "";
}

function member(v: JValue, name: string): string {
  const m = v.get(name);
  return m !== null && m.kind == JKind.String ? m.text : "";
}

/** `"name":"value"` for a member that must be base64url; false when it is missing or not. */
function b64Member(v: JValue, name: string, out: string[]): bool {
  const s = member(v, name);
  if (!isBase64Url(s)) return false;
  out.push("\"" + name + "\":\"" + s + "\"");
  return true;
}

function readKey(v: JValue): Jwk | null {
  if (v.kind != JKind.Object) return null;
  // Private or symmetric material never goes to the host; a key with it is skipped.
  if (v.get("d") !== null || v.get("k") !== null) return null;
  const use = v.get("use");
  if (use !== null && (use.kind != JKind.String || use.text != "sig")) return null;
  const kty = member(v, "kty");
  const key = new Jwk();
  key.kty = kty;
  key.kid = member(v, "kid");
  key.alg = member(v, "alg");
  const parts: string[] = ["\"kty\":\"" + kty + "\""];
  if (kty == "RSA") {
    if (!b64Member(v, "n", parts) || !b64Member(v, "e", parts)) return null;
  } else if (kty == "EC") {
    const crv = member(v, "crv");
    if (crv != "P-256" && crv != "P-384" && crv != "P-521") return null;
    key.crv = crv;
    parts.push("\"crv\":\"" + crv + "\"");
    if (!b64Member(v, "x", parts) || !b64Member(v, "y", parts)) return null;
  } else if (kty == "OKP") {
    const crv = member(v, "crv");
    if (crv != "Ed25519" && crv != "Ed448") return null;
    key.crv = crv;
    parts.push("\"crv\":\"" + crv + "\"");
    if (!b64Member(v, "x", parts)) return null;
  } else {
    return null;
  }
  key.json = String.UTF8.encode("{" + parts.join(",") + "}");
  return key;
}

/** Parses a JWKS ({"keys": [...]}; a single JWK object is taken as a set of one, as Envoy does). */
export function parseJwks(text: string): JwksResult {
  const r = new JwksResult();
  if (text.length > MAX_JWKS_BYTES) {
    r.error = "the JWKS is larger than " + MAX_JWKS_BYTES.toString() + " bytes";
    return r;
  }
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    r.error = "the JWKS is not JSON: " + parsed.error;
    return r;
  }
  if (root.kind != JKind.Object) {
    r.error = "the JWKS is not a JSON object";
    return r;
  }
  const list = root.get("keys");
  let items: JValue[];
  if (list === null) {
    items = [root];
  } else if (list.kind != JKind.Array) {
    r.error = "the JWKS \"keys\" member is not an array";
    return r;
  } else {
    items = list.items;
  }
  for (let i = 0; i < items.length && r.keys.length < MAX_KEYS; i++) {
    const k = readKey(items[i]);
    if (k !== null) r.keys.push(k);
  }
  if (r.keys.length == 0) r.error = "the JWKS has no usable signature key (RSA, EC P-256/384/521, Ed25519, Ed448)";
  return r;
}

/** Does key `k` fit a token signed with `alg` (family and curve)? */
export function keyFitsAlg(k: Jwk, alg: string): bool {
  if (k.alg.length > 0 && k.alg != alg) return false;
  if (alg.startsWith("RS") || alg.startsWith("PS")) return k.kty == "RSA";
  if (alg == "ES256") return k.kty == "EC" && k.crv == "P-256";
  if (alg == "ES384") return k.kty == "EC" && k.crv == "P-384";
  if (alg == "ES512") return k.kty == "EC" && k.crv == "P-521";
  if (alg == "EdDSA") return k.kty == "OKP";
  return false;
}
