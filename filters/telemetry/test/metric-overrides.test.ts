// Telemetry metrics overrides on running sidecars (the telemetry filter unchanged): a single metric
// disabled per reporter, labels removed, upserted with a literal and with CEL expressions that read the
// request, read back from /stats/prometheus with the project's Prometheus parser. A changed Telemetry
// applies to the running VMs without restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseProm, parsePromHistogramSamples, samples, type PromFamily } from './support/telemetry.ts';
import { loadConfigFile } from '../../../proxy-host/src/config/file-source.ts';
import { Proxy } from '../../../proxy-host/src/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';

let app: TestServer;
let client: Proxy;
let server: Proxy;
let dir: string;

const clientWorkload = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const serverWorkload = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };
const HOST = 'reviews.default.svc.cluster.local:9080';

const OVERRIDES = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  metrics:
  - overrides:
    - match: { metric: REQUEST_COUNT }
      tagOverrides:
        request_protocol: { operation: REMOVE }
        request_host: { value: request.host }
    - match: { metric: REQUEST_SIZE }
      disabled: true
    - match: { metric: RESPONSE_SIZE, mode: CLIENT }
      disabled: true
    - match: { mode: SERVER }
      tagOverrides:
        tier: { value: "'backend'" }
        user: { value: "has(request.headers['x-user']) ? request.headers['x-user'] : 'anon'" }
`;

function mesh(reviewsPort: number, telemetry: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${reviewsPort} } }]
---
${telemetry}`;
}

async function load(workload: typeof clientWorkload, text: string) {
  writeFileSync(join(dir, `${workload.name}.yaml`), text);
  const loaded = await loadConfigFile(join(dir, `${workload.name}.yaml`), workload);
  if (!loaded.ok) throw new Error(loaded.error);
  return loaded.config;
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-metric-overrides-'));
  app = await startHttp1('reviews-app');
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, await load(serverWorkload, mesh(1, OVERRIDES)));
  client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: 1, accessLog: 'off' }, await load(clientWorkload, mesh(server.inboundPort, OVERRIDES)));
});

test.after(async () => {
  await client?.stop(100);
  await server?.stop(100);
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const scrape = async (p: Proxy) => (await fetch(`http://127.0.0.1:${p.adminPort}/stats/prometheus`)).text();
const names = (families: PromFamily[]) => new Set(families.map((f) => f.name));

test('overrides: a metric disabled per reporter, labels removed and upserted (literal and expressions read per request)', async () => {
  for (const user of ['jason', 'jason', undefined]) {
    const r = await request(client.outboundPort, { path: '/reviews/1', headers: { host: HOST, ...(user ? { 'x-user': user } : {}) } });
    assert.is(r.status, 200);
  }
  const clientText = await scrape(client);
  const c = parseProm(clientText);
  const cNames = names(parsePromHistogramSamples(clientText));
  const sourceCount = samples(c, 'istio_requests_total', { reporter: 'source', destination_app: 'reviews' });
  assert.is(sourceCount.length, 1, clientText.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
  assert.is(sourceCount[0]!.value, '3');
  assert.is(sourceCount[0]!.labels!.request_host, HOST, 'request_host upserted from request.host');
  assert.is(sourceCount[0]!.labels!.request_protocol, undefined, 'request_protocol removed');
  assert.is(sourceCount[0]!.labels!.tier, undefined, 'the SERVER override does not touch the source reporter');
  assert.not.ok(cNames.has('istio_request_bytes_count'), 'REQUEST_SIZE disabled');
  assert.not.ok(cNames.has('istio_response_bytes_count'), 'RESPONSE_SIZE disabled for CLIENT');
  const dur = samples(parsePromHistogramSamples(clientText), 'istio_request_duration_milliseconds_count', { reporter: 'source' });
  assert.is(dur.length, 1);
  assert.is(dur[0]!.labels!.request_protocol, 'http', 'other metrics keep their labels');
  assert.is(dur[0]!.labels!.request_host, undefined);

  const serverText = await scrape(server);
  const s = parseProm(serverText);
  const dest = samples(s, 'istio_requests_total', { reporter: 'destination' });
  const byUser = Object.fromEntries(dest.map((m) => [m.labels!.user, m.value]));
  assert.equal(byUser, { jason: '2', anon: '1' }, serverText.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
  assert.ok(dest.every((m) => m.labels!.tier === 'backend' && m.labels!.request_host === HOST && m.labels!.request_protocol === undefined));
  const sNames = names(parsePromHistogramSamples(serverText));
  assert.not.ok(sNames.has('istio_request_bytes_count'), 'REQUEST_SIZE disabled on both reporters');
  const resp = samples(parsePromHistogramSamples(serverText), 'istio_response_bytes_count', { reporter: 'destination' });
  assert.is(resp.length, 2, 'RESPONSE_SIZE kept for SERVER, one series per user');
  assert.ok(resp.every((m) => m.labels!.tier === 'backend'));
});

test('a changed Telemetry applies to the running filter: overrides gone, the standard labels are back', async () => {
  await server.applyConfig(await load(serverWorkload, mesh(1, '')));
  await client.applyConfig(await load(clientWorkload, mesh(server.inboundPort, '')));
  await request(client.outboundPort, { path: '/reviews/2', headers: { host: HOST, 'x-user': 'jason' } });
  const serverText = await scrape(server);
  const dest = samples(parseProm(serverText), 'istio_requests_total', { reporter: 'destination', request_protocol: 'http' });
  assert.is(dest.length, 1);
  assert.is(dest[0]!.value, '1');
  assert.is(dest[0]!.labels!.user, undefined);
  assert.ok(names(parsePromHistogramSamples(serverText)).has('istio_request_bytes_count'), 'REQUEST_SIZE recorded again');
});

test.run();
