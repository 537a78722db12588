// TCP in the config model: which ports are proxied as TCP, VirtualService tcp/tls rules (validation
// with field paths, translation per port and per workload), DestinationRule TCP settings, and Gateway
// TCP / TLS PASSTHROUGH servers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../src/translate/gateways.ts';

const client: WorkloadIdentity = { name: 'client', namespace: 'default', labels: { app: 'client' }, serviceAccount: 'client' };
const batch: WorkloadIdentity = { name: 'batch', namespace: 'default', labels: { app: 'batch' }, serviceAccount: 'batch' };
const gatewayWorkload: WorkloadIdentity = { name: 'gw', namespace: 'istio-system', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'gw' };

const se = (name: string, ports: object[]) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'default' },
  spec: { hosts: [`${name}.default.svc.cluster.local`], location: 'MESH_INTERNAL', resolution: 'STATIC', ports, endpoints: [{ address: '127.0.0.1', labels: { version: 'v1' } }, { address: '127.0.0.2', labels: { version: 'v2' } }] },
});
const dr = (host: string, spec: object = {}) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: host, namespace: 'default' },
  spec: { host, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }], ...spec },
});
const vs = (name: string, spec: object) => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: 'default' }, spec });

function checked(objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return docs;
}

function errorsOf(objects: object[]): { path: string; message: string }[] {
  return validateDocuments(fromObjects(objects, 'mesh.yaml')).errors.map((e) => ({ path: e.path, message: e.message }));
}

test('TCP, TLS, HTTPS and opaque ports (by protocol or name) get TCP clusters and a default route; HTTP ports do not', () => {
  const docs = checked([
    se('db', [
      { number: 5432, name: 'tcp-postgres', protocol: 'TCP' },
      { number: 6379, name: 'redis' },
      { number: 27017, name: 'db', protocol: 'MONGO' },
      { number: 443, name: 'https' },
      { number: 8080, name: 'http' },
    ]),
  ]);
  const config = translateProxyConfig(docs, client, { telemetry: false });
  const host = 'db.default.svc.cluster.local';
  assert.is(config.clusters[`outbound|5432||${host}`]!.protocol, 'tcp');
  assert.is(config.clusters[`outbound|6379||${host}`]!.protocol, 'tcp');
  assert.is(config.clusters[`outbound|27017||${host}`]!.protocol, 'tcp');
  assert.is(config.clusters[`outbound|443||${host}`]!.protocol, 'tcp');
  assert.is(config.clusters[`outbound|8080||${host}`]!.protocol, 'http1');
  const ports = config.tcp!.outbound;
  assert.equal(ports.map((p) => p.port), [443, 5432, 6379, 27017]);
  const pg = ports.find((p) => p.port === 5432)!;
  assert.equal(pg.tcpRoutes, [{ name: `${host}/default`, match: [], destinations: [{ cluster: `outbound|5432||${host}`, weight: 100 }] }]);
  // A TLS-carrying port routes by SNI = the service's host by default.
  const tlsPort = ports.find((p) => p.port === 443)!;
  assert.equal(tlsPort.tlsRoutes[0]!.match, [{ sniHosts: [host] }]);
  assert.is(tlsPort.tcpRoutes.length, 0);
});

