// The authn filter through the wasm runtime (FilterHarness), with inline keys: every algorithm, the
// claims checks, the refused forms, token locations and outputs. Tokens are minted by `jose`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ISSUER, jwks, load, mint, send, signingKey, status, unsecured, type SigningKey } from './support.ts';

const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const keys = new Map<string, SigningKey>();

test.before(async () => {
  for (const alg of ALGS) keys.set(alg, await signingKey(alg));
});

const rule = (extra: object = {}) => ({ issuer: ISSUER, jwks: jwks(...keys.values()), ...extra });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

test('each algorithm verifies with its key and hands the payload on; the token header is removed', async () => {
  const h = await load({ rules: [rule()] });
  try {
    for (const alg of ALGS) {
      const r = await send(h, bearer(await mint(keys.get(alg)!)));
      assert.is(status(r), 200, alg);
      assert.is(r.request?.headers.authorization, undefined, `${alg}: forwardOriginalToken is false by default`);
    }
  } finally {
    await h.close();
  }
});

test('a forged signature, a token signed by another key with the same kid, and a tampered payload get 401', async () => {
  const h = await load({ rules: [rule()] });
  try {
    const good = await mint(keys.get('ES256')!);
    const [head, payload, sig] = good.split('.');
    const flipped = sig.slice(0, -2) + (sig.at(-2) === 'A' ? 'B' : 'A') + sig.at(-1);
    const forged = await send(h, bearer(`${head}.${payload}.${flipped}`));
    assert.is(status(forged), 401);
    assert.is(forged.localResponse?.body, 'Jwt verification fails');
    assert.is(forged.localResponse?.headers['www-authenticate'], 'Bearer realm="http://productpage:9080/api/v1/products", error="invalid_token"');
    assert.is(forged.localResponse?.details, 'jwt_authn_access_denied{Jwt_verification_fails}');

    const other = await signingKey('ES256', 'es256-key');
    assert.is(status(await send(h, bearer(await mint(other)))), 401, 'same kid, another key');

    const evil = Buffer.from(JSON.stringify({ iss: ISSUER, sub: 'admin', exp: 9999999999 })).toString('base64url');
    assert.is(status(await send(h, bearer(`${head}.${evil}.${sig}`))), 401, 'payload swapped under a valid signature');
  } finally {
    await h.close();
  }
});

test('alg none and HMAC are refused, whatever the key set holds', async () => {
  const hmacJwk = { kty: 'oct', k: Buffer.from('secret-secret-secret-secret-secret').toString('base64url'), kid: 'h', alg: 'HS256' };
  const h = await load({ rules: [{ issuer: ISSUER, jwks: JSON.stringify({ keys: [keys.get('RS256')!.jwk, hmacJwk] }) }] });
  try {
    const none = await send(h, bearer(unsecured()));
    assert.is(status(none), 401);
    assert.is(none.localResponse?.body, 'Jwt header [alg] is not supported');
    // An HS256 token "signed" with the RSA public key as the secret: the classic key-confusion attack.
    const { SignJWT } = await import('jose');
    const secret = new TextEncoder().encode(JSON.stringify(keys.get('RS256')!.jwk));
    const hs = await new SignJWT({ iss: ISSUER, sub: 'x' }).setProtectedHeader({ alg: 'HS256', kid: 'rs256-key' }).sign(secret);
    assert.is(status(await send(h, bearer(hs))), 401);
    const hs2 = await new SignJWT({ iss: ISSUER, sub: 'x' }).setProtectedHeader({ alg: 'HS256', kid: 'h' }).sign(Buffer.from('secret-secret-secret-secret-secret'));
    assert.is(status(await send(h, bearer(hs2))), 401, 'the oct key is never used');
  } finally {
    await h.close();
  }
});

test('exp, nbf and iat with 60 s of clock skew; iss and aud', async () => {
  const h = await load({ rules: [rule({ audiences: ['bookinfo.example.com'] })] });
  const k = keys.get('ES256')!;
  const aud = 'bookinfo.example.com';
  try {
    const expired = await send(h, bearer(await mint(k, { aud, expIn: -120 })));
    assert.is(expired.localResponse?.body, 'Jwt is expired');
    assert.is(status(await send(h, bearer(await mint(k, { aud, expIn: -30 })))), 200, 'within the skew');
    const early = await send(h, bearer(await mint(k, { aud, nbfIn: 120 })));
    assert.is(early.localResponse?.body, 'Jwt not yet valid');
    assert.is(status(await send(h, bearer(await mint(k, { aud, nbfIn: 30 })))), 200, 'within the skew');
    assert.is((await send(h, bearer(await mint(k, { aud, iatIn: 600 })))).localResponse?.body, 'Jwt issued in the future');
    assert.is(status(await send(h, bearer(await mint(k, { aud, expIn: null })))), 200, 'no exp: accepted, as Envoy does');
    const wrongAud = await send(h, bearer(await mint(k, { aud: 'other.example.com' })));
    assert.is(wrongAud.localResponse?.body, 'Audiences in Jwt are not allowed');
    assert.is(status(await send(h, bearer(await mint(k)))), 401, 'no aud while audiences are required');
    assert.is(status(await send(h, bearer(await mint(k, { aud: ['x', 'https://bookinfo.example.com/'] })))), 200, 'a list; scheme and trailing slash ignored');
    const wrongIss = await send(h, bearer(await mint(k, { aud, iss: 'https://evil.test' })));
    assert.is(wrongIss.localResponse?.body, 'Jwt issuer is not configured');
  } finally {
    await h.close();
  }
});

