// The mesh's own filters on one proxy, from Istio documents alone: an AuthorizationPolicy enforced by
// filters/policy on the inbound side, a VirtualService fault injected by filters/fault on the
// outbound side, and filters/telemetry on both sides counting every answer, the filters' own included.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

let app: TestServer;
let ratings: TestServer;
let proxy: Proxy;
let dir: string;

function mesh(ratingsPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${ratingsPort} } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  http:
  - match: [{ headers: { end-user: { exact: jason } } }]
    fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }
    route: [{ destination: { host: ratings.default.svc.cluster.local } }]
  - route: [{ destination: { host: ratings.default.svc.cluster.local } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-deletes, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules: [{ to: [{ operation: { methods: [DELETE] } }] }]
`;
}

test.before(async () => {
  app = await startHttp1('reviews-app');
  ratings = await startHttp1('ratings');
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-mesh-filters-'));
  writeFileSync(join(dir, 'mesh.yaml'), mesh(ratings.port));
  const loaded = await loadConfigFile(join(dir, 'mesh.yaml'), { name: 'reviews', namespace: 'default', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'reviews' });
  if (!loaded.ok) throw new Error(loaded.error);
  assert.equal(loaded.config.inboundFilters.map((b) => b.name), ['wasmesh-telemetry', 'wasmesh-policy']);
  assert.equal(loaded.config.outboundFilters.map((b) => b.name), ['wasmesh-telemetry', 'wasmesh-fault']);
  proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, loaded.config);
});

test.after(async () => {
  await proxy.stop(100);
  await Promise.all([app.close(), ratings.close()]);
  rmSync(dir, { recursive: true, force: true });
});

test('inbound: the AuthorizationPolicy denies DELETE with 403 before the app, allows GET', async () => {
  const before = app.received.length;
  const denied = await request(proxy.inboundPort, { method: 'DELETE', path: '/reviews/1', headers: { host: 'reviews' } });
  assert.is(denied.status, 403);
  assert.is(denied.body, 'RBAC: access denied');
  assert.is(app.received.length, before);
  const allowed = await request(proxy.inboundPort, { path: '/reviews/1', headers: { host: 'reviews' } });
  assert.is(allowed.status, 200);
  assert.is(JSON.parse(allowed.body).upstream, 'reviews-app');
});

test("outbound: the VirtualService fault aborts jason's calls with 500, others reach ratings", async () => {
  const before = ratings.received.length;
  const aborted = await request(proxy.outboundPort, { path: '/ratings/1', headers: { host: 'ratings:9080', 'end-user': 'jason' } });
  assert.is(aborted.status, 500);
  assert.is(aborted.body, 'fault filter abort');
  assert.is(ratings.received.length, before);
  const ok = await request(proxy.outboundPort, { path: '/ratings/1', headers: { host: 'ratings:9080' } });
  assert.is(ok.status, 200);
  assert.ok(JSON.parse(ok.body).headers.traceparent, 'telemetry started a trace context');
});

test('telemetry counts every answer on both sides, the filters own 403 and 500 included', async () => {
  const text = (await request(proxy.adminPort, { path: '/stats/prometheus' })).body;
  const series = (reporter: string, code: string) =>
    text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes(`reporter="${reporter}"`) && l.includes(`response_code="${code}"`));
  assert.ok(series('destination', '403'), 'inbound 403 counted');
  assert.ok(series('destination', '200'), 'inbound 200 counted');
  assert.ok(series('source', '500'), 'outbound fault abort counted');
  assert.ok(series('source', '200'), 'outbound 200 counted');
  assert.match(series('destination', '403')!, /destination_workload="reviews"/);
  assert.match(text, /policy_authz_decisions_total\{[^}]*decision="deny"/);
  assert.match(text, /fault_injected_total\{[^}]*kind="abort"/);
});

test.run();
