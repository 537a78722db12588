// Istio's automatic mTLS, per endpoint: a client sends mTLS only to endpoints that run a sidecar
// (label security.istio.io/tlsMode=istio) and whose own PeerAuthentication (workload, namespace or
// mesh level, port level included) does not DISABLE it; a DestinationRule's tls wins.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClusterConfig, ProxyConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const HOST = 'ratings.shop.svc.cluster.local';
const CLUSTER = `outbound|9080||${HOST}`;
const SIDECAR = { 'security.istio.io/tlsMode': 'istio' };

function translate(objects: object[]): ProxyConfig {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, productpage, { telemetry: false });
}

function errorsOf(objects: object[]): string {
  const result = validateDocuments(fromObjects(objects, 'mesh.yaml'));
  assert.not.ok(result.ok, 'expected validation errors');
  return formatErrors(result.errors);
}

const pa = (name: string, namespace: string, spec: object): object => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace }, spec });
const dr = (spec: object, name = 'ratings'): object => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace: 'shop' }, spec: { host: HOST, ...spec } });
const entry = (name: string, address: string, labels: Record<string, string>, port = 9080): object => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace: 'shop' },
  spec: { address, ports: { http: port }, labels, serviceAccount: name },
});

/** ratings in namespace shop: two sidecars (v1 on 9080, v2 on 9090) and one workload without a sidecar. */
function mesh(...extra: object[]): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'ratings', namespace: 'shop' },
      spec: { hosts: [HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: 'ratings' } } },
    },
    entry('ratings-v1', '10.0.0.1', { app: 'ratings', version: 'v1', ...SIDECAR }),
    entry('ratings-v2', '10.0.0.2', { app: 'ratings', version: 'v2', ...SIDECAR }, 9090),
    entry('ratings-legacy', '10.0.0.3', { app: 'ratings', version: 'legacy' }),
    ...extra,
  ];
}

/** address -> 'mtls' | 'plain' for one cluster, as the proxy reads it. */
function tlsByEndpoint(cluster: ClusterConfig | undefined): Record<string, string> {
  assert.ok(cluster, 'cluster exists');
  const out: Record<string, string> = {};
  for (const e of cluster.endpoints) {
    const mtls = cluster.tls?.mode === 'ISTIO_MUTUAL' && (!cluster.tls.auto || e.tlsMode === 'istio');
    out[e.address] = mtls ? 'mtls' : cluster.tls && cluster.tls.mode !== 'ISTIO_MUTUAL' ? cluster.tls.mode : 'plain';
  }
  return out;
}

