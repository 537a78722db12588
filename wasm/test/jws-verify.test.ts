// The jws_verify foreign function: signatures checked with node:crypto, keys that do not fit refused
// with a reason, every argument bounded, and the work priced in fuel before it is done.
import { constants, createSecretKey, generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmResult } from '../src/abi/constants.ts';
import { CpuBudgetExceeded } from '../src/errors.ts';
import { JWS_LIMITS, encodeJwsVerifyArgs, jwsVerify } from '../src/jws-verify.ts';
import { builtinForeignFunctions } from '../src/foreign.ts';

const charged: number[] = [];
const call = { chargeFuel: (n: number) => void charged.push(n) };
const input = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0';

function es256() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = JSON.stringify(publicKey.export({ format: 'jwk' }));
  const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return { jwk, sig };
}

function code(r: Uint8Array | number): number {
  assert.ok(r instanceof Uint8Array, `expected bytes, got status ${String(r)}`);
  return (r as Uint8Array)[0];
}

test('a valid ES256 signature verifies (1), a changed byte does not (0); jws_verify is a builtin', () => {
  const { jwk, sig } = es256();
  assert.is(builtinForeignFunctions.get('jws_verify'), jwsVerify);
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, sig), call)), 1);
  const bad = Buffer.from(sig);
  bad[10] ^= 1;
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, bad), call)), 0);
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input + 'x', sig), call)), 0);
  // DER-encoded ECDSA is not JWS: the length alone refuses it.
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, Buffer.alloc(70)), call)), 0);
});

test('none, HS256 and unknown algorithms are not offered (BadArgument)', () => {
  const { jwk, sig } = es256();
  for (const alg of ['none', 'HS256', 'HS512', 'es256', '']) {
    assert.is(jwsVerify(encodeJwsVerifyArgs(alg, jwk, input, sig), call), WasmResult.BadArgument, alg);
  }
});

test('keys that do not fit are refused with a reason (2): family, curve, RSA size, private or symmetric material', () => {
  const { sig } = es256();
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });
  const priv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const oct = createSecretKey(Buffer.alloc(32, 1)).export({ format: 'jwk' });
  const reasons = (alg: string, jwk: object | string) => {
    const r = jwsVerify(encodeJwsVerifyArgs(alg, typeof jwk === 'string' ? jwk : JSON.stringify(jwk), input, sig), call) as Uint8Array;
    assert.is(r[0], 2, `${alg} ${JSON.stringify(jwk).slice(0, 40)}`);
    return Buffer.from(r.subarray(1)).toString();
  };
  assert.match(reasons('RS256', rsa1024), /1024 bits is outside 2048\.\.8192/);
  assert.match(reasons('ES256', p384), /crv "P-384" does not fit the algorithm \(needs P-256\)/);
  assert.match(reasons('RS256', p384), /kty "EC" does not fit the algorithm \(needs RSA\)/);
  assert.match(reasons('ES256', priv), /private or symmetric material/);
  assert.match(reasons('ES256', oct), /private or symmetric material|kty/);
  assert.match(reasons('ES256', '[1,2]'), /not a JSON object/);
  assert.match(reasons('ES256', '{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}'), /does not import/);
});

test('every argument is bounded; malformed framing is BadArgument', () => {
  const { jwk, sig } = es256();
  const big = 'x'.repeat(JWS_LIMITS.inputBytes + 1);
  assert.is(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, big, sig), call), WasmResult.BadArgument);
  assert.is(jwsVerify(encodeJwsVerifyArgs('ES256', ' '.repeat(JWS_LIMITS.jwkBytes + 1), input, sig), call), WasmResult.BadArgument);
  assert.is(jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, Buffer.alloc(JWS_LIMITS.signatureBytes + 1)), call), WasmResult.BadArgument);
  const ok = encodeJwsVerifyArgs('ES256', jwk, input, sig);
  assert.is(jwsVerify(ok.subarray(0, ok.length - 1), call), WasmResult.BadArgument, 'truncated');
  assert.is(jwsVerify(Buffer.concat([ok, Buffer.alloc(1)]), call), WasmResult.BadArgument, 'trailing bytes');
  const lying = Buffer.from(ok);
  lying.writeUInt32LE(0xffffffff, 0);
  assert.is(jwsVerify(lying, call), WasmResult.BadArgument, 'a length past the end');
  assert.is(jwsVerify(new Uint8Array(0), call), WasmResult.BadArgument);
});

test('the check is priced before it runs: by curve and RSA size, plus a key import on a cache miss', () => {
  const { jwk, sig } = es256();
  charged.length = 0;
  jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, sig), call);
  assert.equal(charged, [160_000, 240_000], 'import (new key) then the P-256 check');
  charged.length = 0;
  jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, sig), call);
  assert.equal(charged, [240_000], 'the key is cached');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 4096 });
  const rsig = sign('sha256', Buffer.from(input), rsa.privateKey);
  charged.length = 0;
  jwsVerify(encodeJwsVerifyArgs('RS256', JSON.stringify(rsa.publicKey.export({ format: 'jwk' })), input, rsig), call);
  assert.equal(charged, [160_000, 640_000], 'RSA-4096 costs four times RSA-2048');
  // A budget that is spent stops the call before any verification: the exception reaches the VM.
  const broke = { chargeFuel: () => { throw new CpuBudgetExceeded('spent'); } };
  assert.throws(() => jwsVerify(encodeJwsVerifyArgs('ES256', jwk, input, sig), broke), (e: Error) => e instanceof CpuBudgetExceeded);
});

test('EdDSA and PS256 verify', () => {
  const ed = generateKeyPairSync('ed25519');
  const edSig = sign(null, Buffer.from(input), ed.privateKey);
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('EdDSA', JSON.stringify(ed.publicKey.export({ format: 'jwk' })), input, edSig), call)), 1);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ps = sign('sha256', Buffer.from(input), { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  const jwk = JSON.stringify(rsa.publicKey.export({ format: 'jwk' }));
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('PS256', jwk, input, ps), call)), 1);
  assert.is(code(jwsVerify(encodeJwsVerifyArgs('RS256', jwk, input, ps), call)), 0, 'a PSS signature is not PKCS#1 v1.5');
});

test.run();
