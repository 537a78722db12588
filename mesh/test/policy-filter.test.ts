// AuthorizationPolicy documents -> the policy filter's pluginConfig.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseDocuments, type AuthorizationPolicy } from '../src/documents.ts';
import { policyFilterConfig, isSupportedWhenKey, tcpPolicyFilterConfig, type AuthorizationPolicyDoc } from '../src/translate/policy-filter.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';

const schema = JSON.parse(readFileSync(new URL('../../schemas/json/filters/policy.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

function conforms(config: unknown): void {
  assert.ok(validate(config), JSON.stringify(validate.errors));
}

const policy = (name: string, spec: AuthorizationPolicyDoc['spec'], namespace?: string): AuthorizationPolicyDoc => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: namespace === undefined ? { name } : { name, namespace },
  spec,
});

test('no policies: an empty policy list (allow everything)', () => {
  const config = policyFilterConfig([]);
  assert.equal(config, { policies: [] });
  conforms(config);
});

test('spec: {} is an ALLOW policy without rules (deny all); rules: [{}] is one empty rule (allow all)', () => {
  assert.equal(policyFilterConfig([policy('deny-all', {}, 'prod')]), { policies: [{ name: 'deny-all', namespace: 'prod', action: 'ALLOW' }] });
  assert.equal(policyFilterConfig([policy('allow-all', { rules: [{}] })]), { policies: [{ name: 'allow-all', namespace: 'default', action: 'ALLOW', rules: [{}] }] });
});

test('a full rule is copied in Istio shape; the selector is dropped, empty lists are left out', () => {
  const doc = policy('deny-ratings', {
    selector: { matchLabels: { app: 'ratings' } },
    action: 'DENY',
    rules: [
      {
        from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'], notNamespaces: [], ipBlocks: ['10.0.0.0/8', '2001:db8::/32'] } }],
        to: [{ operation: { paths: ['/ratings*'], methods: ['GET'], notPorts: ['9090'] } }],
        when: [
          { key: 'request.headers[x-user]', values: ['alice'], notValues: [] },
          { key: 'source.namespace', notValues: ['kube-system'] },
        ],
      },
    ],
  });
  const config = policyFilterConfig([doc]);
  assert.equal(config.policies, [
    {
      name: 'deny-ratings',
      namespace: 'default',
      action: 'DENY',
      rules: [
        {
          from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'], ipBlocks: ['10.0.0.0/8', '2001:db8::/32'] } }],
          to: [{ operation: { notPorts: ['9090'], methods: ['GET'], paths: ['/ratings*'] } }],
          when: [
            { key: 'request.headers[x-user]', values: ['alice'] },
            { key: 'source.namespace', notValues: ['kube-system'] },
          ],
        },
      ],
    },
  ]);
  // Fields come out in a fixed order, whatever order the document used.
  assert.equal(Object.keys(config.policies[0]!.rules![0]!.to![0]!.operation), ['notPorts', 'methods', 'paths']);
  conforms(config);
});

test('AUDIT is kept; the output is sorted by namespace and name and does not depend on input order', () => {
  const docs = [policy('b', { action: 'AUDIT', rules: [{}] }, 'x'), policy('a', { action: 'DENY' }, 'y'), policy('z', {}, 'x'), policy('a', {}, 'x')];
  const config = policyFilterConfig(docs);
  assert.equal(config.policies.map((p) => `${p.namespace}.${p.name}:${p.action}`), ['x.a:ALLOW', 'x.b:AUDIT', 'x.z:ALLOW', 'y.a:DENY']);
  assert.equal(policyFilterConfig([...docs].reverse()), config);
  conforms(config);
});

test('the input documents are not modified and share nothing with the output', () => {
  const doc = policy('p', { rules: [{ to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['10.0.0.1'] }] }] });
  const before = JSON.stringify(doc);
  const config = policyFilterConfig([doc]);
  config.policies[0]!.rules![0]!.to![0]!.operation.methods!.push('POST');
  config.policies[0]!.rules![0]!.when![0]!.values!.push('x');
  assert.is(JSON.stringify(doc), before);
});

test('rate limit buckets are passed through (and left out when there are none)', () => {
  const rateLimits = [
    { name: 'per-user', descriptor: { header: 'x-user' }, maxTokens: 10, fillIntervalMs: 1000 },
    { name: 'api', descriptor: { pathPrefix: '/api' }, maxTokens: 100, tokensPerFill: 10, fillIntervalMs: 100 },
    { name: 'peer', descriptor: { sourcePrincipal: true as const }, maxTokens: 5, fillIntervalMs: 1000 },
    { name: 'all', descriptor: { global: true as const }, maxTokens: 1000, fillIntervalMs: 1000 },
  ];
  const config = policyFilterConfig([], rateLimits);
  assert.equal(config.rateLimits, rateLimits);
  assert.ok(config.rateLimits![0] !== rateLimits[0]);
  conforms(config);
  assert.not.ok('rateLimits' in policyFilterConfig([], []));
});

