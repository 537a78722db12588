// DestinationRule outlierDetection and the wasmesh healthCheck extension → ClusterConfig fields.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateHealthCheck, translateOutlierDetection } from '../src/translate/clusters.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const workload: WorkloadIdentity = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'default' };
const HOST = 'reviews.default.svc.cluster.local';

function mesh(drSpec: object): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'reviews', namespace: 'default' },
      spec: {
        hosts: [HOST],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [
          { number: 9080, name: 'http', protocol: 'HTTP' },
          { number: 9090, name: 'grpc', protocol: 'GRPC' },
        ],
        endpoints: [
          { address: '10.0.0.1', labels: { version: 'v1' } },
          { address: '10.0.0.2', labels: { version: 'v2' } },
        ],
      },
    },
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'default' }, spec: { host: 'reviews', ...drSpec } },
  ];
}

function translate(objects: object[]): ProxyConfig {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

function errorsOf(objects: object[]): string {
  const result = validateDocuments(fromObjects(objects, 'mesh.yaml'));
  assert.not.ok(result.ok, 'expected validation errors');
  return formatErrors(result.errors);
}

const cluster = (config: ProxyConfig, port: number, subset = '') => config.clusters[`outbound|${port}|${subset}|${HOST}`]!;

test('outlierDetection: absent means none; an empty block takes Istio defaults', () => {
  const none = translate(mesh({}));
  assert.is(cluster(none, 9080).outlierDetection, undefined);
  assert.is(cluster(none, 9080).healthCheck, undefined);
  assert.not.ok('outlierDetection' in cluster(none, 9080));

  const defaults = translate(mesh({ trafficPolicy: { outlierDetection: {} } }));
  assert.equal(cluster(defaults, 9080).outlierDetection, {
    consecutive5xxErrors: 5,
    consecutiveGatewayErrors: 0,
    intervalMs: 10_000,
    baseEjectionTimeMs: 30_000,
    maxEjectionPercent: 10,
    minHealthPercent: 0,
  });
});

test('outlierDetection: every field, durations parsed, 0 kept where it is a value', () => {
  const config = translate(
    mesh({
      trafficPolicy: {
        outlierDetection: {
          consecutive5xxErrors: 0,
          consecutiveGatewayErrors: 3,
          interval: '250ms',
          baseEjectionTime: '1.5s',
          maxEjectionPercent: 0,
          minHealthPercent: 40,
        },
      },
    }),
  );
  assert.equal(cluster(config, 9080).outlierDetection, {
    consecutive5xxErrors: 0,
    consecutiveGatewayErrors: 3,
    intervalMs: 250,
    baseEjectionTimeMs: 1500,
    maxEjectionPercent: 0,
    minHealthPercent: 40,
  });
});

test('healthCheck: http with defaults, expected statuses as Envoy ranges', () => {
  const config = translate(mesh({ trafficPolicy: { healthCheck: { http: { path: '/healthz' } } } }));
  assert.equal(cluster(config, 9080).healthCheck, {
    intervalMs: 10_000,
    timeoutMs: 1_000,
    healthyThreshold: 1,
    unhealthyThreshold: 3,
    check: { kind: 'http', path: '/healthz', expectedStatuses: [{ start: 200, end: 201 }] },
  });
  const full = translate(
    mesh({
      trafficPolicy: {
        healthCheck: {
          http: { path: '/ready?full=1', host: 'health.local', expectedStatuses: [204, { start: 200, end: 300 }] },
          interval: '2s',
          timeout: '300ms',
          healthyThreshold: 2,
          unhealthyThreshold: 4,
        },
      },
    }),
  );
  assert.equal(cluster(full, 9080).healthCheck, {
    intervalMs: 2000,
    timeoutMs: 300,
    healthyThreshold: 2,
    unhealthyThreshold: 4,
    check: { kind: 'http', path: '/ready?full=1', host: 'health.local', expectedStatuses: [{ start: 204, end: 205 }, { start: 200, end: 300 }] },
  });
});

test('healthCheck: grpc and tcp', () => {
  const grpc = translate(mesh({ trafficPolicy: { healthCheck: { grpc: { serviceName: 'reviews.v1.Reviews' }, interval: '1s' } } }));
  assert.equal(cluster(grpc, 9090).healthCheck!.check, { kind: 'grpc', serviceName: 'reviews.v1.Reviews' });
  assert.is(cluster(grpc, 9090).protocol, 'grpc');
  const bare = translateHealthCheck({ grpc: {} });
  assert.equal(bare!.check, { kind: 'grpc', serviceName: '' });
  const tcp = translate(mesh({ trafficPolicy: { healthCheck: { tcp: {}, unhealthyThreshold: 1 } } }));
  assert.equal(cluster(tcp, 9080).healthCheck, { intervalMs: 10_000, timeoutMs: 1_000, healthyThreshold: 1, unhealthyThreshold: 1, check: { kind: 'tcp' } });
});

test('subset and port-level settings override the rule-level policies like loadBalancer', () => {
  const config = translate(
    mesh({
      trafficPolicy: {
        outlierDetection: { consecutive5xxErrors: 7 },
        healthCheck: { tcp: {} },
        portLevelSettings: [{ port: { number: 9090 }, outlierDetection: { consecutiveGatewayErrors: 2 } }],
      },
      subsets: [
        { name: 'v1', labels: { version: 'v1' }, trafficPolicy: { outlierDetection: { consecutive5xxErrors: 2, baseEjectionTime: '5s' } } },
        { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { healthCheck: { http: { path: '/v2' } } } },
      ],
    }),
  );
  // Rule level.
  assert.is(cluster(config, 9080).outlierDetection!.consecutive5xxErrors, 7);
  assert.equal(cluster(config, 9080).healthCheck!.check, { kind: 'tcp' });
  // Port level replaces the whole policy for that port (no inheritance: no healthCheck there).
  assert.is(cluster(config, 9090).outlierDetection!.consecutiveGatewayErrors, 2);
  assert.is(cluster(config, 9090).outlierDetection!.consecutive5xxErrors, 5);
  assert.is(cluster(config, 9090).healthCheck, undefined);
  // Subsets override field by field.
  assert.equal(cluster(config, 9080, 'v1').outlierDetection!.consecutive5xxErrors, 2);
  assert.equal(cluster(config, 9080, 'v1').outlierDetection!.baseEjectionTimeMs, 5000);
  assert.equal(cluster(config, 9080, 'v1').healthCheck!.check, { kind: 'tcp' });
  assert.is(cluster(config, 9080, 'v2').outlierDetection!.consecutive5xxErrors, 7);
  assert.equal(cluster(config, 9080, 'v2').healthCheck!.check, { kind: 'http', path: '/v2', expectedStatuses: [{ start: 200, end: 201 }] });
});

test('schema: healthCheck needs exactly one check kind and valid fields', () => {
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { interval: '1s' } } })), /healthCheck/);
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { tcp: {}, http: { path: '/' } } } })), /healthCheck/);
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { http: { path: 'no-slash' } } } })), /path/);
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { tcp: {}, unhealthyThreshold: 0 } } })), /unhealthyThreshold/);
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { tcp: {}, interval: 'soon' } } })), /interval|duration/);
  assert.match(errorsOf(mesh({ trafficPolicy: { healthCheck: { tcp: {}, bogus: 1 } } })), /bogus/);
  assert.match(errorsOf(mesh({ trafficPolicy: { outlierDetection: { maxEjectionPercent: 101 } } })), /maxEjectionPercent/);
});

test('translateOutlierDetection / translateHealthCheck: undefined in, undefined out', () => {
  assert.is(translateOutlierDetection(undefined), undefined);
  assert.is(translateHealthCheck(undefined), undefined);
});

test.run();
