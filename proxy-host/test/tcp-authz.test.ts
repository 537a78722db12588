// AuthorizationPolicy on TCP traffic, end to end on loopback with the real translator and the real
// policy filter (filters/policy as a network filter): two client sidecars (default/client and
// other/intruder) reach a server sidecar's two inbound TCP listeners (apps "echo" and "admin") over
// STRICT mTLS. Policies are decided when a connection is accepted: a denied one is closed before a
// byte reaches the app (which never sees a connection), and counted. Istio's "Authorization for TCP
// traffic" task: HTTP-only fields make an ALLOW rule never match, and are dropped from a DENY rule.
import { createRequire } from 'node:module';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';
import { freePort } from './support/servers.ts';

interface PromSample {
  labels?: Record<string, string>;
  value?: string;
}
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => { name: string; metrics: PromSample[] }[];

const client: WorkloadIdentity = { name: 'client', namespace: 'default', labels: { app: 'client' }, serviceAccount: 'client' };
const intruder: WorkloadIdentity = { name: 'intruder', namespace: 'other', labels: { app: 'intruder' }, serviceAccount: 'intruder' };
const server: WorkloadIdentity = { name: 'tcp-echo', namespace: 'default', labels: { app: 'tcp-echo' }, serviceAccount: 'tcp-echo' };
const ECHO = 'tcp-echo.default.svc.cluster.local';
const ADMIN = 'tcp-admin.default.svc.cluster.local';

let ca: TestCa;
const servers: net.Server[] = [];
let serverProxy: Proxy;
let clientProxy: Proxy;
let intruderProxy: Proxy;
const svc = { echo: 0, admin: 0 };
const apps = { echo: 0, admin: 0 };
/** Connections each app accepted. */
const accepted = { echo: 0, admin: 0 };

/** An app answering "hello <bytes>" to every chunk (Istio's tcp-echo). */
async function echoApp(name: keyof typeof accepted): Promise<number> {
  const s = net.createServer((socket) => {
    accepted[name]++;
    socket.on('error', () => socket.destroy());
    socket.on('data', (c: Buffer) => socket.write(`hello ${c.toString()}`));
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

function mesh(policies: object[] = []): object[] {
  const se = (name: string, host: string, port: number) => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: 'default' },
    spec: { hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: port, name: `tcp-${name}`, protocol: 'TCP' }], workloadSelector: { labels: { app: name } } },
  });
  const we = (name: string, port: number) => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name: `${name}-sidecar`, namespace: 'default' },
    spec: { address: '127.0.0.1', ports: { [`tcp-${name}`]: port }, labels: { app: name, 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'tcp-echo' },
  });
  return [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
    se('tcp-echo', ECHO, svc.echo),
    we('tcp-echo', serverProxy.tcpInboundPorts()[0]!),
    se('tcp-admin', ADMIN, svc.admin),
    we('tcp-admin', serverProxy.tcpInboundPorts()[1]!),
    ...policies,
  ];
}

const policy = (name: string, spec: object) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'tcp-echo' } }, ...spec },
});

function configFor(workload: WorkloadIdentity, objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

/** Applies policies to the server sidecar. */
async function apply(...policies: object[]): Promise<void> {
  await serverProxy.applyConfig(configFor(server, mesh(policies)));
}

/**
 * One connection from `from`'s outbound listener for `port`: sends "port <n>" and reads until the
 * connection closes (bounded). `answer` is what came back ('' when the connection was refused).
 */
async function call(from: Proxy, port: number): Promise<{ answer: string; closed: boolean }> {
  const local = from.tcpOutboundPorts().get(port)!;
  const socket = net.connect({ host: '127.0.0.1', port: local });
  socket.on('error', () => {});
  return new Promise((resolve) => {
    let answer = '';
    let closed = false;
    const timer = setTimeout(() => finish(), 3000);
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, closed });
    };
    socket.on('connect', () => socket.write(`port ${port}`));
    socket.on('data', (c: Buffer) => {
      answer += c.toString();
      // An allowed connection: the echo came back; end it ourselves.
      if (answer.startsWith('hello')) finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

const allowed = async (from: Proxy, port: number): Promise<boolean> => {
  const r = await call(from, port);
  if (r.answer === `hello port ${port}`) return true;
  assert.is(r.answer, '', 'a refused connection got no bytes');
  assert.ok(r.closed, 'a refused connection is closed');
  return false;
};

function total(proxy: Proxy, name: string, want: Record<string, string>): number {
  return parsePrometheus(proxy.renderPrometheus())
    .filter((f) => f.name === name)
    .flatMap((f) => f.metrics)
    .filter((m) => Object.entries(want).every(([k, v]) => m.labels?.[k] === v))
    .reduce((sum, m) => sum + Number(m.value ?? 0), 0);
}

test.before(async () => {
  ca = await createTestCa();
  apps.echo = await echoApp('echo');
  apps.admin = await echoApp('admin');
  svc.echo = await freePort();
  svc.admin = await freePort();
  serverProxy = await Proxy.start(
    {
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
      accessLog: 'off',
      identity: new MemoryIdentity(await ca.issue('default', 'tcp-echo')),
      tcpInbound: [
        { port: 0, appPort: apps.echo },
        { port: 0, appPort: apps.admin },
      ],
    },
    translateProxyConfig([], server, { telemetry: false }),
  );
  await apply();
  const outbound = [svc.echo, svc.admin].map((port) => ({ port, listenPort: 0 }));
  clientProxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'client')), tcpOutbound: outbound }, configFor(client, mesh()));
  intruderProxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('other', 'intruder')), tcpOutbound: outbound }, configFor(intruder, mesh()));
});

