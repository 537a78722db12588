// Gateway: validation (field paths), VirtualService `gateways` binding (mesh, names, namespace/
// prefixes), and translation into a gateway proxy's listeners and chain.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../src/translate/gateways.ts';

const gatewayWorkload: WorkloadIdentity = { name: 'istio-ingressgateway', namespace: 'istio-system', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-ingressgateway' };
const sidecar: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };

const service = (name: string, namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace },
  spec: { hosts: [`${name}.${namespace}.svc.cluster.local`], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1' }] },
});
const gateway = (name: string, servers: object[], namespace = 'default', selector: object = { istio: 'ingressgateway' }) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace },
  spec: { selector, servers },
});
const vs = (name: string, hosts: string[], gateways: string[] | undefined, dest: string, namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace },
  spec: { hosts, ...(gateways ? { gateways } : {}), http: [{ route: [{ destination: { host: dest } }] }] },
});
const http = (port: number, hosts: string[], extra: object = {}) => ({ port: { number: port, name: 'http', protocol: 'HTTP' }, hosts, ...extra });

function errorsOf(objects: object[]): { path: string; message: string }[] {
  return validateDocuments(fromObjects(objects, 'mesh.yaml')).errors.map((e) => ({ path: e.path, message: e.message }));
}

function checked(objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  return docs;
}

test('a valid Gateway and a bound VirtualService validate', () => {
  checked([service('productpage'), gateway('bookinfo', [http(8080, ['*'])]), vs('bookinfo', ['*'], ['bookinfo'], 'productpage')]);
});

test('validation names the field: HTTPS without tls, unsupported protocols and modes, old TLS, credentialName, port conflicts', () => {
  const errors = errorsOf([
    gateway('gw', [
      { port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['a.example.com'] },
      { port: { number: 31400, name: 'tls', protocol: 'TLS' }, hosts: ['*'] },
      { port: { number: 8443, name: 'https', protocol: 'HTTPS' }, hosts: ['b.example.com'], tls: { mode: 'AUTO_PASSTHROUGH' } },
      { port: { number: 9443, name: 'https', protocol: 'HTTPS' }, hosts: ['c.example.com'], tls: { mode: 'SIMPLE', credentialName: 'c-cert', minProtocolVersion: 'TLSV1_1' } },
      { port: { number: 443, name: 'http', protocol: 'HTTP' }, hosts: ['d.example.com'] },
      { port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['e.example.com'], tls: { mode: 'SIMPLE', serverCertificate: '/c.pem', privateKey: '/k.pem' } },
    ]),
  ]);
  const at = (path: string) => errors.filter((e) => e.path === path).map((e) => e.message).join(' | ');
  assert.match(at('/spec/servers/0/tls'), /HTTPS server needs tls/);
  assert.match(at('/spec/servers/1/tls/mode'), /TLS server needs tls.mode: PASSTHROUGH/);
  assert.match(at('/spec/servers/2/tls/mode'), /AUTO_PASSTHROUGH is not served/);
  assert.match(at('/spec/servers/3/tls/credentialName'), /unknown credential "c-cert": no TLSSecret is named "c-cert"/);
  assert.match(at('/spec/servers/3/tls/minProtocolVersion'), /TLSV1_1 is refused/);
  assert.match(at('/spec/servers/4/port/protocol'), /already HTTPS in servers\[0\]/);
  assert.match(at('/spec/servers/5/tls/mode'), /needs protocol HTTPS/);
});

test('the schema refuses bad hosts and ports with their paths', () => {
  const errors = errorsOf([gateway('gw', [{ port: { number: 70000, protocol: 'HTTP' }, hosts: ['a/b/c'] }])]);
  assert.ok(errors.some((e) => e.path === '/spec/servers/0/port/number'), JSON.stringify(errors));
  assert.ok(errors.some((e) => e.path === '/spec/servers/0/hosts/0'), JSON.stringify(errors));
});