test('keys and fields the filter cannot evaluate throw, naming the policy and the field', () => {
  assert.throws(
    () => policyFilterConfig([policy('p', { rules: [{ when: [{ key: 'request.body', values: ['x'] }] }] }, 'ns')]),
    /AuthorizationPolicy ns\/p: spec\.rules\[0\]\.when\[0\]\.key: unsupported key "request\.body"/,
  );
  assert.throws(() => policyFilterConfig([policy('p', { rules: [{ when: [{ key: 'source.ip' }] }] })]), /spec\.rules\[0\]\.when\[0\]: needs values or notValues/);
  assert.throws(
    () => policyFilterConfig([policy('p', { rules: [{ from: [{ source: { serviceAccounts: ['x'] } }] }] })]),
    /spec\.rules\[0\]\.from\[0\]\.source: unsupported field "serviceAccounts"/,
  );
  for (const key of ['request.headers[x-user]', 'request.auth.claims[iss]', 'request.auth.claims[groups][0]', 'destination.port', 'remote.ip']) assert.ok(isSupportedWhenKey(key), key);
  for (const key of ['request.headers[]', 'request.headers', 'request.auth.claims', 'source.port', 'request.headers[a]x']) assert.not.ok(isSupportedWhenKey(key), key);
});

test('TCP: an ALLOW rule with an HTTP-only field is left out; a DENY or AUDIT rule loses those fields and keeps the rest', () => {
  const config = tcpPolicyFilterConfig([
    policy('allow', { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'], ports: ['9000'] } }] }, { from: [{ source: { requestPrincipals: ['*'] } }] }, { to: [{ operation: { ports: ['9001'] } }] }] }, 'foo'),
    policy('deny', { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['*'], namespaces: ['bar'] } }], to: [{ operation: { paths: ['/admin'], notHosts: ['a'] } }], when: [{ key: 'request.headers[x]', values: ['1'] }, { key: 'source.ip', values: ['10.0.0.0/8'] }] }] }, 'foo'),
    policy('audit', { action: 'AUDIT', rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }, 'foo'),
  ]);
  assert.equal(config, {
    policies: [
      { name: 'allow', namespace: 'foo', action: 'ALLOW', rules: [{ to: [{ operation: { ports: ['9001'] } }] }] },
      { name: 'audit', namespace: 'foo', action: 'AUDIT', rules: [{}] },
      { name: 'deny', namespace: 'foo', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['bar'] } }], to: [{ operation: {} }], when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }] }] },
    ],
  });
  conforms(config);
  // An ALLOW policy whose every rule used one keeps existing with no rules: it denies every connection.
  assert.equal(tcpPolicyFilterConfig([policy('only-http', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }, 'foo')]), { policies: [{ name: 'only-http', namespace: 'foo', action: 'ALLOW', rules: [] }] });
});

test('a sidecar selected by a policy gets the policy filter on its inbound TCP listeners too, after AUTHN/AUTHZ plugins', () => {
  const docs = fromObjects([{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'foo' }, spec: { selector: { matchLabels: { app: 'db' } }, rules: [{ to: [{ operation: { methods: ['GET'], ports: ['1'] } }] }] } }], 'mesh.yaml');
  const db = translateProxyConfig(docs, { name: 'db', namespace: 'foo', labels: { app: 'db' }, serviceAccount: 'db' }, { telemetry: false });
  assert.equal(db.networkFilters?.inbound.map((b) => [b.name, b.rootId, b.failStrategy]), [['wasmesh-policy-tcp', 'policy', 'FAIL_CLOSE']]);
  assert.equal((db.networkFilters!.inbound[0]!.pluginConfig as { policies: unknown[] }).policies, [{ name: 'p', namespace: 'foo', action: 'ALLOW', rules: [] }]);
  assert.equal(db.networkFilters!.outbound, []);
  const other = translateProxyConfig(docs, { name: 'web', namespace: 'foo', labels: { app: 'web' }, serviceAccount: 'web' }, { telemetry: false });
  assert.is(other.networkFilters, undefined, 'no policy selects it: no network filter, and its config version is unchanged');
});

test('the example security documents translate into a configuration the filter schema accepts', () => {
  const { documents, errors } = parseDocuments(readFileSync(new URL('../../schemas/examples/security.yaml', import.meta.url), 'utf8'), 'security.yaml');
  assert.equal(errors, []);
  const policies = documents.map((d) => d.value).filter((v): v is AuthorizationPolicy => (v as { kind?: string }).kind === 'AuthorizationPolicy');
  assert.ok(policies.length > 0);
  const config = policyFilterConfig(policies);
  assert.is(config.policies.length, policies.length);
  conforms(config);
});

test.run();
