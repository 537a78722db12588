// targetRefs on AuthorizationPolicy, RequestAuthentication, RateLimitPolicy, WasmPlugin and Telemetry:
// which proxies get a policy that names a Gateway (its gateway proxies in the policy's namespace,
// never sidecars), and what validation refuses, with the field's path.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../src/documents.ts';
import { validateDocuments, formatErrors } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../src/translate/gateways.ts';
import type { WorkloadIdentity } from '../src/proxy-config.ts';

const gatewayLabels = { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' };
const gatewayHere: WorkloadIdentity = { name: 'ingress', namespace: 'default', labels: gatewayLabels, serviceAccount: 'ingress' };
const gatewayElsewhere: WorkloadIdentity = { name: 'shared-ingress', namespace: 'istio-system', labels: gatewayLabels, serviceAccount: 'shared' };
const sidecar: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage', istio: 'ingressgateway' }, serviceAccount: 'productpage' };

const ref = { group: 'networking.istio.io', kind: 'Gateway', name: 'web' };
const JWKS = '{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}';

function base(): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'productpage', namespace: 'default' },
      spec: { hosts: ['productpage.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1' }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'web', namespace: 'default' },
      spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 8080, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'other', namespace: 'default' },
      spec: { selector: { app: 'nothing-selects-this' }, servers: [{ port: { number: 8081, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] },
    },
  ];
}

const policies = (targetRefs: object[]): object[] => [
  { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'default' }, spec: { targetRefs, jwtRules: [{ issuer: 'https://issuer', jwks: JWKS }] } },
  { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'need-jwt', namespace: 'default' }, spec: { targetRefs, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] } },
  {
    apiVersion: 'policy.wasmesh.io/v1alpha1',
    kind: 'RateLimitPolicy',
    metadata: { name: 'edge', namespace: 'default' },
    spec: { targetRefs, local: [{ name: 'all', descriptor: { global: true }, maxTokens: 5, fillInterval: '1s' }] },
  },
  { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'WasmPlugin', metadata: { name: 'edge-plugin', namespace: 'default' }, spec: { targetRefs, url: 'file:///tmp/edge.wasm' } },
];

function check(values: object[]) {
  const docs = fromObjects(values);
  return { docs, result: validateDocuments(docs) };
}

function translate(values: object[], workload: WorkloadIdentity) {
  const { docs, result } = check(values);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

/** Names of the filters in a proxy's chains (a gateway's chain travels in outboundFilters). */
const chain = (c: ReturnType<typeof translate>) => [...c.inboundFilters, ...c.outboundFilters].map((b) => b.name);

test('policies naming a Gateway go to its gateway proxies in the namespace, never to sidecars', () => {
  const docs = [...base(), ...policies([ref])];
  const gw = translate(docs, gatewayHere);
  assert.equal(chain(gw), ['wasmesh-authn', 'wasmesh-policy', 'edge-plugin']);
  const policy = gw.outboundFilters.find((b) => b.name === 'wasmesh-policy')!.pluginConfig as { policies: { name: string }[]; rateLimits: { name: string }[] };
  assert.equal(policy.policies.map((p) => p.name), ['need-jwt']);
  assert.equal(policy.rateLimits.map((r) => r.name), ['default.edge.all']);
  // A sidecar whose labels the Gateway's selector would match gets none of them.
  assert.equal(chain(translate(docs, sidecar)), []);
  // Nor does a gateway proxy of another namespace that the Gateway also selects.
  assert.equal(chain(translate(docs, gatewayElsewhere)), []);
});

test('a Gateway that does not select the proxy, or a second ref to one that does: applied once, by the refs that match', () => {
  const none = translate([...base(), ...policies([{ ...ref, name: 'other' }])], gatewayHere);
  assert.equal(chain(none), []);
  const both = translate([...base(), ...policies([{ ...ref, name: 'other' }, { ...ref, namespace: 'default' }])], gatewayHere);
  assert.equal(chain(both), ['wasmesh-authn', 'wasmesh-policy', 'edge-plugin']);
});

test('policies in the root namespace naming a root-namespace Gateway reach its proxies in any namespace', () => {
  const rootGateway = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'mesh-edge', namespace: 'istio-system' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 8090, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] } };
  const ap = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'edge-deny', namespace: 'istio-system' }, spec: { targetRefs: [{ ...ref, name: 'mesh-edge' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] } };
  const docs = [...base(), rootGateway, ap];
  assert.equal(chain(translate(docs, gatewayHere)), ['wasmesh-policy']);
  assert.equal(chain(translate(docs, gatewayElsewhere)), ['wasmesh-policy']);
  assert.equal(chain(translate(docs, sidecar)), []);
});

