// PeerAuthentication precedence -> ProxyConfig.mtls, and outbound auto mTLS -> ClusterConfig.tls.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const reviews: WorkloadIdentity = { name: 'reviews-v1', namespace: 'default', labels: { app: 'reviews' }, serviceAccount: 'reviews' };

function translate(objects: object[], workload = reviews, trustDomain?: string): ProxyConfig {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, workload, { telemetry: false, ...(trustDomain ? { trustDomain } : {}) });
}

function pa(name: string, namespace: string, spec: object): object {
  return { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace }, spec };
}

test('PeerAuthentication: default PERMISSIVE; mesh < namespace < workload selector; UNSET inherits', () => {
  assert.equal(translate([]).mtls, { mode: 'PERMISSIVE' });
  const mesh = pa('default', 'istio-system', { mtls: { mode: 'STRICT' } });
  assert.equal(translate([mesh]).mtls, { mode: 'STRICT' });
  const ns = pa('default', 'default', { mtls: { mode: 'DISABLE' } });
  assert.equal(translate([mesh, ns]).mtls, { mode: 'DISABLE' });
  const sel = pa('reviews', 'default', { selector: { matchLabels: { app: 'reviews' } }, mtls: { mode: 'PERMISSIVE' } });
  assert.equal(translate([mesh, ns, sel]).mtls, { mode: 'PERMISSIVE' });
  const unset = pa('reviews', 'default', { selector: { matchLabels: { app: 'reviews' } }, mtls: { mode: 'UNSET' } });
  assert.equal(translate([mesh, ns, unset]).mtls, { mode: 'DISABLE' }, 'UNSET inherits the namespace mode');
  assert.equal(translate([mesh, unset]).mtls, { mode: 'STRICT' }, 'then the mesh mode');
  // Policies of other namespaces and selectors that do not match do not apply.
  const otherNs = pa('default', 'bookinfo', { mtls: { mode: 'DISABLE' } });
  const otherSel = pa('ratings', 'default', { selector: { matchLabels: { app: 'ratings' } }, mtls: { mode: 'DISABLE' } });
  assert.equal(translate([mesh, otherNs, otherSel]).mtls, { mode: 'STRICT' });
});

test('PeerAuthentication: portLevelMtls of the selector policy; UNSET port inherits the workload mode', () => {
  const sel = pa('reviews', 'default', {
    selector: { matchLabels: { app: 'reviews' } },
    mtls: { mode: 'STRICT' },
    portLevelMtls: { '9080': { mode: 'PERMISSIVE' }, '9090': { mode: 'UNSET' } },
  });
  assert.equal(translate([sel]).mtls, { mode: 'STRICT', portLevel: { 9080: 'PERMISSIVE', 9090: 'STRICT' } });
});

function service(host: string, extra: object = {}): object {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: host.split('.')[0], namespace: 'default' },
    spec: { hosts: [host], resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], ...extra },
  };
}

const ratingsEntries = [
  { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'ratings-1', namespace: 'default' }, spec: { address: '10.0.0.1', labels: { app: 'ratings' }, serviceAccount: 'ratings' } },
  { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'ratings-2', namespace: 'default' }, spec: { address: '10.0.0.2', labels: { app: 'ratings' }, serviceAccount: 'ratings-canary' } },
];

test('auto mTLS: mesh services get ISTIO_MUTUAL with the SPIFFE ids of their workloads; external ones do not', () => {
  const config = translate(
    [
      service('ratings.default.svc.cluster.local', { workloadSelector: { labels: { app: 'ratings' } } }),
      service('details.internal', { location: 'MESH_INTERNAL', endpoints: [{ address: '10.0.1.1' }] }),
      service('api.example.com', { location: 'MESH_EXTERNAL', endpoints: [{ address: '10.0.2.1' }] }),
      ...ratingsEntries,
    ],
    reviews,
    'example.org',
  );
  const c = config.clusters;
  assert.equal(c['outbound|9080||ratings.default.svc.cluster.local']!.tls, {
    mode: 'ISTIO_MUTUAL',
    subjectAltNames: ['spiffe://example.org/ns/default/sa/ratings', 'spiffe://example.org/ns/default/sa/ratings-canary'],
    auto: true,
  });
  assert.equal(c['outbound|9080||details.internal']!.tls, { mode: 'ISTIO_MUTUAL', subjectAltNames: [], auto: true });
  assert.is(c['outbound|9080||api.example.com']!.tls, undefined);
});

test('DestinationRule tls: DISABLE turns auto mTLS off; ISTIO_MUTUAL with subjectAltNames; subset and port level win', () => {
  const dr = (spec: object) => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'ratings', namespace: 'default' }, spec: { host: 'ratings', ...spec } });
  const base = [service('ratings.default.svc.cluster.local', { workloadSelector: { labels: { app: 'ratings' } } }), ...ratingsEntries];
  const name = 'outbound|9080||ratings.default.svc.cluster.local';
  assert.is(translate([...base, dr({ trafficPolicy: { tls: { mode: 'DISABLE' } } })]).clusters[name]!.tls, undefined);
  assert.equal(translate([...base, dr({ trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/default/sa/x'] } } })]).clusters[name]!.tls, {
    mode: 'ISTIO_MUTUAL',
    subjectAltNames: ['spiffe://cluster.local/ns/default/sa/x'],
  });
  const config = translate([
    ...base,
    dr({
      trafficPolicy: { tls: { mode: 'DISABLE' }, portLevelSettings: [{ port: { number: 9080 }, tls: { mode: 'ISTIO_MUTUAL' } }] },
      subsets: [{ name: 'plain', labels: { app: 'ratings' }, trafficPolicy: { tls: { mode: 'DISABLE' } } }],
    }),
  ]);
  assert.equal(config.clusters[name]!.tls, { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/default/sa/ratings', 'spiffe://cluster.local/ns/default/sa/ratings-canary'] });
  assert.is(config.clusters['outbound|9080|plain|ratings.default.svc.cluster.local']!.tls, undefined);
});

test.run();
