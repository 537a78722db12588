// MeshConfig outboundTrafficPolicy -> ProxyConfig.outboundTrafficPolicy: what an injected sidecar does
// with a captured connection to a port no service has (proxy-host/src/tcp/captured-outbound.ts; the
// kernel test is integration/test/iptables-capture.test.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const workload: WorkloadIdentity = { name: 'app', namespace: 'default', labels: { app: 'app' }, serviceAccount: 'app' };
const DB = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'db', namespace: 'default' },
  spec: { hosts: ['db.mesh.test'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp-db', protocol: 'TCP' }], endpoints: [{ address: '10.0.0.1' }] },
};
const meshConfig = (spec: object) => ({ apiVersion: 'wasmesh.io/v1alpha1', kind: 'MeshConfig', metadata: { name: 'mesh', namespace: 'istio-system' }, spec });

function translate(objects: object[]): ProxyConfig {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, workload);
}

test('REGISTRY_ONLY reaches the proxy config; ALLOW_ANY and no policy leave it out (same config version)', () => {
  const none = translate([DB]);
  assert.is(none.outboundTrafficPolicy, undefined);
  assert.is(translate([DB, meshConfig({ outboundTrafficPolicy: { mode: 'ALLOW_ANY' } })]).version, translate([DB, meshConfig({})]).version);
  assert.is(translate([DB, meshConfig({ outboundTrafficPolicy: {} })]).outboundTrafficPolicy, undefined);
  assert.is(translate([DB, meshConfig({ outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } })]).outboundTrafficPolicy, 'REGISTRY_ONLY');
});

test('a mode Istio does not have is refused at its path', () => {
  const result = validateDocuments(fromObjects([DB, meshConfig({ outboundTrafficPolicy: { mode: 'DENY' } })], 'mesh.yaml'));
  assert.not.ok(result.ok);
  assert.match(formatErrors(result.errors), /spec\.outboundTrafficPolicy\.mode: must be one of ALLOW_ANY, REGISTRY_ONLY/);
  const extra = validateDocuments(fromObjects([DB, meshConfig({ outboundTrafficPolicy: { mode: 'ALLOW_ANY', egressProxy: {} } })], 'mesh.yaml'));
  assert.not.ok(extra.ok);
  assert.match(formatErrors(extra.errors), /spec\.outboundTrafficPolicy/);
});

test.run();