test('a VirtualService naming an unknown gateway is refused, with the Gateways there are', () => {
  const errors = errorsOf([service('productpage'), gateway('bookinfo', [http(8080, ['*'])]), vs('x', ['*'], ['mesh', 'bookinfo', 'other/bookinfo'], 'productpage')]);
  assert.equal(errors.map((e) => e.path), ['/spec/gateways/2']);
  assert.match(errors[0]!.message, /unknown gateway "other\/bookinfo".*Gateways: default\/bookinfo/);
});

test('binding: no gateways = mesh only; gateways without mesh = gateway only; with mesh = both', () => {
  const docs = checked([
    service('productpage'),
    service('reviews'),
    service('details'),
    gateway('bookinfo', [http(8080, ['*'])]),
    vs('mesh-only', ['reviews'], undefined, 'reviews'),
    vs('gw-only', ['bookinfo.example.com'], ['bookinfo'], 'productpage'),
    vs('both', ['details.default.svc.cluster.local'], ['mesh', 'default/bookinfo'], 'details'),
  ]);
  const side = translateProxyConfig(docs, sidecar, { telemetry: false });
  assert.is(side.gateway, undefined, 'a sidecar has no gateway listeners');
  const sideHosts = side.virtualHosts.flatMap((h) => h.routes.map((r) => r.name));
  assert.ok(sideHosts.includes('mesh-only.default/0'));
  assert.ok(sideHosts.includes('both.default/0'));
  assert.not.ok(sideHosts.includes('gw-only.default/0'), 'a VirtualService bound to gateways only stays off sidecars');

  const gw = translateProxyConfig(docs, gatewayWorkload, { telemetry: false });
  assert.is(gw.gateway?.listeners.length, 1);
  const listener = gw.gateway!.listeners[0]!;
  assert.is(listener.port, 8080);
  assert.is(listener.protocol, 'HTTP');
  assert.equal(listener.virtualHosts.map((h) => [h.domains[0], h.routes[0]!.name]), [
    ['bookinfo.example.com', 'gw-only.default/0'],
    ['details.default.svc.cluster.local', 'both.default/0'],
  ]);
  const cluster = (listener.virtualHosts[0]!.routes[0]!.action as unknown as { destinations: { cluster: string }[] }).destinations[0]!.cluster;
  assert.is(cluster, 'outbound|9080||productpage.default.svc.cluster.local');
  assert.ok(gw.clusters[cluster], 'the route\'s cluster is in the gateway\'s cluster table');
});

const egressGatewayWorkload: WorkloadIdentity = { name: 'istio-egressgateway', namespace: 'istio-system', labels: { istio: 'egressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-egressgateway' };

/** Istio's egress task: ONE VirtualService, its first http route for the sidecars, its second for the egress gateway. */
function egressMesh(extraRule: object[] = []): object[] {
  return [
    service('istio-egressgateway', 'istio-system'),
    { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'cnn', namespace: 'default' }, spec: { hosts: ['edition.cnn.com'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http-port', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1' }] } },
    gateway('istio-egressgateway', [http(8080, ['edition.cnn.com'])], 'default', { istio: 'egressgateway' }),
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'direct-cnn-through-egress-gateway', namespace: 'default' },
      spec: {
        hosts: ['edition.cnn.com'],
        gateways: ['istio-egressgateway', 'mesh'],
        http: [
          { match: [{ gateways: ['mesh'] }], route: [{ destination: { host: 'istio-egressgateway.istio-system.svc.cluster.local', port: { number: 9080 } } }] },
          { match: [{ gateways: ['istio-egressgateway'] }], route: [{ destination: { host: 'edition.cnn.com', port: { number: 80 } } }] },
          ...extraRule,
        ],
      },
    },
  ];
}

const routesFor = (hosts: readonly { domains: readonly string[]; routes: readonly { name: string; action: unknown }[] }[], domain: string) =>
  hosts.find((h) => h.domains.includes(domain))?.routes.map((r) => [r.name, (r.action as { destinations: { cluster: string }[] }).destinations[0]!.cluster]);

