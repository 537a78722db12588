// An egress gateway, Istio's "Egress Gateways" task shape, end to end with the real translator: a
// ServiceEntry for an external host (edition.cnn.com, resolved to a plain HTTP server on loopback), a
// Gateway selecting the egress gateway proxy, a DestinationRule with subset cnn, and ONE VirtualService
// bound to [istio-egressgateway, mesh] whose first http route (match gateways: [mesh]) sends the
// sidecar's requests to the egress gateway and whose second (match gateways: [istio-egressgateway])
// sends the gateway's on to the external host. Then the same with ISTIO_MUTUAL between the sidecar
// and the gateway (Istio's "Egress gateway for HTTP traffic" with mutual TLS).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateways.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { freePort, request, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const egressId: WorkloadIdentity = { name: 'istio-egressgateway', namespace: 'istio-system', labels: { istio: 'egressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-egressgateway' };
const sleepId: WorkloadIdentity = { name: 'sleep', namespace: 'default', labels: { app: 'sleep' }, serviceAccount: 'sleep' };
const EGRESS = 'istio-egressgateway.istio-system.svc.cluster.local';
const EXTERNAL = 'edition.cnn.com';

let ca: TestCa;
let external: TestServer;
let sidecar: Proxy;
let gateway: Proxy;
const ports = { http: 0, https: 0 };

/** The task's resources. `mutual`: the Gateway serves HTTPS with ISTIO_MUTUAL and the DestinationRule originates it. */
function mesh(mutual: boolean): object[] {
  const gwPort = mutual ? ports.https : ports.http;
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'cnn', namespace: 'default' },
      spec: { hosts: [EXTERNAL], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http-port', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1', ports: { 'http-port': external.port } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'istio-egressgateway', namespace: 'istio-system' },
      spec: {
        hosts: [EGRESS],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [
          { number: ports.http, name: 'http', protocol: 'HTTP' },
          { number: ports.https, name: 'https', protocol: 'HTTPS' },
        ],
        endpoints: [{ address: '127.0.0.1', labels: { istio: 'egressgateway' } }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'istio-egressgateway', namespace: 'default' },
      spec: {
        selector: { istio: 'egressgateway' },
        servers: [
          mutual
            ? { port: { number: ports.https, name: 'https', protocol: 'HTTPS' }, hosts: [EXTERNAL], tls: { mode: 'ISTIO_MUTUAL' } }
            : { port: { number: ports.http, name: 'http', protocol: 'HTTP' }, hosts: [EXTERNAL] },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'egressgateway-for-cnn', namespace: 'default' },
      spec: {
        host: EGRESS,
        subsets: [
          {
            name: 'cnn',
            ...(mutual ? { trafficPolicy: { portLevelSettings: [{ port: { number: ports.https }, tls: { mode: 'ISTIO_MUTUAL', sni: EXTERNAL } }] } } : {}),
          },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'direct-cnn-through-egress-gateway', namespace: 'default' },
      spec: {
        hosts: [EXTERNAL],
        gateways: ['istio-egressgateway', 'mesh'],
        http: [
          // As in Istio's task, each match also names the port: 80 on the sidecars (the app's
          // http://edition.cnn.com), the Gateway server's port on the gateway.
          { match: [{ gateways: ['mesh'], port: 80 }], route: [{ destination: { host: EGRESS, subset: 'cnn', port: { number: gwPort } } }] },
          { match: [{ gateways: ['istio-egressgateway'], port: gwPort }], route: [{ destination: { host: EXTERNAL, port: { number: 80 } }, weight: 100 }] },
        ],
      },
    },
  ];
}

function configFor(workload: WorkloadIdentity, objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: true });
}

