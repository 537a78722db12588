// TLS passthrough through a gateway, with the real translator: a Gateway TLS server (tls.mode
// PASSTHROUGH) routes connections by the ClientHello's SNI with VirtualService tls rules to two
// backends that terminate TLS themselves (real TLS end to end: the client verifies each backend's
// certificate, and the gateway's config holds no certificate or key). Backend b sits behind a STRICT
// sidecar, so its connections also cross the gateway's mTLS into the mesh. A Gateway TCP server
// routes with tcp rules. A sidecar routes a TLS service port by SNI too.
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateways.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';
import { createRequire } from 'node:module';
import { freePort } from './support/servers.ts';

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => { name: string; metrics: { labels?: Record<string, string>; value?: string }[] }[];

const gatewayId: WorkloadIdentity = { name: 'istio-ingressgateway', namespace: 'istio-system', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-ingressgateway' };
const backendB: WorkloadIdentity = { name: 'b', namespace: 'default', labels: { app: 'b' }, serviceAccount: 'b' };
const client: WorkloadIdentity = { name: 'client', namespace: 'default', labels: { app: 'client' }, serviceAccount: 'client' };

let ca: TestCa;
const servers: net.Server[] = [];
let gateway: Proxy;
let sidecarB: Proxy;
let sidecarClient: Proxy;
const ports = { tls: 0, tcp: 0, a: 0, b: 0, plain: 0, svcA: 0 };
/** SNI names each TLS backend saw (the gateway must not have changed them). */
const seen: Record<string, string[]> = { a: [], b: [] };

async function tlsBackend(name: 'a' | 'b', host: string): Promise<number> {
  const cert = await ca.issueServer([host]);
  const server = tls.createServer({ key: cert.keyPem, cert: cert.certPem }, (s) => {
    seen[name]!.push((s as tls.TLSSocket & { servername?: string }).servername ?? '');
    s.on('error', () => {});
    s.on('data', (c: Buffer) => s.end(`${name} says: ${c.toString()}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

function mesh(): object[] {
  return [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'a', namespace: 'default' },
      spec: { hosts: ['a.example.com'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: ports.svcA, name: 'tls', protocol: 'TLS' }], endpoints: [{ address: '127.0.0.1', ports: { tls: ports.a } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'b', namespace: 'default' },
      spec: { hosts: ['b.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 8443, name: 'tls', protocol: 'TLS' }], workloadSelector: { labels: { app: 'b' } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'b-sidecar', namespace: 'default' },
      spec: { address: '127.0.0.1', ports: { tls: sidecarB.tcpInboundPorts()[0]! }, labels: { app: 'b', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'b' },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'plain', namespace: 'default' },
      spec: { hosts: ['plain.default.svc.cluster.local'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 9000, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: '127.0.0.1', ports: { tcp: ports.plain } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'default' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          { port: { number: ports.tls, name: 'tls', protocol: 'TLS' }, hosts: ['a.example.com', 'b.example.com'], tls: { mode: 'PASSTHROUGH' } },
          { port: { number: ports.tcp, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'by-sni', namespace: 'default' },
      spec: {
        hosts: ['a.example.com', 'b.example.com'],
        gateways: ['edge'],
        tls: [
          { match: [{ sniHosts: ['a.example.com'] }], route: [{ destination: { host: 'a.example.com', port: { number: ports.svcA } } }] },
          { match: [{ sniHosts: ['b.example.com'] }], route: [{ destination: { host: 'b', port: { number: 8443 } } }] },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'tcp-in', namespace: 'default' },
      spec: { hosts: ['*'], gateways: ['edge'], tcp: [{ match: [{ port: ports.tcp }], route: [{ destination: { host: 'plain' } }] }] },
    },
  ];
}

function configFor(workload: WorkloadIdentity, objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

/** A TLS client verifying the server against the test CA; resolves with what it read and the server certificate's names. */
function tlsCall(port: number, servername: string, message: string): Promise<{ text: string; subject: string }> {
  return new Promise((resolve, reject) => {
    let subject: string | undefined;
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: [ca.rootPem] }, () => {
      subject = s.getPeerCertificate().subjectaltname ?? '';
      s.write(message);
    });
    let text = '';
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.on('data', (c: Buffer) => (text += c));
    const end = (): void => (subject === undefined ? reject(new Error('closed before the TLS handshake finished')) : resolve({ text, subject }));
    s.on('end', end);
    s.on('close', end);
    s.on('error', reject);
  });
}

function readAll(s: net.Socket, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(text), ms);
    s.on('data', (c: Buffer) => (text += c));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    s.on('error', () => {});
  });
}

test.before(async () => {
  ca = await createTestCa();
  for (const k of ['tls', 'tcp', 'svcA'] as const) ports[k] = await freePort();
  ports.a = await tlsBackend('a', 'a.example.com');
  ports.b = await tlsBackend('b', 'b.example.com');
  const plain = net.createServer((s) => s.end('plain tcp'));
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  servers.push(plain);
  ports.plain = (plain.address() as net.AddressInfo).port;
  sidecarB = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'b')), tcpInbound: [{ port: 0, appPort: ports.b }] },
    translateProxyConfig([], backendB, { telemetry: false }),
  );
  await sidecarB.applyConfig(configFor(backendB, mesh()));
  gateway = await Proxy.start(
    { role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('istio-system', 'istio-ingressgateway')) },
    configFor(gatewayId, mesh()),
  );
  sidecarClient = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', tcpOutbound: [{ port: ports.svcA, listenPort: 0 }] },
    configFor(client, mesh()),
  );
});

test.after(async () => {
  await gateway?.stop(100);
  await sidecarB?.stop(100);
  await sidecarClient?.stop(100);
  for (const s of servers) s.close();
});

test('the gateway config holds no certificate or key for its PASSTHROUGH port', () => {
  const listener = gateway.config.gateway!.listeners.find((l) => l.port === ports.tls)!;
  assert.is(listener.protocol, 'TLS');
  assert.is(listener.tls, undefined);
  assert.is(JSON.stringify(gateway.config).includes('PRIVATE KEY'), false);
});

test('SNI a.example.com reaches backend a, b.example.com backend b (through its STRICT sidecar): TLS end to end', async () => {
  const a = await tlsCall(gateway.gatewayPorts().get(ports.tls)!, 'a.example.com', 'hi');
  assert.is(a.text, 'a says: hi');
  assert.match(a.subject, /DNS:a\.example\.com/, 'the client verified a certificate only backend a holds');
  const b = await tlsCall(gateway.gatewayPorts().get(ports.tls)!, 'b.example.com', 'hello');
  assert.is(b.text, 'b says: hello');
  assert.match(b.subject, /DNS:b\.example\.com/);
  assert.equal(seen.a, ['a.example.com']);
  assert.equal(seen.b, ['b.example.com'], 'the client ClientHello reached b unchanged');
});

test('an SNI no route names, and a plaintext client, are closed by the gateway', async () => {
  const port = gateway.gatewayPorts().get(ports.tls)!;
  const err = await tlsCall(port, 'c.example.com', 'hi').catch((e: Error) => e);
  assert.instance(err, Error);
  const s = net.connect({ host: '127.0.0.1', port }, () => s.write('GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n'));
  assert.is(await readAll(s), '');
});

test('a Gateway TCP server routes by tcp rules', async () => {
  const s = net.connect({ host: '127.0.0.1', port: gateway.gatewayPorts().get(ports.tcp)! });
  assert.is(await readAll(s), 'plain tcp');
});

test('a sidecar routes a TLS service port by SNI without terminating it', async () => {
  const local = sidecarClient.tcpOutboundPorts().get(ports.svcA)!;
  const a = await tlsCall(local, 'a.example.com', 'via sidecar');
  assert.is(a.text, 'a says: via sidecar');
  const err = await tlsCall(local, 'other.example.com', 'x').catch((e: Error) => e);
  assert.instance(err, Error, 'a name the service does not have is not routed');
});

test('the gateway reports reporter="source" TCP metrics per SNI route destination', () => {
  const opened = parsePrometheus(gateway.renderPrometheus())
    .filter((f) => f.name === 'istio_tcp_connections_opened_total')
    .flatMap((f) => f.metrics.map((m) => m.labels ?? {}));
  assert.ok(opened.length > 0 && opened.every((l) => l.reporter === 'source'));
  assert.ok(opened.some((l) => l.destination_service === 'a.example.com' && l.response_flags === '-'));
  // b is behind a sidecar: mTLS from the gateway, with b's identity checked and exchanged.
  assert.ok(opened.some((l) => l.destination_service === 'b.default.svc.cluster.local' && l.destination_principal === 'spiffe://cluster.local/ns/default/sa/b' && l.destination_workload === 'b'));
  assert.ok(opened.some((l) => l.response_flags === 'NR'), 'the unrouted connections are counted with NR');
});

test('AuthorizationPolicy on the gateway\'s TLS and TCP listeners: connection.sni and ports decide when a connection is accepted', async () => {
  const authz = (name: string, spec: object) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'istio-system' }, spec: { selector: { matchLabels: { istio: 'ingressgateway' } }, ...spec } });
  const tlsPort = gateway.gatewayPorts().get(ports.tls)!;
  const tcpPort = gateway.gatewayPorts().get(ports.tcp)!;
  const seenB = seen.b.length;
  await gateway.applyConfig(configFor(gatewayId, [...mesh(), authz('no-b', { action: 'DENY', rules: [{ when: [{ key: 'connection.sni', values: ['b.example.com'] }] }] })]));
  assert.is((await tlsCall(tlsPort, 'a.example.com', 'hi')).text, 'a says: hi');
  assert.instance(await tlsCall(tlsPort, 'b.example.com', 'hi').catch((e: Error) => e), Error, 'the SNI the policy names is closed');
  assert.is(seen.b.length, seenB, 'backend b never saw the denied connection');
  assert.is((await readAll(net.connect({ host: '127.0.0.1', port: tcpPort }))), 'plain tcp', 'the TCP port has no such SNI');
  // ALLOW only the TLS port: the TCP port's connections are closed before they are routed.
  await gateway.applyConfig(configFor(gatewayId, [...mesh(), authz('tls-only', { rules: [{ to: [{ operation: { ports: [String(ports.tls)] } }] }] })]));
  assert.is((await tlsCall(tlsPort, 'a.example.com', 'hi')).text, 'a says: hi');
  assert.is(await readAll(net.connect({ host: '127.0.0.1', port: tcpPort })), '');
  const denied = parsePrometheus(gateway.renderPrometheus())
    .filter((f) => f.name === 'policy_authz_decisions_total')
    .flatMap((f) => f.metrics)
    .filter((m) => m.labels?.decision === 'deny' && m.labels?.policy === 'none');
  assert.is(denied.reduce((n, m) => n + Number(m.value ?? 0), 0), 1);
  await gateway.applyConfig(configFor(gatewayId, mesh()));
  assert.is(await readAll(net.connect({ host: '127.0.0.1', port: tcpPort })), 'plain tcp');
});

test.run();