test('auto mTLS: only endpoints labeled as sidecars get mTLS; one cluster mixes both', () => {
  const config = translate(mesh());
  const cluster = config.clusters[CLUSTER]!;
  assert.equal(cluster.tls, {
    mode: 'ISTIO_MUTUAL',
    subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/ratings-legacy', 'spiffe://cluster.local/ns/shop/sa/ratings-v1', 'spiffe://cluster.local/ns/shop/sa/ratings-v2'],
    auto: true,
  });
  assert.equal(tlsByEndpoint(cluster), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
  assert.is(cluster.endpoints.find((e) => e.address === '10.0.0.1')!.tlsMode, 'istio');
  assert.is(cluster.endpoints.find((e) => e.address === '10.0.0.3')!.tlsMode, undefined);
  // A label value other than "istio" (a sidecar without mTLS says "disabled") is no sidecar to mTLS.
  const disabled = translate(mesh(entry('ratings-v3', '10.0.0.4', { app: 'ratings', 'security.istio.io/tlsMode': 'disabled' })));
  assert.is(tlsByEndpoint(disabled.clusters[CLUSTER])['10.0.0.4'], 'plain');
});

test('auto mTLS follows the destination PeerAuthentication: mesh-wide and namespace DISABLE mean plaintext, STRICT and PERMISSIVE mTLS', () => {
  assert.equal(tlsByEndpoint(translate(mesh(pa('default', 'istio-system', { mtls: { mode: 'DISABLE' } }))).clusters[CLUSTER]), { '10.0.0.1': 'plain', '10.0.0.2': 'plain', '10.0.0.3': 'plain' });
  assert.equal(tlsByEndpoint(translate(mesh(pa('default', 'istio-system', { mtls: { mode: 'STRICT' } }))).clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
  assert.equal(tlsByEndpoint(translate(mesh(pa('default', 'shop', { mtls: { mode: 'DISABLE' } }))).clusters[CLUSTER]), { '10.0.0.1': 'plain', '10.0.0.2': 'plain', '10.0.0.3': 'plain' });
  // The destination's namespace decides, not the client's.
  assert.equal(tlsByEndpoint(translate(mesh(pa('default', 'default', { mtls: { mode: 'DISABLE' } }))).clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
  // Namespace STRICT over mesh DISABLE: mTLS again.
  const both = translate(mesh(pa('default', 'istio-system', { mtls: { mode: 'DISABLE' } }), pa('default', 'shop', { mtls: { mode: 'STRICT' } })));
  assert.equal(tlsByEndpoint(both.clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
});

test('auto mTLS follows workload-selector and port-level PeerAuthentication, per endpoint', () => {
  const v1Off = pa('v1-off', 'shop', { selector: { matchLabels: { version: 'v1' } }, mtls: { mode: 'DISABLE' } });
  assert.equal(tlsByEndpoint(translate(mesh(v1Off)).clusters[CLUSTER]), { '10.0.0.1': 'plain', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
  // Port level: v2 listens on 9090; DISABLE there turns mTLS off for it, the same setting on another port does not.
  const v2Port = pa('v2-port', 'shop', { selector: { matchLabels: { version: 'v2' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '9090': { mode: 'DISABLE' } } });
  assert.equal(tlsByEndpoint(translate(mesh(v2Port)).clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'plain', '10.0.0.3': 'plain' });
  const otherPort = pa('v2-port', 'shop', { selector: { matchLabels: { version: 'v2' } }, portLevelMtls: { '8443': { mode: 'DISABLE' } } });
  assert.equal(tlsByEndpoint(translate(mesh(otherPort)).clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'plain' });
  // Mesh DISABLE, but a workload policy says STRICT for v1: v1 only.
  const v1Strict = pa('v1-strict', 'shop', { selector: { matchLabels: { version: 'v1' } }, mtls: { mode: 'STRICT' } });
  assert.equal(tlsByEndpoint(translate(mesh(pa('default', 'istio-system', { mtls: { mode: 'DISABLE' } }), v1Strict)).clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'plain', '10.0.0.3': 'plain' });
});

test('a DestinationRule tls wins over auto mTLS: ISTIO_MUTUAL to every endpoint, DISABLE none, at rule, port and subset level', () => {
  const all = translate(mesh(dr({ trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } })));
  assert.is(all.clusters[CLUSTER]!.tls?.auto, undefined, 'not auto: the rule asked for it');
  assert.equal(tlsByEndpoint(all.clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'mtls' });
  // Even against a PeerAuthentication DISABLE: what the rule says goes (as in Istio).
  const forced = translate(mesh(pa('default', 'istio-system', { mtls: { mode: 'DISABLE' } }), dr({ trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } })));
  assert.equal(tlsByEndpoint(forced.clusters[CLUSTER]), { '10.0.0.1': 'mtls', '10.0.0.2': 'mtls', '10.0.0.3': 'mtls' });
  assert.is(translate(mesh(dr({ trafficPolicy: { tls: { mode: 'DISABLE' } } }))).clusters[CLUSTER]!.tls, undefined);
  const levels = translate(
    mesh(
      dr({
        trafficPolicy: { portLevelSettings: [{ port: { number: 9080 }, tls: { mode: 'DISABLE' } }] },
        subsets: [
          { name: 'v1', labels: { version: 'v1' }, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
      }),
    ),
  );
  assert.is(levels.clusters[CLUSTER]!.tls, undefined, 'port level DISABLE');
  assert.equal(tlsByEndpoint(levels.clusters[`outbound|9080|v1|${HOST}`]), { '10.0.0.1': 'mtls' }, 'subset ISTIO_MUTUAL over port level');
  assert.equal(tlsByEndpoint(levels.clusters[`outbound|9080|v2|${HOST}`]), { '10.0.0.2': 'plain' }, 'subset without tls: port level');
});

test('SIMPLE and MUTUAL: TLS origination settings reach the cluster; no auto mTLS', () => {
  const simple = translate(mesh(dr({ trafficPolicy: { tls: { mode: 'SIMPLE', sni: 'ratings.example.com', caCertificates: '/etc/certs/ca.pem', subjectAltNames: ['ratings.example.com'] } } })));
  assert.equal(simple.clusters[CLUSTER]!.tls, { mode: 'SIMPLE', subjectAltNames: ['ratings.example.com'], sni: 'ratings.example.com', caCertificates: '/etc/certs/ca.pem' });
  const mutual = translate(mesh(dr({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/etc/certs/client.pem', privateKey: '/etc/certs/client-key.pem' } } })));
  assert.equal(mutual.clusters[CLUSTER]!.tls, { mode: 'MUTUAL', subjectAltNames: [], clientCertificate: '/etc/certs/client.pem', privateKey: '/etc/certs/client-key.pem' });
  assert.equal(tlsByEndpoint(mutual.clusters[CLUSTER]), { '10.0.0.1': 'MUTUAL', '10.0.0.2': 'MUTUAL', '10.0.0.3': 'MUTUAL' });
});

test('no auto mTLS to MESH_EXTERNAL services, even to labeled endpoints', () => {
  const external = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'api', namespace: 'shop' },
    spec: { hosts: ['api.example.com'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http' }], endpoints: [{ address: '10.9.0.1', labels: SIDECAR }] },
  };
  const config = translate([external]);
  assert.is(config.clusters['outbound|80||api.example.com']!.tls, undefined);
});

test('validation: MUTUAL needs its certificate and key; TLS files are absolute paths of SIMPLE/MUTUAL only', () => {
  const missing = errorsOf(mesh(dr({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/c.pem' } } })));
  assert.match(missing, 'spec.trafficPolicy.tls.privateKey: mode MUTUAL needs privateKey');
  const relative = errorsOf(mesh(dr({ trafficPolicy: { portLevelSettings: [{ port: { number: 9080 }, tls: { mode: 'SIMPLE', caCertificates: 'certs/ca.pem' } }] } })));
  assert.match(relative, 'spec.trafficPolicy.portLevelSettings[0].tls.caCertificates: "certs/ca.pem" is not an absolute path');
  const wrongMode = errorsOf(mesh(dr({ subsets: [{ name: 'v1', labels: { version: 'v1' }, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL', caCertificates: '/ca.pem' } } }] })));
  assert.match(wrongMode, 'spec.subsets[0].trafficPolicy.tls.caCertificates: caCertificates applies to modes SIMPLE and MUTUAL only, not ISTIO_MUTUAL');
  const keyOnSimple = errorsOf(mesh(dr({ trafficPolicy: { tls: { mode: 'SIMPLE', privateKey: '/k.pem' } } })));
  assert.match(keyOnSimple, 'privateKey applies to mode MUTUAL only, not SIMPLE');
});

test.run();
