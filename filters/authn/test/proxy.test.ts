// RequestAuthentication end to end: documents validated and translated by mesh/ (as a standalone proxy
// does), a running proxy whose authn filter fetches keys from a real JWKS endpoint on loopback through
// its callout machinery, and the policy filter reading the verified payload from the stream's filter
// state. Tokens are minted by `jose`. Istio's documented examples are followed where they apply.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../../mesh/src/documents.ts';
import { validateDocuments, formatErrors } from '../../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import type { Proxy } from '../../../proxy-host/src/proxy.ts';
import { startProxy } from '../../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { policyWasm } from '../../policy/test/support.ts';
import { ISSUER, JwksServer, authnWasm, jwks, mint, signingKey, waitFor, type SigningKey } from './support.ts';

const workload = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };

let app: TestServer;
const running: Proxy[] = [];
const servers: JwksServer[] = [];

test.before(async () => {
  await Promise.all([authnWasm(), policyWasm()]);
  app = await startHttp1('app');
});

test.after(async () => {
  for (const p of running) await p.stop(100);
  for (const s of servers) await s.stop().catch(() => {});
  await app?.close();
});

async function jwksServer(...keys: SigningKey[]): Promise<JwksServer> {
  const s = await new JwksServer().start();
  s.body = jwks(...keys);
  servers.push(s);
  return s;
}

/** Istio's "require a JWT for /api/*" pair of documents (RequestAuthentication + AuthorizationPolicy). */
function requireJwt(jwksUri: string, extraRule: object = {}): object[] {
  return [
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'jwt-example', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'productpage' } }, jwtRules: [{ issuer: ISSUER, jwksUri, ...extraRule }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'require-jwt', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'productpage' } },
        action: 'DENY',
        rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }], to: [{ operation: { paths: ['/api/*'] } }] }],
      },
    },
  ];
}

async function meshProxy(values: object[]): Promise<Proxy> {
  const docs = fromObjects(values);
  const v = validateDocuments(docs);
  assert.ok(v.ok, formatErrors(v.errors));
  const proxy = await startProxy(translateProxyConfig(docs, workload, { telemetry: false }), app.port);
  running.push(proxy);
  return proxy;
}

const get = (proxy: Proxy, path: string, headers: Record<string, string> = {}) => request(proxy.inboundPort, { path, headers: { host: 'productpage', ...headers } });

test('no token: 403 from the policy on /api/*, 200 elsewhere; forged: 401 with www-authenticate; valid: 200 with the token removed', async () => {
  const key = await signingKey('ES256');
  const server = await jwksServer(key);
  const proxy = await meshProxy(requireJwt(`http://127.0.0.1:${server.port}/jwks.json`, { outputClaimToHeaders: [{ header: 'x-jwt-sub', claim: 'sub' }] }));

  const none = await get(proxy, '/api/v1/products');
  assert.is(none.status, 403);
  assert.is(none.body, 'RBAC: access denied');
  assert.is((await get(proxy, '/productpage')).status, 200, 'outside /api/* no token is needed');

  const token = await mint(key);
  const forged = await get(proxy, '/api/v1/products', { authorization: `Bearer ${token.slice(0, -4)}AAAA` });
  assert.is(forged.status, 401);
  assert.is(forged.body, 'Jwt verification fails');
  assert.is(forged.headers['www-authenticate'], 'Bearer realm="http://productpage/api/v1/products", error="invalid_token"');

  const before = app.received.length;
  const ok = await get(proxy, '/api/v1/products?x=1', { authorization: `Bearer ${token}`, 'x-jwt-sub': 'mallory' });
  assert.is(ok.status, 200);
  const seen = app.received[before]!;
  assert.is(seen.headers.authorization, undefined, 'the token is not forwarded (forwardOriginalToken: false)');
  assert.is(seen.headers['x-jwt-sub'], 'alice', 'the claim header is the verified one');
  assert.ok(server.fetches >= 1, 'the keys came from the JWKS endpoint');

  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.match(stats.body, /authn_requests_total\{result="verified"\} [1-9]/);
  assert.match(stats.body, /authn_requests_total\{result="denied"\} [1-9]/);
});

