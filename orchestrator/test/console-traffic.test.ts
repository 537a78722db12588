// The console's graph (console/traffic-stats.ts): rates, error rates, p99, mTLS and the traffic
// split from the proxies' cumulative reports over a time window, with a fake clock; and the reports
// over real gRPC (TrafficReport on ReportFilterStats), limited to the namespace the token speaks for.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { discoveryDefinition, type EdgeStatsMessage, type FilterStatsReport, type TrafficReportMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { startXdsServer } from '../src/xds/server.ts';
import { MAX_EDGE_SERIES, MAX_NODES, TrafficStats, quantile, serviceId, workloadId } from '../src/console/traffic-stats.ts';

const BOUNDS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];
const REVIEWS = 'reviews.default.svc.cluster.local';
const RATINGS = 'ratings.default.svc.cluster.local';

/** An edge with `requests` calls, all in the bucket of `latencyBucket`. */
function edge(service: string, app: string, version: string, requests: number, opts: { errors?: number; clientErrors?: number; mtls?: boolean; bucket?: number } = {}): EdgeStatsMessage {
  const buckets = new Array<number>(BOUNDS.length + 1).fill(0);
  buckets[opts.bucket ?? 3] = requests;
  return {
    destination_service: service,
    destination_namespace: 'default',
    destination_app: app,
    destination_version: version,
    mtls: opts.mtls ?? true,
    requests: String(requests), // uint64 arrive as strings
    errors: opts.errors ?? 0,
    client_errors: opts.clientErrors ?? 0,
    latency_buckets: buckets,
  };
}

function report(app: string, version: string, edges: EdgeStatsMessage[], namespace = 'default'): TrafficReportMessage {
  return { source_namespace: namespace, source_app: app, source_version: version, latency_bounds_ms: BOUNDS, edges, cert_not_after: '2030-01-01T00:00:00.000Z' };
}

