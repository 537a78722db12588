// Outlier detection on its own, with a fake clock: counting, ejection limits, return and back-off.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClusterConfig, OutlierDetectionConfig } from '../../mesh/src/proxy-config.ts';
import { Cluster, ClusterManager } from '../src/upstream/cluster.ts';
import { EndpointState } from '../src/upstream/endpoint.ts';
import { healthOf } from '../src/upstream/endpoint-health.ts';
import { DEFAULT_OUTLIER_DETECTION, OutlierDetector, outcomeStatus } from '../src/upstream/outlier-detector.ts';
import { MetricsRegistry } from '../../wasm/src/index.ts';

function endpoints(n: number): EndpointState[] {
  return Array.from({ length: n }, (_, i) => new EndpointState({ address: `10.0.0.${i + 1}`, port: 80, labels: {}, weight: 1 }));
}

function detector(n: number, config: Partial<OutlierDetectionConfig> = {}) {
  const clock = { now: 1_000_000 };
  const eps = endpoints(n);
  const events: string[] = [];
  const d = new OutlierDetector({ ...DEFAULT_OUTLIER_DETECTION, ...config }, eps, {
    onEject: (e, reason) => events.push(`eject ${e.key} ${reason}`),
    onOverflow: (e) => events.push(`overflow ${e.key}`),
  }, () => clock.now);
  return { d, eps, clock, events };
}

function fail(d: OutlierDetector, e: EndpointState, times: number, outcome: number | string = 503): void {
  for (let i = 0; i < times; i++) d.report(e, outcome);
}

test('consecutive 5xx: ejected at the threshold, a success in between resets the count', () => {
  const { d, eps, events } = detector(10, { consecutive5xxErrors: 3 });
  const [a] = eps;
  fail(d, a!, 2, 500);
  d.report(a!, 200);
  fail(d, a!, 2, 500);
  assert.ok(a!.healthy);
  assert.is(healthOf(a!).consecutive5xx, 2);
  d.report(a!, 502);
  assert.not.ok(a!.healthy);
  assert.ok(healthOf(a!).ejected);
  assert.equal(events, ['eject 10.0.0.1:80 consecutive_5xx']);
  assert.is(d.ejectedCount, 1);
  // 4xx are not errors.
  const b = eps[1]!;
  fail(d, b, 10, 404);
  assert.ok(b.healthy);
});

test('consecutive5xxErrors 0 disables it; gateway errors count 502/503/504 and local-origin failures', () => {
  const { d, eps, events } = detector(10, { consecutive5xxErrors: 0, consecutiveGatewayErrors: 3 });
  const [a, b, c] = eps;
  fail(d, a!, 20, 500);
  assert.ok(a!.healthy, '500 is not a gateway error');
  fail(d, b!, 2, 502);
  d.report(b!, 500); // resets the gateway count
  fail(d, b!, 2, 504);
  assert.ok(b!.healthy);
  d.report(c!, 'UF');
  d.report(c!, 'UT');
  d.report(c!, 503);
  assert.not.ok(c!.healthy);
  assert.equal(events, ['eject 10.0.0.3:80 consecutive_gateway_failure']);
  assert.is(outcomeStatus('UF'), 503);
  assert.is(outcomeStatus('UC'), 503);
  assert.is(outcomeStatus('UT'), 504);
  assert.is(outcomeStatus(418), 418);
});

test('connect failures count as 5xx too', () => {
  const { d, eps } = detector(10, { consecutive5xxErrors: 2 });
  d.report(eps[0]!, 'UF');
  d.report(eps[0]!, 'UC');
  assert.ok(healthOf(eps[0]!).ejected);
});

test('returns after baseEjectionTime at a sweep; the next ejection lasts twice as long; capped at 300 s', () => {
  const { d, eps, clock } = detector(3, { consecutive5xxErrors: 1, baseEjectionTimeMs: 200, intervalMs: 50 });
  const a = eps[0]!;
  d.report(a, 503);
  assert.not.ok(a.healthy);
  assert.is(healthOf(a).ejectionMs, 200);
  clock.now += 150;
  d.sweep();
  assert.not.ok(a.healthy, 'still ejected before its time');
  clock.now += 50;
  d.sweep();
  assert.ok(a.healthy, 'back after 200 ms');
  // Fails again before an interval in service passed: ejected for 2 x base.
  clock.now += 10;
  d.report(a, 503);
  assert.not.ok(a.healthy);
  assert.is(healthOf(a).ejections, 2);
  assert.is(healthOf(a).ejectionMs, 400);
  clock.now += 399;
  d.sweep();
  assert.not.ok(a.healthy);
  clock.now += 1;
  d.sweep();
  assert.ok(a.healthy);
  // Each whole interval in service forgives one ejection.
  clock.now += 50;
  d.sweep();
  assert.is(healthOf(a).ejections, 1);
  clock.now += 50;
  d.sweep();
  assert.is(healthOf(a).ejections, 0);
  d.report(a, 503);
  assert.is(healthOf(a).ejectionMs, 200);

  const long = detector(3, { consecutive5xxErrors: 1, baseEjectionTimeMs: 200_000 });
  const e = long.eps[0]!;
  healthOf(e).ejections = 5;
  long.d.report(e, 503);
  assert.is(healthOf(e).ejectionMs, 300_000, 'capped at max(300 s, base)');
});

