// VirtualService retries, timeout, mirror and mirrorPercentage onto the RouteConfig (Istio's rendering).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, RouteConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { defaultRetryPolicy, translateRetries } from '../src/translate/routes.ts';

const workload: WorkloadIdentity = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'default' };
const REVIEWS = 'reviews.default.svc.cluster.local';

function mesh(http: object[]): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'reviews', namespace: 'default' },
      spec: {
        hosts: [REVIEWS],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
        endpoints: [
          { address: '10.0.0.1', labels: { version: 'v1' } },
          { address: '10.0.0.2', labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'reviews', namespace: 'default' },
      spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'default' }, spec: { hosts: ['reviews'], http } },
  ];
}

function translate(objects: object[]): ProxyConfig {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

function action(config: ProxyConfig, index = 0): Extract<RouteConfig['action'], { kind: 'forward' }> {
  const a = config.virtualHosts.find((v) => v.name === REVIEWS)!.routes[index]!.action;
  assert.is(a.kind, 'forward');
  return a as Extract<RouteConfig['action'], { kind: 'forward' }>;
}

const v1 = [{ destination: { host: 'reviews', subset: 'v1' } }];

test('no retries: Istio default policy (2 retries, connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes, 503)', () => {
  const a = action(translate(mesh([{ route: v1 }])));
  assert.equal(a.retry, {
    attempts: 2,
    perTryTimeoutMs: 0,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
    retriableStatusCodes: [503],
  });
  assert.equal(a.retry, defaultRetryPolicy());
  assert.is(a.timeoutMs, 0);
  assert.is(a.mirror, undefined);
});

test('retries: attempts, perTryTimeout, retryOn; attempts 0 disables; route timeout', () => {
  const config = translate(
    mesh([
      { match: [{ uri: { prefix: '/a' } }], route: v1, timeout: '3s', retries: { attempts: 4, perTryTimeout: '250ms', retryOn: 'gateway-error,reset' } },
      { match: [{ uri: { prefix: '/b' } }], route: v1, retries: { attempts: 0 } },
      { match: [{ uri: { prefix: '/c' } }], route: v1, retries: { attempts: 3 } },
    ]),
  );
  assert.equal(action(config, 0).retry, { attempts: 4, perTryTimeoutMs: 250, retryOn: ['gateway-error', 'reset'], retriableStatusCodes: [503] });
  assert.is(action(config, 0).timeoutMs, 3000);
  assert.is(action(config, 1).retry, undefined);
  assert.equal(action(config, 2).retry, { ...defaultRetryPolicy(), attempts: 3 });
});

test('retryOn status codes imply retriable-status-codes and replace the default 503', () => {
  assert.equal(translateRetries({ attempts: 2, retryOn: '5xx, 502,504 ,5xx' }), {
    attempts: 2,
    perTryTimeoutMs: 0,
    retryOn: ['5xx', 'retriable-status-codes'],
    retriableStatusCodes: [502, 504],
  });
  assert.equal(translateRetries({ attempts: 1, retryOn: 'retriable-status-codes,retriable-4xx' })?.retriableStatusCodes, [503]);
  assert.equal(translateRetries({ attempts: 1, retryOn: 'cancelled,deadline-exceeded,resource-exhausted,unavailable' })?.retryOn, ['cancelled', 'deadline-exceeded', 'resource-exhausted', 'unavailable']);
});

test('mirror and mirrorPercentage (default 100)', () => {
  const config = translate(
    mesh([
      { match: [{ uri: { prefix: '/a' } }], route: v1, mirror: { host: 'reviews', subset: 'v2' }, mirrorPercentage: { value: 12.5 } },
      { match: [{ uri: { prefix: '/b' } }], route: v1, mirror: { host: 'reviews', subset: 'v2' } },
    ]),
  );
  assert.equal(action(config, 0).mirror, { cluster: `outbound|9080|v2|${REVIEWS}`, percentage: 12.5 });
  assert.equal(action(config, 1).mirror, { cluster: `outbound|9080|v2|${REVIEWS}`, percentage: 100 });
  // The mirror's cluster exists, with the subset's endpoints.
  const mirrorCluster = config.clusters[`outbound|9080|v2|${REVIEWS}`];
  assert.ok(mirrorCluster);
  assert.equal(mirrorCluster.endpoints.map((e) => e.address), ['10.0.0.2']);
});

test('a default route (no VirtualService) gets the default retry policy too', () => {
  const config = translate(mesh([{ route: v1 }]).slice(0, 2));
  const a = action(config);
  assert.equal(a.retry, defaultRetryPolicy());
});

test.run();