test('an unknown kid refreshes the key set once; keys removed by a rotation stop verifying', async () => {
  const oldKey = await signingKey('RS256', 'old');
  const server = await jwksServer(oldKey);
  const proxy = await meshProxy(requireJwt(`http://127.0.0.1:${server.port}/keys`));
  assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${await mint(oldKey)}` })).status, 200);
  const fetchesBefore = server.fetches;

  // Rotation: the issuer publishes a new key and drops the old one.
  const newKey = await signingKey('RS256', 'new');
  server.body = jwks(newKey);
  await new Promise((r) => setTimeout(r, 1100)); // past the filter's minimum interval between kid refreshes
  assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${await mint(newKey)}` })).status, 200, 'the new kid is fetched');
  assert.is(server.fetches, fetchesBefore + 1);

  await new Promise((r) => setTimeout(r, 1100));
  const old = await get(proxy, '/api/a', { authorization: `Bearer ${await mint(oldKey)}` });
  assert.is(old.status, 401, 'the old key is gone from the set');
  assert.is(old.body, "Jwks doesn't have key to match kid or alg from Jwt");
  // Unknown kids cannot make the proxy hammer the JWKS endpoint: one refresh per interval.
  const n = server.fetches;
  const stranger = await signingKey('RS256', 'stranger');
  for (let i = 0; i < 5; i++) assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${await mint(stranger)}` })).status, 401);
  assert.ok(server.fetches <= n + 1, `${server.fetches - n} fetches for 5 unknown-kid requests`);
});

test('JWKS down: the last good keys keep verifying; without any keys a token gets 401 "Jwks remote fetch is failed"', async () => {
  const key = await signingKey('EdDSA', 'ed');
  const server = await jwksServer(key);
  const proxy = await meshProxy(requireJwt(`http://127.0.0.1:${server.port}/jwks`));
  const token = await mint(key);
  assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${token}` })).status, 200);
  await server.stop();
  // An unknown kid forces a refresh, which fails: the keys stay.
  await new Promise((r) => setTimeout(r, 1100));
  const other = await signingKey('EdDSA', 'other');
  assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${await mint(other)}` })).status, 401);
  assert.is((await get(proxy, '/api/a', { authorization: `Bearer ${token}` })).status, 200, 'last good keys kept');

  const down = await jwksServer(key);
  await down.stop();
  const fresh = await meshProxy(requireJwt(`http://127.0.0.1:${down.port}/jwks`));
  const r = await get(fresh, '/api/a', { authorization: `Bearer ${token}` });
  assert.is(r.status, 401);
  assert.is(r.body, 'Jwks remote fetch is failed');
  assert.is((await get(fresh, '/api/a')).status, 403, 'no token: still the policy\'s decision');
});

test('Istio example: inline jwks, x-jwt-assertion header, a group claim required by an ALLOW policy, payload to a header', async () => {
  const key = await signingKey('RS256', 'istio-demo');
  const proxy = await meshProxy([
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'jwt-example', namespace: 'istio-system' },
      spec: {
        jwtRules: [{
          issuer: 'testing@secure.istio.io',
          jwks: jwks(key),
          fromHeaders: [{ name: 'x-jwt-assertion' }],
          outputPayloadToHeader: 'x-jwt-payload',
          audiences: ['app.example.com'],
        }],
      },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'require-group', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'productpage' } },
        action: 'ALLOW',
        rules: [{
          from: [{ source: { requestPrincipals: ['testing@secure.istio.io/testing@secure.istio.io'] } }],
          when: [{ key: 'request.auth.claims[groups]', values: ['group1'] }],
        }],
      },
    },
  ]);
  const token = (groups: string[]) => mint(key, { iss: 'testing@secure.istio.io', sub: 'testing@secure.istio.io', aud: 'app.example.com', claims: { groups } });
  const before = app.received.length;
  assert.is((await get(proxy, '/headers', { 'x-jwt-assertion': await token(['group1', 'group2']) })).status, 200);
  const payload = JSON.parse(Buffer.from(String(app.received[before]!.headers['x-jwt-payload']), 'base64url').toString());
  assert.equal(payload.groups, ['group1', 'group2']);
  assert.is((await get(proxy, '/headers', { 'x-jwt-assertion': await token(['group2']) })).status, 403, 'without group1');
  assert.is((await get(proxy, '/headers', { authorization: `Bearer ${await token(['group1'])}` })).status, 403, 'Authorization is not a location of this rule: no principal');
  assert.is((await get(proxy, '/headers')).status, 403);
});

test('validation names the field: no key source, both, a bad URI, a key set without usable keys, targetRefs', () => {
  const doc = (spec: object) => fromObjects([{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'r' }, spec }]);
  const problems = (spec: object) => formatErrors(validateDocuments(doc(spec)).errors);
  assert.match(problems({ jwtRules: [{ issuer: 'x' }] }), /jwtRules\[0\]\.issuer: with neither jwksUri nor jwks the key set is discovered from the issuer.*must be an http or https URL/s);
  assert.match(problems({ jwtRules: [{ issuer: 'https://issuer.test/?x=1' }] }), /jwtRules\[0\]\.issuer: .*no query or fragment/);
  assert.ok(validateDocuments(doc({ jwtRules: [{ issuer: 'https://issuer.test/realms/a/' }] })).ok, 'an issuer URL alone is enough (OpenID Connect discovery)');
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwks: '{"keys":[]}', jwksUri: 'https://a/b' }] }), /mutually exclusive/);
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwksUri: 'ftp://a/b' }] }), /jwksUri/);
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}' }] }), /jwks.*no usable signature key/s);
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwks: '{' }] }), /jwks.*not JSON/s);
  assert.match(problems({ targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }] }), /targetRefs\[0\]\.group: wasmesh has Istio Gateways/);
  assert.match(problems({ targetRefs: [{ kind: 'Service', name: 'productpage' }] }), /targetRefs\[0\]\.kind: .*waypoint proxies only/);
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwksUri: 'https://a/b', timeout: '5 s' }] }), /timeout/);
  assert.match(problems({ jwtRules: [{ issuer: 'x', jwksUri: 'https://a/b', fromHeaders: [{ prefix: 'B' }] }] }), /fromHeaders\[0\].*name/s);
  assert.ok(validateDocuments(doc({ jwtRules: [{ issuer: 'x', jwksUri: 'https://a/b', timeout: '2s' }] })).ok);
});

test.run();