/** The value of the first series of `metric` whose labels contain every `labels` pair, else 0. */
function counter(text: string, metric: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Waits (bounded) until the proxy's counter reaches `want`; the telemetry filter counts at stream end. */
async function counterReaches(proxy: Proxy, metric: string, labels: Record<string, string>, want: number): Promise<number> {
  let seen = 0;
  for (let i = 0; i < 40; i++) {
    seen = counter(proxy.renderPrometheus(), metric, labels);
    if (seen >= want) return seen;
    await new Promise((r) => setTimeout(r, 50));
  }
  return seen;
}

test.before(async () => {
  ca = await createTestCa();
  external = await startHttp1('edition.cnn.com');
  ports.http = await freePort();
  ports.https = await freePort();
  sidecar = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'sleep')) },
    configFor(sleepId, mesh(false)),
  );
  gateway = await Proxy.start(
    { role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('istio-system', 'istio-egressgateway')) },
    configFor(egressId, mesh(false)),
  );
});

test.after(async () => {
  await gateway?.stop(100);
  await sidecar?.stop(100);
  await external?.close();
});

test('the sidecar\'s request for the external host goes out through the egress gateway (one VirtualService, match gateways)', async () => {
  const before = external.received.length;
  const res = await request(sidecar.outboundPort, { path: '/politics', headers: { host: EXTERNAL } });
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'edition.cnn.com');
  assert.is(external.received.length, before + 1);
  assert.is(external.received.at(-1)!.url, '/politics');
  // Both proxies counted it: the sidecar as sleep's call, the gateway as its own call to the host.
  // (Their telemetry names the request's host as destination_service, so both say edition.cnn.com.)
  const bySidecar = await counterReaches(sidecar, 'istio_requests_total', { reporter: 'source', source_workload: 'sleep', destination_service: EXTERNAL, response_code: '200' }, 1);
  assert.is(bySidecar, 1);
  const byGateway = await counterReaches(gateway, 'istio_requests_total', { reporter: 'source', source_workload: 'istio-egressgateway', destination_service: EXTERNAL, response_code: '200' }, 1);
  assert.is(byGateway, 1, gateway.renderPrometheus().split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
});

test('match port: a request for another port of the host matches neither route', async () => {
  const before = external.received.length;
  const res = await request(sidecar.outboundPort, { path: '/politics', headers: { host: `${EXTERNAL}:8080` } });
  assert.is(res.status, 404, res.body);
  assert.is(external.received.length, before);
});

test('with the gateway stopped routing the host, the sidecar\'s request fails: it had no other way out', async () => {
  const objects = mesh(false);
  const vs = objects[4] as { spec: { http: unknown[] } };
  vs.spec.http = vs.spec.http.slice(0, 1); // only the sidecars' route is left
  await gateway.applyConfig(configFor(egressId, objects));
  const before = external.received.length;
  const res = await request(sidecar.outboundPort, { path: '/politics', headers: { host: EXTERNAL } });
  assert.is(res.status, 404, res.body);
  assert.is(external.received.length, before, 'nothing reached the external host');
  await gateway.applyConfig(configFor(egressId, mesh(false)));
  assert.is((await request(sidecar.outboundPort, { path: '/politics', headers: { host: EXTERNAL } })).status, 200);
});

test('ISTIO_MUTUAL: the sidecar reaches the gateway over mTLS (the gateway port takes nothing else) and the request gets out', async () => {
  await gateway.applyConfig(configFor(egressId, mesh(true)));
  await sidecar.applyConfig(configFor(sleepId, mesh(true)));
  const before = external.received.length;
  const res = await request(sidecar.outboundPort, { path: '/world', headers: { host: EXTERNAL } });
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'edition.cnn.com');
  assert.is(external.received.length, before + 1);
  // The gateway's port requires a client certificate of the mesh: plaintext and TLS without one fail,
  // so the 200 above came over the sidecar's mTLS.
  const plain = await request(ports.https, { path: '/world', headers: { host: EXTERNAL } }).catch((e: Error) => e);
  assert.instance(plain, Error);
  const anonymous = await new Promise<string>((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: ports.https, servername: EXTERNAL, ca: ca.rootPem, checkServerIdentity: () => undefined }, () => {
      socket.write(`GET /world HTTP/1.1\r\nhost: ${EXTERNAL}\r\nconnection: close\r\n\r\n`);
    });
    let data = '';
    socket.on('data', (c: Buffer) => (data += c));
    socket.on('error', (e) => resolve(`error: ${e.message}`));
    socket.on('close', () => resolve(data === '' ? 'closed without an answer' : data));
    socket.setTimeout(3000, () => socket.destroy());
  });
  assert.not.match(anonymous, /^HTTP\/1\.1 200/, 'a client without a mesh certificate got through');
  assert.is(external.received.length, before + 1, 'neither reached the external host');
  const viaGateway = await counterReaches(gateway, 'istio_requests_total', { reporter: 'source', source_workload: 'istio-egressgateway', destination_service: EXTERNAL, response_code: '200' }, 3);
  assert.is(viaGateway, 3, 'the gateway counted every request it sent out');
});