test.after(async () => {
  await intruderProxy?.stop(100);
  await clientProxy?.stop(100);
  await serverProxy?.stop(100);
  for (const s of servers) s.close();
});

test('without a policy both clients get through (over mTLS)', async () => {
  assert.ok(await allowed(clientProxy, svc.echo));
  assert.ok(await allowed(intruderProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.admin));
});

test('ALLOW by source principal and port: others are closed before the app sees a connection, and counted', async () => {
  await apply(policy('tcp-policy', { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/client'] } }], to: [{ operation: { ports: [String(apps.echo)] } }] }] }));
  const before = { ...accepted };
  const deniedBefore = total(serverProxy, 'policy_authz_decisions_total', { decision: 'deny', policy: 'none' });
  const closedBefore = total(serverProxy, 'istio_tcp_connections_closed_total', { source_principal: 'spiffe://cluster.local/ns/other/sa/intruder' });
  assert.ok(await allowed(clientProxy, svc.echo), 'the named principal on the named port');
  assert.not.ok(await allowed(clientProxy, svc.admin), 'another port: no ALLOW rule matches');
  assert.not.ok(await allowed(intruderProxy, svc.echo), 'another principal');
  assert.equal(accepted, { echo: before.echo + 1, admin: before.admin }, 'the apps saw only the allowed connection');
  assert.is(total(serverProxy, 'policy_authz_decisions_total', { decision: 'deny', policy: 'none' }), deniedBefore + 2);
  assert.ok(total(serverProxy, 'policy_authz_decisions_total', { decision: 'allow', policy: 'default.tcp-policy' }) >= 1);
  // Istio's TCP metrics count the refused connection (opened and closed, nothing sent to the app).
  assert.is(total(serverProxy, 'istio_tcp_connections_closed_total', { source_principal: 'spiffe://cluster.local/ns/other/sa/intruder' }), closedBefore + 1);
});

test('DENY by source namespace; DENY wins over an ALLOW that matches', async () => {
  await apply(
    policy('allow-all', { action: 'ALLOW', rules: [{}] }),
    policy('deny-other', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }),
  );
  assert.ok(await allowed(clientProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.admin));
  const before = total(serverProxy, 'policy_authz_decisions_total', { decision: 'deny', policy: 'default.deny-other' });
  assert.not.ok(await allowed(intruderProxy, svc.echo));
  assert.is(total(serverProxy, 'policy_authz_decisions_total', { decision: 'deny', policy: 'default.deny-other' }), before + 1);
});

test('ipBlocks and when (source.ip, source.principal, destination.port) on connections', async () => {
  await apply(policy('loopback-only', { action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] }));
  assert.not.ok(await allowed(clientProxy, svc.echo), 'the client sidecar connects from 127.0.0.1, outside 10.0.0.0/8');
  await apply(policy('loopback-only', { action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['127.0.0.0/8'] } }] }] }));
  assert.ok(await allowed(clientProxy, svc.echo));
  await apply(
    policy('conditions', {
      action: 'DENY',
      rules: [{ when: [{ key: 'source.principal', values: ['cluster.local/ns/other/*'] }, { key: 'destination.port', values: [String(apps.admin)] }, { key: 'source.ip', values: ['127.0.0.1'] }] }],
    }),
  );
  assert.not.ok(await allowed(intruderProxy, svc.admin), 'every condition holds');
  assert.ok(await allowed(intruderProxy, svc.echo), 'another port');
  assert.ok(await allowed(clientProxy, svc.admin), 'another principal');
});

test('HTTP-only fields (Istio\'s TCP task): an ALLOW rule using one never matches', async () => {
  // ALLOW methods GET on the echo port: the rule is ignored for TCP, so nothing is allowed.
  await apply(policy('tcp-policy', { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'], ports: [String(apps.echo)] } }] }] }));
  assert.not.ok(await allowed(clientProxy, svc.echo));
  assert.not.ok(await allowed(clientProxy, svc.admin));
  // Another rule of the same policy without HTTP-only fields still allows.
  await apply(policy('tcp-policy', { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }, { to: [{ operation: { ports: [String(apps.admin)] } }] }] }));
  assert.not.ok(await allowed(clientProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.admin));
});

test('HTTP-only fields (Istio\'s TCP task): a DENY rule loses them and denies more', async () => {
  // DENY methods GET: without the method, the rule denies every connection.
  await apply(policy('tcp-policy', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }));
  assert.not.ok(await allowed(clientProxy, svc.echo));
  assert.not.ok(await allowed(clientProxy, svc.admin));
  // DENY methods GET on the echo port: the port still narrows it.
  await apply(policy('tcp-policy', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['GET'], ports: [String(apps.echo)] } }] }] }));
  assert.not.ok(await allowed(clientProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.admin));
  // A request.headers condition is dropped the same way: the principal condition still decides.
  await apply(policy('tcp-policy', { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/other/sa/intruder'] } }], when: [{ key: 'request.headers[x-user]', values: ['mallory'] }] }] }));
  assert.not.ok(await allowed(intruderProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.echo));
});

test('AUDIT: the connection goes through and the match is counted', async () => {
  await apply(policy('audit-other', { action: 'AUDIT', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }));
  const before = total(serverProxy, 'policy_authz_decisions_total', { decision: 'audit', policy: 'default.audit-other' });
  assert.ok(await allowed(intruderProxy, svc.echo));
  assert.ok(await allowed(clientProxy, svc.echo));
  assert.is(total(serverProxy, 'policy_authz_decisions_total', { decision: 'audit', policy: 'default.audit-other' }), before + 1);
});

test('removing the policies opens the ports again', async () => {
  await apply();
  assert.ok(await allowed(intruderProxy, svc.admin));
});

test.run();
