// The `jws_verify` foreign function: checks a JWS signature (RFC 7515) with one public key given as
// a JWK (RFC 7517), for guests that verify JWTs (filters/authn). Bignum RSA and ECDSA inside an
// AssemblyScript guest would be slow and easy to get wrong; node:crypto (OpenSSL) does it here.
//
// The guest stays in charge of everything else (token parsing, claims, which key to try); this
// function only answers "does this signature over these bytes verify with this key for this alg".
// It is built for hostile callers: every input is bounded before anything is parsed, the key must fit
// the algorithm (kty, crv, RSA size), `none` and HMAC algorithms do not exist here, and each call is
// priced in fuel by algorithm and key size, so verifications count in the callback's CPU budget.
//
// Arguments, lengths as u32 little-endian:
//   [alg len][alg] [jwk len][jwk JSON] [input len][signing input] [sig len][signature bytes]
// Result (status Ok): one byte, then for code 2 a UTF-8 reason:
//   1: the signature verifies; 0: it does not; 2: the key cannot be used for this alg (why).
// BadArgument: malformed framing, a size past its bound, or an algorithm that is not offered.

import { constants, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { WasmResult } from './abi/constants.ts';
import type { ForeignCall } from './host.ts';

export const JWS_VERIFY_FUNCTION = 'jws_verify';

/** Bounds on each argument: a JWK of an 8192-bit RSA key is about 2.8 KB; an RSA-8192 signature 1 KiB. */
export const JWS_LIMITS = {
  algBytes: 16,
  jwkBytes: 16 * 1024,
  inputBytes: 64 * 1024,
  signatureBytes: 1024,
  /** RSA modulus sizes accepted (bits). Below 2048 is refused (NIST SP 800-131A); above 8192 costs too much per call. */
  minRsaBits: 2048,
  maxRsaBits: 8192,
} as const;

export const enum JwsResult {
  Invalid = 0,
  Valid = 1,
  UnusableKey = 2,
}

type Family = 'RSA' | 'RSA-PSS' | 'EC' | 'OKP';

interface AlgSpec {
  family: Family;
  /** Digest for node:crypto verify; null for EdDSA. */
  hash: string | null;
  /** EC curve (JWK crv) for ES*. */
  crv?: string;
  /** IEEE P1363 signature length for ES*. */
  sigBytes?: number;
}

/** The algorithms offered. `none`, HS256/384/512 and anything else are not: BadArgument. */
const ALGS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['RS256', { family: 'RSA', hash: 'sha256' }],
  ['RS384', { family: 'RSA', hash: 'sha384' }],
  ['RS512', { family: 'RSA', hash: 'sha512' }],
  ['PS256', { family: 'RSA-PSS', hash: 'sha256' }],
  ['PS384', { family: 'RSA-PSS', hash: 'sha384' }],
  ['PS512', { family: 'RSA-PSS', hash: 'sha512' }],
  ['ES256', { family: 'EC', hash: 'sha256', crv: 'P-256', sigBytes: 64 }],
  ['ES384', { family: 'EC', hash: 'sha384', crv: 'P-384', sigBytes: 96 }],
  ['ES512', { family: 'EC', hash: 'sha512', crv: 'P-521', sigBytes: 132 }],
  ['EdDSA', { family: 'OKP', hash: null }],
]);

/** Algorithms jws_verify offers, for callers that list them. */
export const JWS_ALGORITHMS: readonly string[] = [...ALGS.keys()];

/**
 * Fuel per call, priced at about what the check costs (a fuel unit counts as 0.25 ns, the runtime's
 * estimate for guest instructions). Relative costs measured with node:crypto on the shared bench
 * machine under load (RS256-2048 88 us, EdDSA 96 us, ES256 133 us, ES384 892 us, ES512 1.8 ms),
 * scaled to an idle core; RSA is priced by the square of its modulus size.
 */
const FUEL_PER_NS = 4;
const COST_NS: Readonly<Record<string, number>> = {
  'P-256': 60_000,
  'P-384': 400_000,
  'P-521': 800_000,
  Ed25519: 40_000,
  Ed448: 150_000,
};
const RSA_2048_NS = 40_000;
/** Importing a key the cache does not hold yet (parsing the JWK, building the key). */
const IMPORT_NS = 40_000;

interface CachedKey {
  key?: KeyObject;
  /** Why the key cannot be used (cached too: a bad key is refused at the same price every time). */
  problem?: string;
  costNs: number;
}

/**
 * Imported keys by algorithm family and JWK text: importing costs more than verifying. Keys are public,
 * so one cache serves every plugin. Bounded; the oldest entry goes first.
 */
const keyCache = new Map<string, CachedKey>();
const KEY_CACHE_LIMIT = 1024;

function importKey(spec: AlgSpec, jwkText: string): CachedKey {
  const cacheKey = `${spec.family}|${spec.crv ?? ''}|${jwkText}`;
  const hit = keyCache.get(cacheKey);
  if (hit !== undefined) return hit;
  const entry = buildKey(spec, jwkText);
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.delete(keyCache.keys().next().value!);
  keyCache.set(cacheKey, entry);
  return entry;
}