test('malformed and oversized tokens get 401 with the reason; no token passes without a principal', async () => {
  const h = await load({ rules: [rule()], maxTokenBytes: 2048 });
  try {
    for (const [token, body] of [
      ['abc', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ['a.b.c.d', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ['!!!.e30.c2ln', 'Jwt header is an invalid Base64url encoded'],
      [`${Buffer.from('{"alg":"ES256"}').toString('base64url')}.e30=.c2ln`, 'Jwt payload is an invalid Base64url encoded'],
      [`${Buffer.from('{"alg":"ES256","alg":"none"}').toString('base64url')}.e30.c2ln`, 'Jwt header is an invalid JSON'],
      [`${Buffer.from('[1]').toString('base64url')}.e30.c2ln`, 'Jwt header is an invalid JSON'],
      [`${Buffer.from('{"alg":"ES256","crit":["exp"]}').toString('base64url')}.e30.c2ln`, 'Jwt header [crit] is not supported'],
    ] as const) {
      const r = await send(h, bearer(token));
      assert.is(status(r), 401, token);
      assert.is(r.localResponse?.body, body, token);
    }
    const big = await mint(keys.get('ES256')!, { claims: { pad: 'x'.repeat(3000) } });
    const r = await send(h, bearer(big));
    assert.is(status(r), 401);
    assert.is(r.localResponse?.body, 'Jwt is larger than the size limit');
    const none = await send(h, {});
    assert.is(status(none), 200);
    assert.is(none.request?.headers['x-jwt-payload'], undefined);
    // Another scheme in Authorization is not a token of the Bearer location.
    assert.is(status(await send(h, { authorization: 'Basic YWxhZGRpbjpvcGVuc2VzYW1l' })), 200);
  } finally {
    await h.close();
  }
});

test('fromHeaders with a prefix, fromParams, fromCookies; outputs and forwardOriginalToken', async () => {
  const h = await load({
    rules: [
      rule({
        fromHeaders: [{ name: 'X-Jwt-Assertion', prefix: 'Token ' }],
        fromParams: ['my_token'],
        fromCookies: ['session'],
        forwardOriginalToken: true,
        outputPayloadToHeader: 'x-jwt-payload',
        outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }, { header: 'x-team', claim: 'org.team' }, { header: 'x-groups', claim: 'groups' }],
      }),
    ],
  });
  const k = keys.get('RS256')!;
  try {
    const token = await mint(k, { claims: { org: { team: 'books' }, groups: ['a', 'b'] } });
    const viaHeader = await send(h, { 'x-jwt-assertion': `Token ${token}`, 'x-sub': 'spoofed', 'x-jwt-payload': 'spoofed' });
    assert.is(status(viaHeader), 200);
    const seen = viaHeader.request!.headers;
    assert.is(seen['x-jwt-assertion'], `Token ${token}`, 'forwardOriginalToken keeps it');
    assert.is(seen['x-sub'], 'alice');
    assert.is(seen['x-team'], 'books');
    assert.is(seen['x-groups'], 'a,b');
    assert.is(JSON.parse(Buffer.from(seen['x-jwt-payload'] as string, 'base64url').toString()).sub, 'alice');

    assert.is(status(await send(h, {}, `/api?x=1&my_token=${token}`)), 200);
    assert.is(status(await send(h, { cookie: `a=b; session=${token}; c=d` })), 200);
    assert.is(status(await send(h, {}, '/api?my_token=a.b.c')), 401);
    const noToken = await send(h, { 'x-sub': 'spoofed', authorization: `Bearer ${token}` });
    assert.is(status(noToken), 200, 'Authorization is not a location of this rule');
    assert.is(noToken.request?.headers['x-sub'], undefined, 'output headers a client sends are removed');
  } finally {
    await h.close();
  }
});

test('two issuers: each token is checked against the rule of its issuer', async () => {
  const other = await signingKey('ES256', 'other');
  const h = await load({ rules: [rule(), { issuer: 'https://other.test', jwks: jwks(other) }] });
  try {
    assert.is(status(await send(h, bearer(await mint(other, { iss: 'https://other.test' })))), 200);
    assert.is(status(await send(h, bearer(await mint(other)))), 401, 'signed by the other issuer\'s key, claims ISSUER');
  } finally {
    await h.close();
  }
});

test('bad configurations are refused with the field path', async () => {
  const cases: Array<[object, string]> = [
    [{ rules: [{ jwks: '{}' }] }, 'rules[0].issuer: is required'],
    [{ rules: [{ issuer: 'x' }] }, 'rules[0]: needs exactly one of jwks and remoteJwks'],
    [{ rules: [{ issuer: 'x', jwks: '{"keys":[{"kty":"oct","k":"AAAA"}]}' }] }, 'rules[0].jwks: the JWKS has no usable signature key'],
    [{ rules: [{ issuer: 'x', jwks: 'nope' }] }, 'rules[0].jwks: the JWKS is not JSON'],
    [{ rules: [{ issuer: 'x', remoteJwks: { cluster: 'c', authority: 'a', path: 'jwks' } }] }, "rules[0].remoteJwks.path: must start with '/'"],
    [{ rules: [{ issuer: 'x', jwks: jwks(keys.get('ES256')!), fromHeaders: [{ name: 'bad header' }] }] }, 'rules[0].fromHeaders[0].name: "bad header" is not a valid header name'],
    [{ rules: [], clockSkewSeconds: 9999 }, 'clockSkewSeconds: must be an integer from 0 to 600'],
    [{ rules: [{ issuer: 'x', jwks: '{}', extra: 1 }] }, 'rules[0].extra: unknown field'],
  ];
  for (const [config, message] of cases) {
    const err = await load(config).then(
      async (h) => {
        await h.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.ok(err, `accepted: ${JSON.stringify(config)}`);
    assert.ok(err!.message.includes(message), `${err!.message}\n  should include: ${message}`);
  }
});

test.run();