test('the 90/10 split, rps, error rates, p99 and mTLS over the window', () => {
  let now = 1_000_000;
  const stats = new TrafficStats({ now: () => now });
  // productpage has called reviews before the window: 50 calls that must not count.
  stats.record('productpage-1', report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v1', 45), edge(REVIEWS, 'reviews', 'v2', 5)]));
  stats.record('reviews-v2-1', report('reviews', 'v2', [edge(RATINGS, 'ratings', 'v1', 10, { mtls: false })]));
  now += 60_000;
  // 60 s later: 900 more to v1, 100 more to v2; reviews v2 made 100 calls to ratings, 40 denied (403).
  stats.record('productpage-1', report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v1', 945), edge(REVIEWS, 'reviews', 'v2', 105, { errors: 2 })]));
  stats.record('reviews-v2-1', report('reviews', 'v2', [edge(RATINGS, 'ratings', 'v1', 110, { clientErrors: 40, mtls: false })]));
  const g = stats.graph({ windowMs: 60_000 });
  assert.is(g.reporters, 2);
  const find = (from: string, to: string) => g.edges.find((e) => e.from === from && e.to === to)!;
  const pp = workloadId('default', 'productpage', 'v1');
  const caller = find(pp, serviceId(REVIEWS));
  assert.ok(caller, JSON.stringify(g.edges));
  assert.is(caller.requests, 1000);
  assert.ok(Math.abs(caller.rps - 1000 / 60) < 1e-9);
  assert.ok(Math.abs(caller.errorRate - 2 / 1000) < 1e-9);
  assert.is(caller.mtls, 1);
  // Every call in the 10 ms bucket (5..10]: p99 interpolates inside it.
  assert.ok(caller.p99Ms! > 5 && caller.p99Ms! <= 10, String(caller.p99Ms));
  const v1 = find(serviceId(REVIEWS), workloadId('default', 'reviews', 'v1'));
  const v2 = find(serviceId(REVIEWS), workloadId('default', 'reviews', 'v2'));
  assert.is(v1.share, 0.9);
  assert.is(v2.share, 0.1);
  assert.is(v2.errorRate, 0.02);
  // reviews v2 is one node: the version that answered and the caller of ratings.
  const denied = find(workloadId('default', 'reviews', 'v2'), serviceId(RATINGS));
  assert.is(denied.clientErrorRate, 0.4);
  assert.is(denied.errorRate, 0);
  assert.is(denied.mtls, 0);
  assert.ok(g.nodes.some((n) => n.id === serviceId(REVIEWS) && n.kind === 'service'));
  // Per proxy, for the workloads page.
  const out = stats.outbound('productpage-1', 60_000)!;
  assert.is(out.requests, 1000);
  assert.ok(Math.abs(out.rps - 1000 / 60) < 1e-9);
  assert.is(stats.certNotAfter('productpage-1'), '2030-01-01T00:00:00.000Z');
});

test('one report is no rate; a silent proxy leaves the window; a restarted proxy counts from zero', () => {
  let now = 5_000_000;
  const stats = new TrafficStats({ now: () => now });
  stats.record('a', report('traffic', 'v1', [edge('productpage.default.svc.cluster.local', 'productpage', 'v1', 100)]));
  assert.is(stats.graph({ windowMs: 30_000 }).edges.length, 0, 'a single report gives no rate');
  now += 10_000;
  stats.record('a', report('traffic', 'v1', [edge('productpage.default.svc.cluster.local', 'productpage', 'v1', 130)]));
  assert.is(stats.graph({ windowMs: 30_000 }).edges[0]!.requests, 30, 'since the oldest sample when the window reaches further back');
  now += 10_000;
  // The proxy restarted: its counters start again.
  stats.record('a', report('traffic', 'v1', [edge('productpage.default.svc.cluster.local', 'productpage', 'v1', 7)]));
  const after = stats.graph({ windowMs: 15_000 }).edges[0]!;
  assert.is(after.requests, 7);
  now += 120_000;
  assert.is(stats.graph({ windowMs: 60_000 }).reporters, 0, 'nothing reported within the window');
});

test('history: signals between consecutive reports, at most `points`, oldest first', () => {
  let now = 0;
  const stats = new TrafficStats({ now: () => now });
  const host = 'productpage.default.svc.cluster.local';
  // A report every 2 s for 60 s; the rate doubles halfway.
  let total = 0;
  for (let i = 0; i <= 30; i++) {
    stats.record('a', report('traffic', 'v1', [edge(host, 'productpage', 'v1', total)]));
    total += i < 15 ? 10 : 20;
    now += 2_000;
  }
  now -= 2_000;
  const h = stats.history('a', 60_000);
  assert.is(h.length, 30);
  assert.is(h[0]!.rps, 5);
  assert.is(h.at(-1)!.rps, 10);
  assert.ok(h.every((x, i) => i === 0 || Date.parse(x.at) > Date.parse(h[i - 1]!.at)));
  const few = stats.history('a', 60_000, 10);
  assert.is(few.length, 10);
  assert.is(few[0]!.rps, 5, 'each point spans its own reports');
  assert.equal(stats.history('nobody', 60_000), []);
});

test('the namespace filter keeps edges that start or end in it', () => {
  let now = 0;
  const stats = new TrafficStats({ now: () => now });
  const shop = (n: number) => report('web', 'v1', [{ ...edge('api.shop.svc.cluster.local', 'api', 'v1', n), destination_namespace: 'shop' }], 'shop');
  stats.record('web', shop(0));
  stats.record('pp', report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v1', 0)]));
  now += 5_000;
  stats.record('web', shop(10));
  stats.record('pp', report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v1', 10)]));
  assert.equal(stats.graph({ windowMs: 60_000, namespace: 'shop' }).edges.map((e) => e.from), [workloadId('shop', 'web', 'v1'), serviceId('api.shop.svc.cluster.local')]);
  assert.is(stats.graph({ windowMs: 60_000 }).edges.length, 4);
});

test('bounded: at most MAX_NODES proxies, the longest silent goes first', () => {
  let now = 0;
  const stats = new TrafficStats({ now: () => now });
  for (let i = 0; i <= MAX_NODES; i++) {
    now++;
    stats.record(`n${i}`, report('a', 'v1', []));
  }
  assert.is(stats.certNotAfter('n0'), undefined, 'the oldest reporter was dropped');
  assert.ok(stats.certNotAfter(`n${MAX_NODES}`));
});

/**
 * Two productpage proxies report every 2 s (the clock is driven, no sleeps): per report and proxy,
 * 9 calls to reviews v1 (in the (5, 10] ms bucket) and 1 to v2 ((500, 1000] ms) for `hours1`
 * hours, then twice that with half of v2's calls answered 503 for `hours2` hours.
 */
function drive(stats: TrafficStats, clock: { now: number }, from: number, reports: number, perReport: { v1: number; v2: number; v2Errors: number }, totals: Map<string, { v1: number; v2: number; err: number }>): void {
  for (let k = 0; k < reports; k++) {
    clock.now = from + 2_000 * k;
    for (const node of ['productpage-1', 'productpage-2']) {
      const t = totals.get(node) ?? { v1: 0, v2: 0, err: 0 };
      if (totals.has(node) || k > 0) {
        t.v1 += perReport.v1;
        t.v2 += perReport.v2;
        t.err += perReport.v2Errors;
      }
      totals.set(node, t);
      stats.record(node, report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v1', t.v1, { bucket: 3 }), edge(REVIEWS, 'reviews', 'v2', t.v2, { bucket: 9, errors: t.err })]));
    }
  }
}

const HOUR = 3_600_000;
const T0 = 500 * HOUR; // on every bucket boundary

test('1 h and 6 h windows: 1 min buckets sum the reports exactly, with the split, error rate and p99', () => {
  const clock = { now: T0 };
  const stats = new TrafficStats({ now: () => clock.now });
  const totals = new Map<string, { v1: number; v2: number; err: number }>();
  // Two hours at 10 rps for the workload (2 proxies x 10 calls / 2 s), then one at 20 rps.
  drive(stats, clock, T0, 3_601, { v1: 9, v2: 1, v2Errors: 0 }, totals);
  drive(stats, clock, T0 + 2 * HOUR + 2_000, 1_800, { v1: 18, v2: 2, v2Errors: 1 }, totals);
  assert.is(clock.now, T0 + 3 * HOUR);
  const pp = workloadId('default', 'productpage', 'v1');
  const find = (g: ReturnType<TrafficStats['graph']>, from: string, to: string) => g.edges.find((e) => e.from === from && e.to === to)!;

  const hour = stats.graph({ windowMs: HOUR });
  assert.is(hour.resolutionSeconds, 60);
  assert.is(hour.reporters, 2);
  const caller = find(hour, pp, serviceId(REVIEWS));
  // The last hour: 1 800 reports x 2 proxies x 20 calls, over 3 600 s.
  assert.is(caller.requests, 72_000);
  assert.ok(Math.abs(caller.rps - 20) < 1e-9, String(caller.rps));
  assert.ok(Math.abs(caller.errorRate - 0.05) < 1e-9, String(caller.errorRate));
  // rank 0.99 x 72 000 = 71 280: 64 800 calls at (5, 10] ms, then 6 480 of v2's 7 200 into (500, 1000].
  assert.ok(Math.abs(caller.p99Ms! - 950) < 1e-6, String(caller.p99Ms));
  assert.is(find(hour, serviceId(REVIEWS), workloadId('default', 'reviews', 'v2')).share, 0.1);
  assert.is(find(hour, serviceId(REVIEWS), workloadId('default', 'reviews', 'v2')).errorRate, 0.5);

  // Six hours reach before the first report: the rate is over the 3 h since.
  const six = stats.graph({ windowMs: 6 * HOUR });
  assert.is(six.resolutionSeconds, 60);
  const all = find(six, pp, serviceId(REVIEWS));
  assert.is(all.requests, 144_000);
  assert.ok(Math.abs(all.rps - 144_000 / 10_800) < 1e-9, String(all.rps));
  assert.ok(Math.abs(all.errorRate - 3_600 / 144_000) < 1e-9);
  assert.is(find(six, serviceId(REVIEWS), workloadId('default', 'reviews', 'v1')).share, 0.9);

  // 10 minutes: 10 s buckets; 2 minutes: the raw reports. Both at the last hour's rate.
  const ten = stats.graph({ windowMs: 600_000 });
  assert.is(ten.resolutionSeconds, 10);
  assert.is(find(ten, pp, serviceId(REVIEWS)).requests, 12_000);
  assert.ok(Math.abs(find(ten, pp, serviceId(REVIEWS)).rps - 20) < 1e-9);
  const two = stats.graph({ windowMs: 120_000 });
  assert.is(two.resolutionSeconds, 'report');
  assert.is(find(two, pp, serviceId(REVIEWS)).requests, 2_400);

  // A window that does not start on a bucket boundary starts at the next one.
  clock.now += 30_000; // silent for 30 s
  const odd = find(stats.graph({ windowMs: HOUR }), pp, serviceId(REVIEWS));
  // (T0 + 2 h + 1 min, T0 + 3 h]: 59 minutes at 20 rps, over the 59 min to the last report.
  assert.is(odd.requests, 59 * 60 * 20);
  assert.ok(Math.abs(odd.rps - 20) < 1e-9, String(odd.rps));

  // Per proxy (the workloads page): half the workload's calls.
  const out = stats.outbound('productpage-1', HOUR)!;
  assert.is(out.requests, 35_400);
});

test('6 h of buckets: older calls leave the window and never mix with the slots that reuse their place', () => {
  const clock = { now: T0 };
  const stats = new TrafficStats({ now: () => clock.now });
  const totals = new Map<string, { v1: number; v2: number; err: number }>();
  drive(stats, clock, T0, 3_601, { v1: 9, v2: 1, v2Errors: 0 }, totals); // 2 h
  // Silent until T0 + 6 h 30 min, then 10 more minutes: the ring's slots come round again.
  drive(stats, clock, T0 + 6.5 * HOUR, 301, { v1: 18, v2: 2, v2Errors: 0 }, totals);
  assert.is(clock.now, T0 + 6.5 * HOUR + 600_000);
  const e = stats.graph({ windowMs: 6 * HOUR }).edges.find((x) => x.from === workloadId('default', 'productpage', 'v1'))!;
  // (T0 + 40 min, T0 + 2 h]: 2 400 reports x 20 calls; after the silence, 300 reports x 40.
  // The report that ends the silence carries one report's calls too (the counters went on).
  assert.is(e.requests, 2_400 * 20 + 300 * 40 + 40);
  const later = T0 + 13 * HOUR;
  clock.now = later;
  const g = stats.graph({ windowMs: 6 * HOUR });
  assert.is(g.edges.length, 0, 'nothing reported in the last 6 h');
  assert.is(g.reporters, 0);
});

test('history over 1 h and 6 h: a point per minute, then six minutes merged per point', () => {
  const clock = { now: T0 };
  const stats = new TrafficStats({ now: () => clock.now });
  const totals = new Map<string, { v1: number; v2: number; err: number }>();
  drive(stats, clock, T0, 3_601, { v1: 9, v2: 1, v2Errors: 0 }, totals);
  drive(stats, clock, T0 + 2 * HOUR + 2_000, 1_800, { v1: 18, v2: 2, v2Errors: 0 }, totals);
  const hour = stats.history('productpage-1', HOUR);
  assert.is(hour.length, 60);
  assert.ok(hour.every((p) => Math.abs(p.rps - 10) < 1e-9), JSON.stringify(hour.map((p) => p.rps)));
  assert.is(hour.at(-1)!.at, new Date(T0 + 3 * HOUR).toISOString());
  const six = stats.history('productpage-1', 6 * HOUR);
  // 3 h since the proxy's first report, 6 min a point.
  assert.is(six.length, 30);
  assert.equal(six.map((p) => Math.round(p.rps * 1e6) / 1e6), [...new Array(20).fill(5), ...new Array(10).fill(10)]);
  assert.ok(six.every((p, i) => i === 0 || Date.parse(p.at) - Date.parse(six[i - 1]!.at) === 360_000));
});

test('bounded: at most MAX_EDGE_SERIES graph edges keep buckets, the longest silent goes first', () => {
  let now = T0;
  const stats = new TrafficStats({ now: () => now });
  const hosts = (w: number, n: number) => Array.from({ length: 256 }, (_, i) => edge(`s${w}-${i}.default.svc.cluster.local`, `s${i}`, 'v1', n));
  const workloads = Math.ceil(MAX_EDGE_SERIES / 256) + 1;
  for (let w = 0; w < workloads; w++) {
    stats.record(`w${w}`, report(`w${w}`, 'v1', hosts(w, 0)));
    now += 10_000;
    stats.record(`w${w}`, report(`w${w}`, 'v1', hosts(w, 5)));
  }
  assert.is(stats.edgeSeries, MAX_EDGE_SERIES);
  const g = stats.graph({ windowMs: HOUR });
  const callers = new Set(g.edges.filter((e) => e.from.startsWith('default/w')).map((e) => e.from));
  assert.not.ok(callers.has(workloadId('default', 'w0', 'v1')), 'the first workload’s edges were dropped');
  assert.ok(callers.has(workloadId('default', `w${workloads - 1}`, 'v1')));
});

test('quantile: Prometheus-style interpolation, the last finite bound past it, nothing without calls', () => {
  assert.is(quantile(0.99, [10, 20], [0, 0, 0]), undefined);
  assert.is(quantile(0.5, [10, 20], [0, 10, 0]), 15);
  assert.is(quantile(0.99, [10, 20], [0, 0, 5]), 20);
  assert.ok(Math.abs(quantile(0.99, [10, 20], [100, 0, 0])! - 9.9) < 1e-9);
});

test('TrafficReport over gRPC: recorded for the proxy; another namespace than its token’s is dropped; traffic alone is no filter report', async () => {
  const tokens = TokenStore.inMemory();
  const proxyToken = tokens.create('proxy', { namespace: 'default', serviceAccount: 'productpage' });
  const traffic: Array<{ node: string; traffic: TrafficReportMessage }> = [];
  const filterReports: FilterStatsReport[] = [];
  const server = await startXdsServer({ store: new MemoryStore(), tokens, host: '127.0.0.1', port: 0, log: () => {}, onFilterStats: (r) => void filterReports.push(r), onTraffic: (node, t) => void traffic.push({ node, traffic: t }) });
  const { Client } = discoveryDefinition();
  const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const send = (t: TrafficReportMessage) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${proxyToken}`);
      client.ReportFilterStats({ node_id: 'productpage.default~h~1', config_version: 'v1', filters: [], traffic: t }, md, { deadline: Date.now() + 5000 }, (err) => resolve(err));
    });
  try {
    assert.is(await send(report('productpage', 'v1', [edge(REVIEWS, 'reviews', 'v2', 12, { bucket: 14 })])), null);
    assert.is(traffic.length, 1);
    assert.is(traffic[0]!.node, 'productpage.default~h~1');
    const e = traffic[0]!.traffic.edges[0]!;
    assert.equal([e.destination_version, Number(e.requests), e.mtls, Number(e.latency_buckets[14])], ['v2', 12, true, 12]);
    assert.equal(traffic[0]!.traffic.latency_bounds_ms, BOUNDS);
    assert.is(filterReports.length, 0, 'no filters: the rollout controller hears nothing');
    assert.is(await send(report('web', 'v1', [edge(REVIEWS, 'reviews', 'v2', 1)], 'shop')), null);
    assert.is(traffic.length, 1, 'a default-namespace token cannot report for shop');
  } finally {
    client.close();
    await server.close();
  }
});

test.run();