test('http match gateways: one VirtualService sends the sidecars to the egress gateway and the gateway to the external host', () => {
  const docs = checked(egressMesh());
  const side = translateProxyConfig(docs, sidecar, { telemetry: false });
  assert.equal(routesFor(side.virtualHosts, 'edition.cnn.com'), [['direct-cnn-through-egress-gateway.default/0', 'outbound|9080||istio-egressgateway.istio-system.svc.cluster.local']]);
  const gw = translateProxyConfig(docs, egressGatewayWorkload, { telemetry: false });
  assert.equal(routesFor(gw.gateway!.listeners[0]!.virtualHosts, 'edition.cnn.com'), [['direct-cnn-through-egress-gateway.default/1', 'outbound|80||edition.cnn.com']]);
  // The ingress gateway (another selector) gets nothing of it.
  assert.is(translateProxyConfig(docs, gatewayWorkload, { telemetry: false }).gateway?.listeners.length ?? 0, 0);
});

test('http match gateways override the VirtualService\'s: a match may reach a gateway the VirtualService does not name, and a rule without match follows the top level', () => {
  const objects = egressMesh([{ route: [{ destination: { host: 'edition.cnn.com' } }] }]);
  const v = objects[3] as { spec: { gateways: string[] } };
  v.spec.gateways = ['mesh']; // bound to the sidecars only; the second rule's match still reaches the egress gateway
  const docs = checked(objects);
  const gw = translateProxyConfig(docs, egressGatewayWorkload, { telemetry: false });
  assert.equal(routesFor(gw.gateway!.listeners[0]!.virtualHosts, 'edition.cnn.com')?.map(([n]) => n), ['direct-cnn-through-egress-gateway.default/1']);
  const side = translateProxyConfig(docs, sidecar, { telemetry: false });
  assert.equal(routesFor(side.virtualHosts, 'edition.cnn.com')?.map(([n]) => n), ['direct-cnn-through-egress-gateway.default/0', 'direct-cnn-through-egress-gateway.default/2']);
  // A VirtualService bound to the gateway alone still reaches the sidecars through a match naming mesh.
  v.spec.gateways = ['istio-egressgateway'];
  const side2 = translateProxyConfig(checked(objects), sidecar, { telemetry: false });
  assert.equal(routesFor(side2.virtualHosts, 'edition.cnn.com')?.map(([n]) => n), ['direct-cnn-through-egress-gateway.default/0']);
});

test('http match gateways are validated with their field path; a fault on a rule whose matches are for gateways only is refused', () => {
  const objects = egressMesh([{ match: [{ gateways: ['nope'] }], route: [{ destination: { host: 'edition.cnn.com' } }] }, { match: [{ gateways: ['istio-egressgateway'] }], fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: [{ destination: { host: 'edition.cnn.com' } }] }]);
  const errors = errorsOf(objects);
  assert.equal(errors.map((e) => e.path), ['/spec/http/2/match/0/gateways/0', '/spec/http/3/fault'], JSON.stringify(errors));
  assert.match(errors[0]!.message, /unknown gateway "nope"/);
  assert.match(errors[1]!.message, /sidecars only/);
});

test('server hosts: namespace/ prefixes restrict which VirtualServices bind; ./ is the Gateway\'s namespace', () => {
  const docs = checked([
    service('productpage'),
    service('ratings', 'team'),
    gateway('edge', [http(8080, ['default/shop.example.com', '*/ratings.example.org', './admin.example.com'])], 'istio-system'),
    vs('shop', ['shop.example.com'], ['istio-system/edge'], 'productpage'),
    vs('ratings', ['ratings.example.com'], ['istio-system/edge'], 'ratings', 'team'),
    vs('admin', ['admin.example.com'], ['istio-system/edge'], 'productpage'),
  ]);
  const gw = translateProxyConfig(docs, gatewayWorkload, { telemetry: false });
  assert.equal(gw.gateway!.listeners[0]!.virtualHosts.map((h) => h.domains[0]), ['shop.example.com'], 'team/ratings and default/admin are not allowed by the server hosts');
});

