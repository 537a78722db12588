// OpenID Connect discovery: a jwtRule with neither jwks nor jwksUri makes the proxy fetch
// <issuer>/.well-known/openid-configuration and then its jwks_uri, through the same callout and
// caching as a jwksUri. A real issuer on loopback (HTTP) serves both; tokens are minted by `jose`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fromObjects } from '../../../mesh/src/documents.ts';
import { validateDocuments, formatErrors } from '../../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import type { Proxy } from '../../../proxy-host/src/proxy.ts';
import { startProxy } from '../../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { policyWasm } from '../../policy/test/support.ts';
import { authnWasm, jwks, mint, signingKey, waitFor, type SigningKey } from './support.ts';

const workload = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };

/** An OpenID provider on loopback: its discovery document and key set, each counted and changeable. */
class Issuer {
  keys: SigningKey[] = [];
  /** Overrides of the discovery document's members (issuer, jwks_uri). */
  document: Record<string, unknown> = {};
  up = true;
  discoveries = 0;
  keyFetches = 0;
  port = 0;
  #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      if (!this.up) {
        res.writeHead(503).end('down');
        return;
      }
      if (req.url === '/realms/shop/.well-known/openid-configuration') {
        this.discoveries++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: this.url, jwks_uri: `${this.url}/protocol/openid-connect/certs`, authorization_endpoint: `${this.url}/auth`, ...this.document }));
      } else if (req.url === '/realms/shop/protocol/openid-connect/certs') {
        this.keyFetches++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(jwks(...this.keys));
      } else {
        res.writeHead(404).end();
      }
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/realms/shop`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

let app: TestServer;
const running: Proxy[] = [];
const issuers: Issuer[] = [];

test.before(async () => {
  await Promise.all([authnWasm(), policyWasm()]);
  app = await startHttp1('app');
});

test.after(async () => {
  for (const p of running) await p.stop(100);
  for (const i of issuers) await i.stop().catch(() => {});
  await app?.close();
});

async function issuer(...keys: SigningKey[]): Promise<Issuer> {
  const i = await new Issuer().start();
  i.keys = keys;
  issuers.push(i);
  return i;
}

/** A RequestAuthentication whose rule names only its issuer, and a policy requiring a principal. */
async function proxyFor(issuerUrl: string, ruleExtra: object = {}): Promise<Proxy> {
  const docs = fromObjects([
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'oidc', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'productpage' } }, jwtRules: [{ issuer: issuerUrl, ...ruleExtra }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'need-jwt', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'productpage' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] },
    },
  ]);
  const v = validateDocuments(docs);
  assert.ok(v.ok, formatErrors(v.errors));
  const config = translateProxyConfig(docs, workload, { telemetry: false });
  const proxy = await startProxy(config, app.port);
  running.push(proxy);
  return proxy;
}

const get = (proxy: Proxy, token?: string) =>
  request(proxy.inboundPort, { path: '/api/v1/products', headers: { host: 'productpage', ...(token ? { authorization: `Bearer ${token}` } : {}) } });

test('the translator asks the filter to discover: the issuer\'s well-known document, through a cluster for its host', async () => {
  const docs = fromObjects([{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'oidc', namespace: 'default' }, spec: { jwtRules: [{ issuer: 'https://accounts.example.com/', timeout: '2s' }] } }]);
  const config = translateProxyConfig(docs, workload, { telemetry: false });
  const rule = (config.inboundFilters.find((b) => b.name === 'wasmesh-authn')!.pluginConfig as { rules: { remoteJwks: unknown }[] }).rules[0]!;
  assert.equal(rule.remoteJwks, {
    uri: 'https://accounts.example.com/.well-known/openid-configuration',
    cluster: 'jwks|443||accounts.example.com',
    authority: 'accounts.example.com',
    path: '/.well-known/openid-configuration',
    timeoutMs: 2000,
    discovery: true,
  });
});

test('a valid token passes after discovery then key fetch; a rotated key refetches the key set only', async () => {
  const key = await signingKey('ES256', 'k1');
  const idp = await issuer(key);
  const proxy = await proxyFor(idp.url);
  assert.is((await get(proxy)).status, 403, 'no token: no principal');
  const ok = await get(proxy, await mint(key, { iss: idp.url }));
  assert.is(ok.status, 200, ok.body);
  assert.is(idp.discoveries, 1);
  assert.is(idp.keyFetches, 1);
  // A forged token (same kid, another key): 401 from the discovered keys.
  const forged = await get(proxy, await mint(await signingKey('ES256', 'k1'), { iss: idp.url }));
  assert.is(forged.status, 401);
  assert.match(String(forged.headers['www-authenticate']), /^Bearer realm=".*", error="invalid_token"$/);

  // Rotation: a token with a new kid makes the proxy fetch the key set again, not the document.
  const next = await signingKey('RS256', 'k2');
  idp.keys = [key, next];
  await new Promise((r) => setTimeout(r, 1100)); // the unknown-kid refresh is at most once a second
  assert.is((await get(proxy, await mint(next, { iss: idp.url }))).status, 200);
  assert.is(idp.discoveries, 1, 'the jwks_uri is kept');
  assert.is(idp.keyFetches, 2);
});

test('the issuer down: the last good keys stay in use; back up: new keys are discovered again', async () => {
  const key = await signingKey('ES256', 'a');
  const idp = await issuer(key);
  const proxy = await proxyFor(idp.url);
  assert.is((await get(proxy, await mint(key, { iss: idp.url }))).status, 200);
  idp.up = false;
  const rotated = await signingKey('ES256', 'b');
  idp.keys = [rotated];
  await new Promise((r) => setTimeout(r, 1100));
  // The unknown kid triggers a fetch that fails (503): the token gets 401, the old keys stay.
  const refused = await get(proxy, await mint(rotated, { iss: idp.url }));
  assert.is(refused.status, 401);
  assert.is(refused.body, 'Jwks doesn\'t have key to match kid or alg from Jwt');
  assert.is((await get(proxy, await mint(key, { iss: idp.url }))).status, 200, 'the last good keys still verify');
  // Back up: the retry (every 5 s after a failure) discovers again and gets the new keys.
  idp.up = true;
  const before = idp.discoveries;
  await waitFor('the new key', async () => (await get(proxy, await mint(rotated, { iss: idp.url }))).status === 200, 9000);
  assert.ok(idp.discoveries > before, 'discovery is done again after a failed fetch');
});

test('a document for another issuer, or a jwks_uri on another origin: no keys are taken, the token gets 401', async () => {
  const key = await signingKey('ES256', 'x');
  const impostor = await issuer(key);
  impostor.document = { issuer: 'https://someone-else.example' };
  const p1 = await proxyFor(impostor.url);
  const r1 = await get(p1, await mint(key, { iss: impostor.url }));
  assert.is(r1.status, 401);
  assert.is(r1.body, 'Jwks remote fetch is failed');
  assert.is(impostor.keyFetches, 0, 'the key set of a document naming another issuer is never fetched');

  const elsewhere = await issuer(key);
  elsewhere.document = { jwks_uri: `http://127.0.0.2:${elsewhere.port}/realms/shop/protocol/openid-connect/certs` };
  const p2 = await proxyFor(elsewhere.url);
  const r2 = await get(p2, await mint(key, { iss: elsewhere.url }));
  assert.is(r2.status, 401);
  assert.is(r2.body, 'Jwks remote fetch is failed');
  assert.is(elsewhere.keyFetches, 0);
});

test.run();