test('maxEjectionPercent: no ejection while that share is already ejected (3 endpoints, default 10 %: one)', () => {
  const { d, eps, events } = detector(3, { consecutive5xxErrors: 1 });
  d.report(eps[0]!, 503);
  d.report(eps[1]!, 503);
  assert.is(d.ejectedCount, 1);
  assert.ok(eps[1]!.healthy);
  assert.equal(events, ['eject 10.0.0.1:80 consecutive_5xx', 'overflow 10.0.0.2:80']);

  const half = detector(4, { consecutive5xxErrors: 1, maxEjectionPercent: 50 });
  for (const e of half.eps) half.d.report(e, 503);
  assert.is(half.d.ejectedCount, 2);

  const none = detector(4, { consecutive5xxErrors: 1, maxEjectionPercent: 0 });
  for (const e of none.eps) none.d.report(e, 503);
  assert.is(none.d.ejectedCount, 0);

  const all = detector(3, { consecutive5xxErrors: 1, maxEjectionPercent: 100 });
  for (const e of all.eps) all.d.report(e, 503);
  assert.is(all.d.ejectedCount, 3);
});

test('minHealthPercent: no ejection while the healthy share is below it', () => {
  const { d, eps } = detector(4, { consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 60 });
  d.report(eps[0]!, 503); // 4/4 healthy: ejected
  d.report(eps[1]!, 503); // 3/4 = 75 %: ejected
  d.report(eps[2]!, 503); // 2/4 = 50 % < 60 %: detection is off
  assert.is(d.ejectedCount, 2);
  assert.ok(eps[2]!.healthy);
});

test('reports of an ejected endpoint and after stop() are ignored', () => {
  const { d, eps } = detector(3, { consecutive5xxErrors: 2 });
  fail(d, eps[0]!, 2);
  fail(d, eps[0]!, 5);
  assert.is(healthOf(eps[0]!).ejections, 1);
  d.stop();
  fail(d, eps[1]!, 5);
  assert.ok(eps[1]!.healthy);
});

function clusterConfig(extra: Partial<ClusterConfig>): ClusterConfig {
  return {
    name: 'c',
    host: 'c',
    port: 80,
    protocol: 'http1',
    endpoints: [1, 2, 3].map((i) => ({ address: `10.0.1.${i}`, port: 80, labels: {}, weight: 1 })),
    loadBalancer: { simple: 'ROUND_ROBIN' },
    connectionPool: {},
    ...extra,
  };
}

test('Cluster: reportOutcome takes a status, a flag or response headers; healthy = checks pass AND not ejected', () => {
  const metrics = new MetricsRegistry();
  const od = { ...DEFAULT_OUTLIER_DETECTION, consecutive5xxErrors: 2, maxEjectionPercent: 100 };
  const c = new Cluster(clusterConfig({ outlierDetection: od }), undefined, undefined, metrics);
  const [a, b] = c.endpoints;
  c.reportOutcome(a, [':status', '503', 'content-length', '0']);
  c.reportOutcome(a, 'UF');
  assert.not.ok(a!.healthy);
  c.reportOutcome(b, 500);
  c.reportOutcome(b, 200);
  assert.ok(b!.healthy);
  c.reportOutcome(undefined, 503); // no endpoint picked: nothing to count
  const text = metrics.renderPrometheus();
  assert.match(text, 'wasmesh_proxy_outlier_ejections_total{cluster="c"} 1');
  assert.match(text, 'wasmesh_proxy_outlier_ejected_endpoints{cluster="c"} 1');
  assert.match(text, 'wasmesh_proxy_endpoint_healthy{cluster="c",endpoint="10.0.1.1:80"} 0');
  assert.match(text, 'wasmesh_proxy_endpoint_healthy{cluster="c",endpoint="10.0.1.2:80"} 1');
  assert.equal((c.endpointHealth(a!).outlier as { ejected: boolean }).ejected, true);

  // An active-check failure and an ejection combine; clearing one leaves the other in force.
  const h = healthOf(b!);
  h.checkHealthy = false;
  c.reportOutcome(b, 503);
  c.reportOutcome(b, 503);
  assert.ok(h.ejected);
  h.checkHealthy = true;
  c.outlierDetector!.sweep(Date.now() + 60_000);
  assert.ok(b!.healthy);

  // Without outlier detection, reportOutcome is a no-op.
  const plain = new Cluster(clusterConfig({}));
  for (let i = 0; i < 10; i++) plain.reportOutcome(plain.endpoints[0], 503);
  assert.ok(plain.endpoints[0]!.healthy);
  assert.is(plain.outlierDetector, undefined);
});

test('ClusterManager: ejection carries over a config change; dropping outlierDetection clears it', () => {
  const m = new ClusterManager();
  const od = { ...DEFAULT_OUTLIER_DETECTION, consecutive5xxErrors: 1 };
  m.update({ c: clusterConfig({ outlierDetection: od }) });
  const c = m.get('c')!;
  c.reportOutcome(c.endpoints[0], 503);
  const ejected = c.endpoints[0]!;
  assert.not.ok(ejected.healthy);
  // Changed config (interval), same endpoints: the new cluster keeps the ejection.
  m.update({ c: clusterConfig({ outlierDetection: { ...od, intervalMs: 5000 } }) });
  assert.is.not(m.get('c'), c);
  assert.is(m.get('c')!.endpoints[0], ejected);
  assert.not.ok(ejected.healthy);
  // The replaced cluster's detector ignores late reports from its in-flight requests.
  c.reportOutcome(c.endpoints[1], 503);
  assert.ok(c.endpoints[1]!.healthy);
  m.update({ c: clusterConfig({}) });
  assert.ok(ejected.healthy);
  assert.is(healthOf(ejected).ejections, 0);
  m.stop();
});

test.run();