function buildKey(spec: AlgSpec, jwkText: string): CachedKey {
  let jwk: unknown;
  try {
    jwk = JSON.parse(jwkText);
  } catch {
    return { problem: 'the key is not JSON', costNs: 0 };
  }
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return { problem: 'the key is not a JSON object', costNs: 0 };
  const j = jwk as Record<string, unknown>;
  if ('d' in j || 'p' in j || 'k' in j) return { problem: 'the key holds private or symmetric material (d, p or k)', costNs: 0 };
  const kty = j.kty;
  const wantKty = spec.family === 'RSA' || spec.family === 'RSA-PSS' ? 'RSA' : spec.family;
  if (kty !== wantKty) return { problem: `kty ${JSON.stringify(kty)} does not fit the algorithm (needs ${wantKty})`, costNs: 0 };
  if (spec.family === 'EC' && j.crv !== spec.crv) return { problem: `crv ${JSON.stringify(j.crv)} does not fit the algorithm (needs ${spec.crv})`, costNs: 0 };
  if (spec.family === 'OKP' && j.crv !== 'Ed25519' && j.crv !== 'Ed448') return { problem: `crv ${JSON.stringify(j.crv)} is not an EdDSA curve (Ed25519, Ed448)`, costNs: 0 };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: j as import('node:crypto').JsonWebKey, format: 'jwk' });
  } catch (err) {
    return { problem: `the key does not import: ${(err as Error).message}`, costNs: 0 };
  }
  if (wantKty === 'RSA') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < JWS_LIMITS.minRsaBits || bits > JWS_LIMITS.maxRsaBits) {
      return { problem: `an RSA modulus of ${bits} bits is outside ${JWS_LIMITS.minRsaBits}..${JWS_LIMITS.maxRsaBits}`, costNs: 0 };
    }
    const exponent = key.asymmetricKeyDetails?.publicExponent ?? 0n;
    if (exponent > 0xffffffffn) return { problem: 'the RSA public exponent is larger than 32 bits', costNs: 0 };
    return { key, costNs: Math.ceil(RSA_2048_NS * (bits / 2048) ** 2) };
  }
  const curve = spec.family === 'EC' ? spec.crv! : (j.crv as string);
  return { key, costNs: COST_NS[curve] ?? 1_000_000 };
}

class Reader {
  #view: DataView;
  #bytes: Uint8Array;
  #at = 0;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  /** The next length-prefixed field, or undefined when it runs past the end or past `max`. */
  field(max: number): Uint8Array | undefined {
    if (this.#at + 4 > this.#bytes.length) return undefined;
    const len = this.#view.getUint32(this.#at, true);
    this.#at += 4;
    if (len > max || this.#at + len > this.#bytes.length) return undefined;
    const out = this.#bytes.subarray(this.#at, this.#at + len);
    this.#at += len;
    return out;
  }
  get done(): boolean {
    return this.#at === this.#bytes.length;
  }
}

function result(code: JwsResult, reason = ''): Uint8Array {
  const out = Buffer.alloc(1 + Buffer.byteLength(reason));
  out[0] = code;
  if (reason) out.write(reason, 1, 'utf8');
  return out;
}

/** Encodes jws_verify's arguments (for hosts and tests written in TypeScript). */
export function encodeJwsVerifyArgs(alg: string, jwk: string, signingInput: Uint8Array | string, signature: Uint8Array): Uint8Array {
  const parts = [Buffer.from(alg, 'latin1'), Buffer.from(jwk, 'utf8'), typeof signingInput === 'string' ? Buffer.from(signingInput, 'latin1') : Buffer.from(signingInput), Buffer.from(signature)];
  const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.length, at);
    p.copy(out, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** For direct calls from TypeScript (tests, benchmarks): nothing to charge. */
const UNMETERED: ForeignCall = { chargeFuel() {} };

export function jwsVerify(args: Uint8Array, call: ForeignCall = UNMETERED): Uint8Array | WasmResult {
  const r = new Reader(args);
  const algBytes = r.field(JWS_LIMITS.algBytes);
  const jwk = r.field(JWS_LIMITS.jwkBytes);
  const input = r.field(JWS_LIMITS.inputBytes);
  const signature = r.field(JWS_LIMITS.signatureBytes);
  if (algBytes === undefined || jwk === undefined || input === undefined || signature === undefined || !r.done) return WasmResult.BadArgument;
  const spec = ALGS.get(Buffer.from(algBytes).toString('latin1'));
  if (spec === undefined) return WasmResult.BadArgument;
  const jwkText = Buffer.from(jwk).toString('utf8');
  const cached = keyCache.has(`${spec.family}|${spec.crv ?? ''}|${jwkText}`);
  if (!cached) call.chargeFuel(IMPORT_NS * FUEL_PER_NS);
  const k = importKey(spec, jwkText);
  if (k.key === undefined) return result(JwsResult.UnusableKey, k.problem);
  // Priced before the work: a guest past its budget never gets the verification done.
  call.chargeFuel(k.costNs * FUEL_PER_NS);
  if (spec.sigBytes !== undefined && signature.length !== spec.sigBytes) return result(JwsResult.Invalid);
  let ok: boolean;
  if (spec.family === 'OKP') ok = cryptoVerify(null, input, k.key, signature);
  else if (spec.family === 'EC') ok = cryptoVerify(spec.hash!, input, { key: k.key, dsaEncoding: 'ieee-p1363' }, signature);
  else if (spec.family === 'RSA-PSS') ok = cryptoVerify(spec.hash!, input, { key: k.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
  else ok = cryptoVerify(spec.hash!, input, { key: k.key, padding: constants.RSA_PKCS1_PADDING }, signature);
  return result(ok ? JwsResult.Valid : JwsResult.Invalid);
}