test('a Telemetry naming a Gateway overrides for its gateway proxies only', () => {
  const t = { apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: { name: 'edge-metrics', namespace: 'default' }, spec: { targetRefs: [ref], metrics: [{ overrides: [{ match: { metric: 'ALL_METRICS' }, disabled: true }] }] } };
  const docs = fromObjects([...base(), t]);
  const v = validateDocuments(docs);
  assert.ok(v.ok, formatErrors(v.errors));
  assert.is(translateProxyConfig(docs, gatewayHere).telemetry?.outbound.metrics, false);
  assert.is(translateProxyConfig(docs, sidecar).telemetry, undefined);
});

test('validation: selector with targetRefs, a Service, a Gateway API gateway, an unknown Gateway, another namespace, other kinds', () => {
  const cases: [object, RegExp][] = [
    [{ targetRefs: [ref], selector: { matchLabels: { app: 'x' } } }, /spec\.targetRefs: selector and targetRefs are mutually exclusive/],
    [{ targetRefs: [{ group: '', kind: 'Service', name: 'productpage' }] }, /spec\.targetRefs\[0\]\.kind: Istio applies a policy that targets a Service to waypoint proxies only, never to sidecars.*use selector|select the Service's workloads with selector/],
    [{ targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'web' }] }, /spec\.targetRefs\[0\]\.group: wasmesh has Istio Gateways \(group networking\.istio\.io/],
    [{ targetRefs: [{ kind: 'Gateway', name: 'web' }] }, /spec\.targetRefs\[0\]\.group: a Gateway is in group networking\.istio\.io/],
    [{ targetRefs: [{ ...ref, name: 'nope' }] }, /spec\.targetRefs\[0\]\.name: no Gateway "nope" in namespace "default" \(Gateways there: other, web\)/],
    [{ targetRefs: [{ ...ref, namespace: 'shop' }] }, /spec\.targetRefs\[0\]\.namespace: a target must be in the AuthorizationPolicy's own namespace "default"/],
    [{ targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio' }] }, /spec\.targetRefs\[0\]\.kind: targetRefs to a GatewayClass are not supported/],
  ];
  for (const [spec, expected] of cases) {
    const ap = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'default' }, spec };
    const { result } = check([...base(), ap]);
    assert.not.ok(result.ok, JSON.stringify(spec));
    assert.match(formatErrors(result.errors), expected);
  }
  // The same checks for every kind that takes targetRefs.
  for (const doc of policies([{ group: '', kind: 'Service', name: 'productpage' }])) {
    const { result } = check([...base(), doc]);
    assert.match(formatErrors(result.errors), /targetRefs\[0\]\.kind: Istio applies a policy that targets a Service to waypoint proxies only/, (doc as { kind: string }).kind);
  }
  const tel = { apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: { name: 't', namespace: 'default' }, spec: { targetRefs: [{ ...ref, name: 'nope' }] } };
  assert.match(formatErrors(check([...base(), tel]).result.errors), /Telemetry default\/t: spec\.targetRefs\[0\]\.name: no Gateway "nope"/);
});

test.run();
