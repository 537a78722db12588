// RequestAuthentication -> the authn filter binding and the clusters its key sets are fetched from.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../src/documents.ts';
import { validateDocuments, formatErrors } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const workload = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const ra = (name: string, namespace: string, spec: object) => ({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name, namespace }, spec });

function translate(values: object[]) {
  const docs = fromObjects(values);
  const v = validateDocuments(docs);
  assert.ok(v.ok, formatErrors(v.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

test('rules of the workload\'s namespace and of the root namespace add up; other namespaces and selectors do not apply', () => {
  const config = translate([
    ra('a', 'default', { selector: { matchLabels: { app: 'productpage' } }, jwtRules: [{ issuer: 'https://a', jwksUri: 'https://keys.example.com/.well-known/jwks.json', timeout: '2s' }] }),
    ra('mesh', 'istio-system', { jwtRules: [{ issuer: 'https://mesh', jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}', fromHeaders: [{ name: 'X-Token' }] }] }),
    ra('other-ns', 'shop', { jwtRules: [{ issuer: 'https://shop', jwksUri: 'http://shop/jwks' }] }),
    ra('other-app', 'default', { selector: { matchLabels: { app: 'reviews' } }, jwtRules: [{ issuer: 'https://r', jwksUri: 'http://r/jwks' }] }),
  ]);
  const authn = config.inboundFilters.find((b) => b.name === 'wasmesh-authn');
  assert.ok(authn, 'the authn filter is bound');
  assert.is(authn!.failStrategy, 'FAIL_CLOSE');
  assert.is(authn!.phase, 'AUTHN');
  const rules = (authn!.pluginConfig as { rules: Array<Record<string, unknown>> }).rules;
  assert.equal(rules.map((r) => r.issuer), ['https://a', 'https://mesh']);
  assert.equal(rules[0]!.remoteJwks, {
    uri: 'https://keys.example.com/.well-known/jwks.json',
    cluster: 'jwks|443||keys.example.com',
    authority: 'keys.example.com',
    path: '/.well-known/jwks.json',
    timeoutMs: 2000,
  });
  assert.equal(rules[0]!.fromHeaders, [{ name: 'authorization', prefix: 'Bearer ' }], 'Istio\'s default locations, written out');
  assert.equal(rules[0]!.fromParams, ['access_token']);
  assert.equal(rules[1]!.fromHeaders, [{ name: 'x-token' }]);
  assert.is(rules[1]!.fromParams, undefined);
  const tls = config.clusters['jwks|443||keys.example.com'];
  assert.ok(tls);
  assert.equal(tls!.tls, { mode: 'SIMPLE', subjectAltNames: [], sni: 'keys.example.com' });
  assert.equal(tls!.endpoints.map((e) => `${e.address}:${e.port}`), ['keys.example.com:443']);
});

test('an http jwksUri of a mesh service uses the service\'s cluster; authn runs before the policy filter', () => {
  const config = translate([
    { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'issuer', namespace: 'default' }, spec: { hosts: ['issuer.default.svc.cluster.local'], ports: [{ number: 8080, name: 'http', protocol: 'HTTP' }], resolution: 'STATIC', endpoints: [{ address: '10.0.0.9' }] } },
    ra('a', 'default', { jwtRules: [{ issuer: 'https://a', jwksUri: 'http://issuer.default.svc.cluster.local:8080/jwks' }] }),
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'default' }, spec: { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] } },
  ]);
  const names = config.inboundFilters.map((b) => b.name);
  assert.equal(names, ['wasmesh-authn', 'wasmesh-policy']);
  const remote = (config.inboundFilters[0]!.pluginConfig as { rules: Array<{ remoteJwks: { cluster: string } }> }).rules[0]!.remoteJwks;
  assert.is(remote.cluster, 'outbound|8080||issuer.default.svc.cluster.local');
  assert.equal(config.clusters[remote.cluster]!.endpoints.map((e) => e.address), ['10.0.0.9']);
});

test('no RequestAuthentication, or one without rules: no authn filter', () => {
  assert.not.ok(translate([]).inboundFilters.some((b) => b.name === 'wasmesh-authn'));
  assert.not.ok(translate([ra('empty', 'default', {})]).inboundFilters.some((b) => b.name === 'wasmesh-authn'));
});

test.run();