test('HTTPS: certificates by SNI, TLS 1.2 at least; httpsRedirect on the HTTP port redirects to the HTTPS port', () => {
  const docs = checked([
    service('productpage'),
    gateway('bookinfo', [
      http(8080, ['bookinfo.example.com'], { tls: { httpsRedirect: true } }),
      { port: { number: 8443, name: 'https', protocol: 'HTTPS' }, hosts: ['bookinfo.example.com'], tls: { mode: 'SIMPLE', serverCertificate: '/etc/gw/cert.pem', privateKey: '/etc/gw/key.pem' } },
      { port: { number: 8443, name: 'https-2', protocol: 'HTTPS' }, hosts: ['*.shop.example.com'], tls: { mode: 'SIMPLE', serverCertificate: '/etc/gw/shop.pem', privateKey: '/etc/gw/shop-key.pem', minProtocolVersion: 'TLSV1_3' } },
    ]),
    vs('bookinfo', ['*'], ['bookinfo'], 'productpage'),
  ]);
  const [plain, secure] = translateProxyConfig(docs, gatewayWorkload, { telemetry: false }).gateway!.listeners;
  assert.equal(plain!.virtualHosts[0]!.routes[0]!.action, { kind: 'redirect', scheme: 'https', port: 8443, status: 301 });
  assert.is(secure!.protocol, 'HTTPS');
  assert.equal(secure!.tls, [
    { hosts: ['bookinfo.example.com'], certificate: '/etc/gw/cert.pem', privateKey: '/etc/gw/key.pem', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' },
    { hosts: ['*.shop.example.com'], certificate: '/etc/gw/shop.pem', privateKey: '/etc/gw/shop-key.pem', minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' },
  ]);
  assert.equal(secure!.virtualHosts.map((h) => h.domains[0]), ['*.shop.example.com', 'bookinfo.example.com']);
});

test('overlapping SNI hosts on one HTTPS port are refused', () => {
  const tls = { mode: 'SIMPLE', serverCertificate: '/c.pem', privateKey: '/k.pem' };
  const errors = errorsOf([gateway('gw', [
    { port: { number: 443, name: 'a', protocol: 'HTTPS' }, hosts: ['*.example.com'], tls },
    { port: { number: 443, name: 'b', protocol: 'HTTPS' }, hosts: ['shop.example.com'], tls },
  ])]);
  assert.equal(errors.map((e) => e.path), ['/spec/servers/1/hosts']);
});

test('selector: only gateway workloads whose labels match get the listeners', () => {
  const docs = checked([service('productpage'), gateway('internal', [http(9090, ['*'])], 'default', { istio: 'internalgateway' }), vs('i', ['*'], ['internal'], 'productpage')]);
  assert.equal(translateProxyConfig(docs, gatewayWorkload, { telemetry: false }).gateway, { listeners: [] });
  const internal = { ...gatewayWorkload, labels: { ...gatewayWorkload.labels, istio: 'internalgateway' } };
  assert.is(translateProxyConfig(docs, internal, { telemetry: false }).gateway!.listeners[0]!.port, 9090);
});

test('the gateway chain: WasmPlugins of every match mode selecting it, telemetry first, all on the client side', () => {
  const plugin = (name: string, mode: string) => ({
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'WasmPlugin',
    metadata: { name, namespace: 'istio-system' },
    spec: { selector: { matchLabels: { istio: 'ingressgateway' } }, url: `file:///filters/${name}.wasm`, match: [{ mode }] },
  });
  const docs = checked([service('productpage'), gateway('bookinfo', [http(8080, ['*'])], 'istio-system'), plugin('client', 'CLIENT'), plugin('server', 'SERVER')]);
  const gw = translateProxyConfig(docs, gatewayWorkload, { telemetry: true });
  assert.equal(gw.inboundFilters, []);
  assert.equal(gw.outboundFilters.map((b) => b.name), ['wasmesh-telemetry', 'client', 'server']);
});

test.run();