test('tcp rules: weights to subsets, port and sourceLabels matches (dropped for other workloads), destinationSubnets kept', () => {
  const docs = checked([
    se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]),
    dr('db'),
    vs('db', {
      hosts: ['db'],
      tcp: [
        { match: [{ port: 5432, sourceLabels: { app: 'batch' } }], route: [{ destination: { host: 'db', subset: 'v2' } }] },
        { match: [{ destinationSubnets: ['127.0.0.0/8'] }], route: [{ destination: { host: 'db', subset: 'v1' }, weight: 80 }, { destination: { host: 'db', subset: 'v2' }, weight: 20 }] },
      ],
    }),
  ]);
  const host = 'db.default.svc.cluster.local';
  const forClient = translateProxyConfig(docs, client, { telemetry: false }).tcp!.outbound[0]!;
  assert.equal(
    forClient.tcpRoutes.map((r) => r.name),
    ['db.default/tcp/1', `${host}/default`],
    'the sourceLabels rule is not for this workload',
  );
  assert.equal(forClient.tcpRoutes[0]!.destinations, [
    { cluster: `outbound|5432|v1|${host}`, weight: 80 },
    { cluster: `outbound|5432|v2|${host}`, weight: 20 },
  ]);
  assert.equal(forClient.tcpRoutes[0]!.match, [{ destinationSubnets: ['127.0.0.0/8'] }]);
  const forBatch = translateProxyConfig(docs, batch, { telemetry: false }).tcp!.outbound[0]!;
  assert.equal(forBatch.tcpRoutes[0]!.name, 'db.default/tcp/0');
  assert.equal(forBatch.tcpRoutes[0]!.destinations, [{ cluster: `outbound|5432|v2|${host}`, weight: 100 }]);
});

test('DestinationRule tcp settings: maxConnections, connectTimeout, idleTimeout ("0s" means none)', () => {
  const host = 'db.default.svc.cluster.local';
  const pool = (idle: string) => {
    const docs = checked([se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]), dr('db', { trafficPolicy: { connectionPool: { tcp: { maxConnections: 3, connectTimeout: '250ms', idleTimeout: idle } } } })]);
    return translateProxyConfig(docs, client, { telemetry: false }).clusters[`outbound|5432||${host}`]!.connectionPool;
  };
  assert.equal({ ...pool('30s') }, { maxConnections: 3, connectTimeoutMs: 250, idleTimeoutMs: 30_000, tcpIdleTimeoutMs: 30_000 });
  assert.is(pool('0s').tcpIdleTimeoutMs, 0);
});

test('validation of tcp and tls rules names the field: weights, unknown hosts, SNI outside the hosts, bad subnets, missing sniHosts', () => {
  const errors = errorsOf([
    se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]),
    vs('bad', {
      hosts: ['db', '*.example.com'],
      tcp: [
        { match: [{ destinationSubnets: ['10.0.0.0/33', '10.1.0.0/16'] }], route: [{ destination: { host: 'db' }, weight: 60 }, { destination: { host: 'db' }, weight: 30 }] },
        { route: [{ destination: { host: 'nowhere' } }] },
      ],
      tls: [{ match: [{ sniHosts: ['api.example.com', 'api.other.org'] }], route: [{ destination: { host: 'db' } }] }],
    }),
  ]);
  const at = (path: string) => errors.filter((e) => e.path === path).map((e) => e.message).join(' | ');
  assert.match(at('/spec/tcp/0/route/1/weight'), /add up to 90/);
  assert.match(at('/spec/tcp/1/route/0/destination/host'), /unknown host "nowhere"/);
  assert.match(at('/spec/tcp/0/match/0/destinationSubnets/0'), /prefix length must be 0 to 32/);
  assert.is(at('/spec/tcp/0/match/0/destinationSubnets/1'), '');
  assert.match(at('/spec/tls/0/match/0/sniHosts/1'), /not within the VirtualService's hosts/);
  assert.is(at('/spec/tls/0/match/0/sniHosts/0'), '');
  // The schema: a tls match needs sniHosts; a subnet must look like an address.
  const schema = errorsOf([se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]), vs('bad', { hosts: ['db'], tcp: [{ match: [{ destinationSubnets: ['nonsense'] }], route: [{ destination: { host: 'db' } }] }], tls: [{ match: [{ port: 443 }], route: [{ destination: { host: 'db' } }] }] })]);
  assert.ok(schema.some((e) => e.path === '/spec/tcp/0/match/0/destinationSubnets/0'), JSON.stringify(schema));
  assert.ok(schema.some((e) => e.path.startsWith('/spec/tls/0/match/0') && /sniHosts/.test(e.message)), JSON.stringify(schema));
});

