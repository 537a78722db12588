// The signature check, done by the host: the foreign function jws_verify (wasm/src/jws-verify.ts)
// checks one signature with one key using node:crypto. Which keys to try is decided here: the key's
// kid must equal the token's when both have one, and the key must fit the token's alg (family, curve,
// and the key's own alg when it names one).
import { callForeign, lastForeignStatus } from "./host";
import { Jwk, keyFitsAlg } from "./jwks";
import { Token } from "./jwt";

const FUNCTION = String.UTF8.encode("jws_verify");

/** Outcome of trying a token against a key set. */
export const enum KeyMatch {
  /** A key verified the signature. */
  Verified = 0,
  /** Keys fit the token, none verified it. */
  Failed = 1,
  /** No key fits: the token names a kid the set does not have. */
  UnknownKid = 2,
  /** No key fits the token's alg (or the kid's key is of another type). */
  NoKey = 3,
}

/** Keys tried per token at most (a set of keys without kid is tried in order). */
const MAX_TRIES: i32 = 8;

function field(out: usize, bytes: ArrayBuffer): usize {
  store<u32>(out, bytes.byteLength);
  memory.copy(out + 4, changetype<usize>(bytes), bytes.byteLength);
  return out + 4 + bytes.byteLength;
}

function verifyWith(t: Token, key: Jwk, signingInput: ArrayBuffer, alg: ArrayBuffer): i32 {
  const size = 16 + alg.byteLength + key.json.byteLength + signingInput.byteLength + t.signature.byteLength;
  const args = new ArrayBuffer(size);
  let at = changetype<usize>(args);
  at = field(at, alg);
  at = field(at, key.json);
  at = field(at, signingInput);
  field(at, t.signature);
  const r = callForeign(FUNCTION, args);
  if (r === null || r.byteLength == 0) return -lastForeignStatus - 1;
  return <i32>load<u8>(changetype<usize>(r));
}

export class VerifyResult {
  match: KeyMatch = KeyMatch.NoKey;
  /** Why a key was unusable, or the host's status, for the debug log. */
  detail: string = "";
}

export function verifySignature(t: Token, keys: Jwk[]): VerifyResult {
  const res = new VerifyResult();
  let fits = 0;
  let kidSeen = false;
  const signingInput = String.UTF8.encode(t.raw.substring(0, t.signingEnd));
  const alg = String.UTF8.encode(t.alg);
  for (let i = 0; i < keys.length; i++) {
    const k = unchecked(keys[i]);
    if (t.kid.length > 0 && k.kid.length > 0) {
      if (k.kid != t.kid) continue;
      kidSeen = true;
    }
    if (!keyFitsAlg(k, t.alg)) continue;
    if (fits >= MAX_TRIES) break;
    fits++;
    const r = verifyWith(t, k, signingInput, alg);
    if (r == 1) {
      res.match = KeyMatch.Verified;
      return res;
    }
    if (r == 2) res.detail = "key " + (k.kid.length > 0 ? "\"" + k.kid + "\"" : "#" + i.toString()) + " is unusable";
    else if (r < 0) res.detail = "jws_verify answered status " + (-r - 1).toString();
  }
  if (fits > 0) {
    res.match = KeyMatch.Failed;
    return res;
  }
  // A token with a kid no key of the set carries (and no key without kid fits): the set may be stale.
  res.match = t.kid.length > 0 && !kidSeen && !anyKeyWithoutKid(keys, t.alg) ? KeyMatch.UnknownKid : KeyMatch.NoKey;
  return res;
}

function anyKeyWithoutKid(keys: Jwk[], alg: string): bool {
  for (let i = 0; i < keys.length; i++) if (keys[i].kid.length == 0 && keyFitsAlg(keys[i], alg)) return true;
  return false;
}