test('TLS origination at the egress gateway (Istio\'s "Egress Gateways with TLS Origination"): the app speaks HTTP, the gateway speaks verified TLS to the external host', async () => {
  // The external host's HTTPS port: a real TLS server with a certificate for edition.cnn.com from a CA
  // the DestinationRule names (caCertificates, a file), so the gateway must verify it to get through.
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-egress-tls-'));
  const serverCa = await createTestCa('external root');
  const cert = await serverCa.issueServer([EXTERNAL]);
  const caFile = join(dir, 'external-ca.pem');
  writeFileSync(caFile, serverCa.rootPem, { mode: 0o600 });
  const seen: Array<{ url: string; encrypted: boolean; servername: string | false | null }> = [];
  const secure = https.createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    const socket = req.socket as tls.TLSSocket;
    seen.push({ url: req.url ?? '', encrypted: socket.encrypted === true, servername: socket.servername });
    res.end(JSON.stringify({ upstream: 'edition.cnn.com over https' }));
  });
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  const httpsPort = (secure.address() as net.AddressInfo).port;
  const originate = (caCertificates: string) => {
    const objects = mesh(false) as Array<{ kind: string; spec: Record<string, any> }>;
    const se = objects[0]!;
    se.spec.ports.push({ number: 443, name: 'https-port', protocol: 'HTTPS' });
    se.spec.endpoints[0].ports['https-port'] = httpsPort;
    // The gateway's route goes to port 443 of the host; a DestinationRule originates TLS there.
    const vs = objects[4]!;
    vs.spec.http[1].route = [{ destination: { host: EXTERNAL, port: { number: 443 } }, weight: 100 }];
    objects.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'originate-tls-for-edition-cnn-com', namespace: 'default' },
      spec: { host: EXTERNAL, trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, portLevelSettings: [{ port: { number: 443 }, tls: { mode: 'SIMPLE', caCertificates, sni: EXTERNAL } }] } },
    } as never);
    return objects;
  };
  const side = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'sleep')) }, configFor(sleepId, originate(caFile)));
  const gw = await Proxy.start(
    { role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('istio-system', 'istio-egressgateway')) },
    configFor(egressId, originate(caFile)),
  ).catch(async (e) => {
    await side.stop(100);
    throw e;
  });
  try {
    const plainBefore = external.received.length;
    const res = await request(side.outboundPort, { path: '/politics', headers: { host: EXTERNAL } });
    assert.is(res.status, 200, res.body);
    assert.is(JSON.parse(res.body).upstream, 'edition.cnn.com over https');
    assert.equal(seen, [{ url: '/politics', encrypted: true, servername: EXTERNAL }], 'the gateway sent it over TLS, naming the host (sni)');
    assert.is(external.received.length, plainBefore, 'nothing went to the plaintext port');
    // A root that did not sign the external host's certificate: the gateway refuses to go on (503), and
    // never falls back to plaintext.
    const wrongCa = join(dir, 'wrong-ca.pem');
    writeFileSync(wrongCa, ca.rootPem, { mode: 0o600 });
    await gw.applyConfig(configFor(egressId, originate(wrongCa)));
    const refused = await request(side.outboundPort, { path: '/world', headers: { host: EXTERNAL } });
    assert.is(refused.status, 503, refused.body);
    assert.is(seen.length, 1, 'the unverified server got no request');
    assert.is(external.received.length, plainBefore, 'nor did the plaintext port');
  } finally {
    await gw.stop(100);
    await side.stop(100);
    secure.closeAllConnections();
    await new Promise<void>((r) => secure.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