test('Gateway TCP and TLS PASSTHROUGH servers validate and become L4 listeners; PASSTHROUGH refuses certificates', () => {
  const gw = (servers: object[]) => ({ apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'default' }, spec: { selector: { istio: 'ingressgateway' }, servers } });
  const objects = [
    se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]),
    se('web', [{ number: 8443, name: 'tls', protocol: 'TLS' }]),
    gw([
      { port: { number: 31400, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] },
      { port: { number: 443, name: 'tls', protocol: 'TLS' }, hosts: ['web.example.com'], tls: { mode: 'PASSTHROUGH' } },
    ]),
    vs('edge-tcp', { hosts: ['*'], gateways: ['edge'], tcp: [{ match: [{ port: 31400 }], route: [{ destination: { host: 'db' } }] }] }),
    vs('edge-tls', { hosts: ['web.example.com', 'other.example.com'], gateways: ['edge'], tls: [{ match: [{ sniHosts: ['web.example.com', 'other.example.com'] }], route: [{ destination: { host: 'web' } }] }] }),
  ];
  const config = translateProxyConfig(checked(objects), gatewayWorkload, { telemetry: false });
  const listeners = config.gateway!.listeners;
  const tcp = listeners.find((l) => l.port === 31400)!;
  assert.is(tcp.protocol, 'TCP');
  assert.equal(tcp.tcp!.tcpRoutes.map((r) => r.destinations), [[{ cluster: 'outbound|5432||db.default.svc.cluster.local', weight: 100 }]]);
  const tls = listeners.find((l) => l.port === 443)!;
  assert.is(tls.protocol, 'TLS');
  assert.is(tls.tls, undefined, 'no certificate on a passthrough port');
  assert.equal(tls.tcp!.tlsRoutes[0]!.match, [{ sniHosts: ['web.example.com'] }], 'only the SNI names the server exposes');
  assert.is(config.tcp, undefined, 'a gateway has no sidecar TCP listeners');

  const errors = errorsOf([gw([{ port: { number: 443, name: 'tls', protocol: 'TLS' }, hosts: ['x.example.com'], tls: { mode: 'PASSTHROUGH', serverCertificate: '/c.pem' } }, { port: { number: 444, name: 'tls', protocol: 'TLS' }, hosts: ['y.example.com'], tls: { mode: 'SIMPLE' } }])]);
  assert.ok(errors.some((e) => e.path === '/spec/servers/0/tls/serverCertificate' && /does nothing with tls mode PASSTHROUGH/.test(e.message)), JSON.stringify(errors));
  assert.ok(errors.some((e) => e.path === '/spec/servers/1/tls/mode' && /not served/.test(e.message)), JSON.stringify(errors));
});

test('tcp matches naming gateways: a sidecar keeps only what names mesh; an unknown gateway in a match is refused', () => {
  const objects = [
    se('db', [{ number: 5432, name: 'tcp', protocol: 'TCP' }]),
    dr('db'),
    vs('db', { hosts: ['db'], tcp: [{ match: [{ gateways: ['nope'] }], route: [{ destination: { host: 'db', subset: 'v2' } }] }] }),
  ];
  const errors = errorsOf(objects);
  assert.ok(errors.some((e) => e.path === '/spec/tcp/0/match/0/gateways/0' && /unknown gateway "nope"/.test(e.message)), JSON.stringify(errors));
  const ok = checked([objects[0]!, objects[1]!, vs('db', { hosts: ['db'], tcp: [{ match: [{ gateways: ['mesh'], port: 5432 }], route: [{ destination: { host: 'db', subset: 'v2' } }] }] })]);
  const routes = translateProxyConfig(ok, client, { telemetry: false }).tcp!.outbound[0]!.tcpRoutes;
  assert.is(routes[0]!.name, 'db.default/tcp/0');
});

test.run();
