// TCP proxying end to end on loopback, with the real translator: a client sidecar's outbound TCP
// listener, a server sidecar's inbound TCP listener under STRICT mTLS (real certificates from a test
// CA), real apps. Echo, a length-prefixed request/response protocol with a half-close, weighted tcp
// routes, the idle timeout, maxConnections, and Istio's TCP metrics read back through a Prometheus
// text parser.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
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
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => { name: string; type: string; metrics: PromSample[] }[];

const client: WorkloadIdentity = { name: 'client', namespace: 'default', labels: { app: 'client', version: 'v1' }, serviceAccount: 'client' };
const echo: WorkloadIdentity = { name: 'echo', namespace: 'default', labels: { app: 'echo', version: 'v1' }, serviceAccount: 'echo' };
const ECHO = 'echo.default.svc.cluster.local';
const DB = 'db.default.svc.cluster.local';
const SPLIT = 'split.default.svc.cluster.local';
const IDLE = 'idle.default.svc.cluster.local';
const LIMITED = 'limited.default.svc.cluster.local';
const GREETER = 'greeter.default.svc.cluster.local';
const STALL = 'stall.default.svc.cluster.local';

let ca: TestCa;
let otherCa: TestCa;
const servers: net.Server[] = [];
let clientProxy: Proxy;
let echoProxy: Proxy;
/** Service ports (free port numbers, so the outbound listeners can use them too) and apps' ports. */
const svc = { echo: 0, db: 0, split: 0, idle: 0, limited: 0, greeter: 0, stall: 0 };
const apps = { echo: 0, db: 0, v1: 0, v2: 0, idle: 0, limited: 0, greeter: 0, stall: 0 };
/** What the greeter app received after its own FIN. */
const greeterGot: string[] = [];

async function serve(handler: (socket: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    handler(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

const se = (name: string, host: string, port: number, app: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'default' },
  spec: { hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: port, name: `tcp-${name}`, protocol: 'TCP' }], workloadSelector: { labels: { app } } },
});
const we = (name: string, app: string, portName: string, port: number, labels: Record<string, string> = {}, serviceAccount = app) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace: 'default' },
  spec: { address: '127.0.0.1', ports: { [portName]: port }, labels: { app, ...labels }, serviceAccount },
});

function mesh(): object[] {
  return [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
    se('echo', ECHO, svc.echo, 'echo'),
    // The echo and db apps are behind the echo sidecar (mTLS); the others are plain endpoints.
    we('echo-sidecar', 'echo', 'tcp-echo', echoProxy.tcpInboundPorts()[0]!, { version: 'v1', 'security.istio.io/tlsMode': 'istio' }),
    se('db', DB, svc.db, 'db'),
    // The echo sidecar also fronts the db app (its second inbound TCP listener): its identity is echo's.
    we('db-sidecar', 'db', 'tcp-db', echoProxy.tcpInboundPorts()[1]!, { version: 'v1', 'security.istio.io/tlsMode': 'istio' }, 'echo'),
    se('greeter', GREETER, svc.greeter, 'greeter'),
    we('greeter-sidecar', 'greeter', 'tcp-greeter', echoProxy.tcpInboundPorts()[2]!, { 'security.istio.io/tlsMode': 'istio' }, 'echo'),
    se('split', SPLIT, svc.split, 'split'),
    we('split-v1', 'split', 'tcp-split', apps.v1, { version: 'v1' }),
    we('split-v2', 'split', 'tcp-split', apps.v2, { version: 'v2' }),
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'split', namespace: 'default' },
      spec: { host: 'split', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'split', namespace: 'default' },
      spec: { hosts: ['split'], tcp: [{ match: [{ port: svc.split }], route: [{ destination: { host: 'split', subset: 'v1' }, weight: 30 }, { destination: { host: 'split', subset: 'v2' }, weight: 70 }] }] },
    },
    se('idle', IDLE, svc.idle, 'idle'),
    we('idle-app', 'idle', 'tcp-idle', apps.idle),
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'idle', namespace: 'default' }, spec: { host: 'idle', trafficPolicy: { connectionPool: { tcp: { idleTimeout: '400ms' } } } } },
    // An endpoint that accepts TCP but never answers the mTLS handshake: connectTimeout fails it.
    se('stall', STALL, svc.stall, 'stall'),
    we('stall-app', 'stall', 'tcp-stall', apps.stall, { 'security.istio.io/tlsMode': 'istio' }),
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'stall', namespace: 'default' }, spec: { host: 'stall', trafficPolicy: { connectionPool: { tcp: { connectTimeout: '300ms' } } } } },
    se('limited', LIMITED, svc.limited, 'limited'),
    we('limited-app', 'limited', 'tcp-limited', apps.limited),
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'limited', namespace: 'default' }, spec: { host: 'limited', trafficPolicy: { connectionPool: { tcp: { maxConnections: 2, connectTimeout: '2s' } } } } },
  ];
}

function configFor(workload: WorkloadIdentity, objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

/** A connection to the client sidecar's outbound listener for a service port. */
function dial(servicePort: number): Promise<net.Socket> {
  const port = clientProxy.tcpOutboundPorts().get(servicePort)!;
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything a socket receives until it ends or closes (bounded by `ms`). */
function readAll(s: net.Socket | tls.TLSSocket, ms = 5000): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    const timer = setTimeout(() => done(), ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), ended });
    };
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      ended = true;
      done();
    });
    s.on('close', done);
    s.on('error', () => {});
    s.resume();
  });
}

/** Reads exactly `n` bytes (or fails after `ms`). */
function readExactly(s: net.Socket, n: number, ms = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`read ${buf.length} of ${n} bytes in ${ms} ms`)), ms);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= n) finish();
    };
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.pause();
      if (err) reject(err);
      else {
        if (buf.length > n) s.unshift(buf.subarray(n));
        resolve(buf.subarray(0, n));
      }
    };
    s.on('data', onData);
    s.resume();
  });
}

function frame(payload: string): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

async function readFrame(s: net.Socket): Promise<string> {
  const len = (await readExactly(s, 4)).readUInt32BE(0);
  return (await readExactly(s, len)).toString();
}

function samples(text: string, name: string, want: Record<string, string>): PromSample[] {
  return parsePrometheus(text)
    .filter((f) => f.name === name)
    .flatMap((f) => f.metrics)
    .filter((m) => Object.entries(want).every(([k, v]) => m.labels?.[k] === v));
}

function total(text: string, name: string, want: Record<string, string>): number {
  return samples(text, name, want).reduce((sum, m) => sum + Number(m.value ?? 0), 0);
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

test.before(async () => {
  ca = await createTestCa();
  otherCa = await createTestCa('another root');
  // echo: answers every byte; on the client's FIN it sends "bye" and then its own FIN.
  apps.echo = await serve((s) => {
    s.on('data', (c: Buffer) => s.write(c));
    s.on('end', () => s.end('bye'));
  });
  // db: length-prefixed frames; each request gets "ok:<n>:<payload>"; after the client's FIN it sends
  // a summary frame, then ends (a half-close the client must still read after its own FIN).
  apps.db = await serve((s) => {
    let buf = Buffer.alloc(0);
    let n = 0;
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const payload = buf.subarray(4, 4 + len).toString();
        buf = buf.subarray(4 + len);
        s.write(frame(`ok:${++n}:${payload}`));
      }
    });
    s.on('end', () => setTimeout(() => s.end(frame(`summary:${n} requests`)), 50));
  });
  // greeter: says hello and half-closes at once, then keeps reading until the client ends.
  apps.greeter = await serve((s) => {
    let got = '';
    s.end('hello, then FIN');
    s.on('data', (c: Buffer) => (got += c));
    s.on('end', () => greeterGot.push(got));
  });
  apps.stall = await serve(() => {});
  apps.v1 = await serve((s) => s.end('v1'));
  apps.v2 = await serve((s) => s.end('v2'));
  apps.idle = await serve((s) => s.on('data', (c: Buffer) => s.write(c)));
  apps.limited = await serve((s) => {
    s.on('data', (c: Buffer) => s.write(c));
    s.on('end', () => s.end());
  });
  for (const k of Object.keys(svc) as (keyof typeof svc)[]) svc[k] = await freePort();

  echoProxy = await Proxy.start(
    {
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
      accessLog: 'off',
      identity: new MemoryIdentity(await ca.issue('default', 'echo')),
      tcpInbound: [
        { port: 0, appPort: apps.echo },
        { port: 0, appPort: apps.db },
        { port: 0, appPort: apps.greeter },
      ],
    },
    translateProxyConfig([], echo, { telemetry: false }),
  );
  await echoProxy.applyConfig(configFor(echo, mesh()));
  clientProxy = await Proxy.start(
    {
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
      accessLog: 'off',
      identity: new MemoryIdentity(await ca.issue('default', 'client')),
      tcpOutbound: Object.values(svc).map((port) => ({ port, listenPort: 0 })),
    },
    configFor(client, mesh()),
  );
});

test.after(async () => {
  await clientProxy?.stop(100);
  await echoProxy?.stop(100);
  for (const s of servers) s.close();
});

test('echo through two sidecars over mTLS; the client half-closes and still reads the answer after its FIN', async () => {
  const s = await dial(svc.echo);
  s.write('hello ');
  s.write('mesh');
  assert.is((await readExactly(s, 10)).toString(), 'hello mesh');
  s.end();
  const rest = await readAll(s);
  assert.is(rest.data.toString(), 'bye');
  assert.ok(rest.ended, 'the server FIN reached the client');
});

test('4 MiB each way through both sidecars arrive intact (backpressure, no loss, no reordering)', async () => {
  const s = await dial(svc.echo);
  const payload = randomBytes(4 * 1024 * 1024);
  const received: Buffer[] = [];
  let n = 0;
  const all = new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      received.push(c);
      n += c.length;
      if (n >= payload.length + 3) resolve();
    });
    s.on('end', () => resolve());
  });
  s.end(payload);
  await Promise.race([all, new Promise((r) => setTimeout(r, 15_000))]);
  const got = Buffer.concat(received);
  assert.is(got.length, payload.length + 3);
  assert.ok(got.subarray(0, payload.length).equals(payload), 'the bytes came back in order');
  assert.is(got.subarray(payload.length).toString(), 'bye');
  s.destroy();
});

test('STRICT: the server sidecar refuses a plaintext TCP client and a certificate from another CA; the mesh certificate works', async () => {
  const inbound = echoProxy.tcpInboundPorts()[0]!;
  const plain = net.connect({ host: '127.0.0.1', port: inbound });
  plain.on('connect', () => plain.write('hello'));
  const got = await readAll(plain);
  assert.is(got.data.toString(), '', 'nothing of the app reached a plaintext client');

  const foreign = await otherCa.issue('default', 'client');
  const bad = tls.connect({ host: '127.0.0.1', port: inbound, key: foreign.keyPem, cert: foreign.certChainPem, ca: [ca.rootPem], ALPNProtocols: ['istio'], checkServerIdentity: () => undefined });
  bad.on('secureConnect', () => bad.write('hello'));
  assert.is((await readAll(bad)).data.toString(), '', 'a foreign certificate is refused');

  // A client holding a certificate of the mesh's CA (what the client sidecar does) gets through.
  const mine = await ca.issue('default', 'tester');
  const good = tls.connect({ host: '127.0.0.1', port: inbound, key: mine.keyPem, cert: mine.certChainPem, ca: [ca.rootPem], ALPNProtocols: ['istio'], checkServerIdentity: () => undefined });
  await new Promise((resolve) => good.once('secureConnect', resolve));
  const peer = good.getPeerCertificate();
  assert.match(peer.subjectaltname ?? '', /spiffe:\/\/cluster\.local\/ns\/default\/sa\/echo/, 'the server sidecar presents its SPIFFE identity');
  good.end('ping');
  assert.is((await readAll(good)).data.toString(), 'pingbye');
});

test('a length-prefixed request/response protocol: several round trips, then a half-close answered with a summary', async () => {
  const s = await dial(svc.db);
  for (let i = 1; i <= 5; i++) {
    s.write(frame(`select ${i}`));
    assert.is(await readFrame(s), `ok:${i}:select ${i}`);
  }
  // Two requests in one write, answered in order.
  s.write(Buffer.concat([frame('a'), frame('b')]));
  assert.is(await readFrame(s), 'ok:6:a');
  assert.is(await readFrame(s), 'ok:7:b');
  s.end();
  assert.is(await readFrame(s), 'summary:7 requests');
  const rest = await readAll(s);
  assert.ok(rest.ended);
  assert.is(rest.data.length, 0);
});

test('the server half-closes first: its FIN reaches the client, which keeps sending until it ends too (over mTLS)', async () => {
  const s = await dial(svc.greeter);
  const first = await readAll(s);
  assert.is(first.data.toString(), 'hello, then FIN');
  assert.ok(first.ended, "the server's FIN arrived");
  for (const part of ['one ', 'two ', 'three']) {
    s.write(part);
    await new Promise((r) => setTimeout(r, 20));
  }
  s.end();
  await until(() => greeterGot.length > 0);
  assert.equal(greeterGot, ['one two three'], 'every byte sent after the FIN reached the server');
});

test('weighted tcp routes split connections (30/70 over subsets v1 and v2)', async () => {
  const counts: Record<string, number> = { v1: 0, v2: 0 };
  const N = 60;
  for (let i = 0; i < N; i++) {
    const s = await dial(svc.split);
    const got = (await readAll(s, 2000)).data.toString();
    s.destroy();
    counts[got] = (counts[got] ?? 0) + 1;
  }
  assert.is(counts.v1! + counts.v2!, N, JSON.stringify(counts));
  // Binomial(60, 0.3): P(v1 < 6 or v1 > 30) is below 1e-4.
  assert.ok(counts.v1! >= 6 && counts.v1! <= 30, JSON.stringify(counts));
});

test('idle timeout (DestinationRule tcp.idleTimeout 400ms): traffic keeps a connection open, silence closes it', async () => {
  const s = await dial(svc.idle);
  const closed = new Promise<number>((resolve) => {
    s.on('end', () => resolve(Date.now()));
    s.on('close', () => resolve(Date.now()));
  });
  s.on('error', () => {});
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 200));
    s.write('x');
    await readExactly(s, 1);
  }
  assert.ok(!s.destroyed && s.readyState === 'open', 'active for 800 ms with 200 ms gaps: still open');
  const quietSince = Date.now();
  s.resume(); // read the proxy's FIN
  const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
  assert.ok(at > 0, 'closed by the proxy');
  assert.ok(at - quietSince >= 300 && at - quietSince < 2000, `closed after ${at - quietSince} ms of silence`);
});

test('connectTimeout (300ms): an upstream that never completes its handshake fails the connection (UF), counted', async () => {
  const s = await dial(svc.stall);
  const started = Date.now();
  s.write('anyone?');
  const got = await readAll(s, 5000);
  const took = Date.now() - started;
  assert.is(got.data.length, 0);
  assert.ok(took >= 250 && took < 3000, `closed after ${took} ms`);
  const text = clientProxy.renderPrometheus();
  assert.is(total(text, 'istio_tcp_connections_opened_total', { destination_service: STALL, response_flags: 'UF' }), 1);
  assert.is(total(text, 'wasmesh_proxy_upstream_failures_total', { cluster: `outbound|${svc.stall}||${STALL}`, response_flag: 'UF' }), 1);
});

test('maxConnections 2: a third connection is refused at once (UO) and counted; a slot freed admits the next', async () => {
  const a = await dial(svc.limited);
  const b = await dial(svc.limited);
  a.write('a');
  b.write('b');
  assert.is((await readExactly(a, 1)).toString(), 'a');
  assert.is((await readExactly(b, 1)).toString(), 'b');
  const c = await dial(svc.limited);
  c.write('c');
  const refused = await readAll(c, 3000);
  assert.is(refused.data.length, 0, 'the third connection got nothing');
  const text = clientProxy.renderPrometheus();
  assert.is(total(text, 'wasmesh_proxy_upstream_overflow_total', { cluster: `outbound|${svc.limited}||${LIMITED}` }), 1);
  assert.is(total(text, 'istio_tcp_connections_opened_total', { destination_service: LIMITED, response_flags: 'UO' }), 1);
  a.destroy();
  await until(() => total(clientProxy.renderPrometheus(), 'istio_tcp_connections_closed_total', { destination_service: LIMITED, response_flags: '-' }) >= 1);
  const d = await dial(svc.limited);
  d.write('d');
  assert.is((await readExactly(d, 1)).toString(), 'd');
  b.destroy();
  d.destroy();
});

test("Istio's TCP metrics on both sides, with the peers' workloads, principals and mTLS", async () => {
  const s = await dial(svc.echo);
  const payload = 'x'.repeat(1000);
  s.write(payload);
  await readExactly(s, 1000);
  s.end();
  await readAll(s);
  const src = { reporter: 'source', destination_service: ECHO };
  // (The STRICT test's own TLS client did no metadata exchange: its source is unknown.)
  const dst = { reporter: 'destination', destination_service: ECHO, source_workload: 'client' };
  await until(() => total(echoProxy.renderPrometheus(), 'istio_tcp_connections_closed_total', dst) >= 3 && total(clientProxy.renderPrometheus(), 'istio_tcp_connections_closed_total', src) >= 3);
  const c = clientProxy.renderPrometheus();
  const e = echoProxy.renderPrometheus();
  // Three echo connections so far: this one (1000 bytes + "bye"), the first test's (10 bytes + "bye")
  // and the 4 MiB one (4 MiB + "bye").
  const MIB4 = 4 * 1024 * 1024;
  for (const [text, want] of [[c, src], [e, dst]] as const) {
    assert.is(total(text, 'istio_tcp_connections_opened_total', want), 3, `${want.reporter} opened`);
    assert.is(total(text, 'istio_tcp_connections_closed_total', want), 3, `${want.reporter} closed`);
    assert.is(total(text, 'istio_tcp_received_bytes_total', want), 1010 + MIB4, `${want.reporter} received (client -> server)`);
    assert.is(total(text, 'istio_tcp_sent_bytes_total', want), 1016 + MIB4 + 3, `${want.reporter} sent (server -> client)`);
  }
  const [source] = samples(c, 'istio_tcp_connections_opened_total', src);
  assert.equal(
    { ...source!.labels },
    {
      reporter: 'source',
      source_workload: 'client',
      source_workload_namespace: 'default',
      source_principal: 'spiffe://cluster.local/ns/default/sa/client',
      source_app: 'client',
      source_version: 'v1',
      destination_workload: 'echo',
      destination_workload_namespace: 'default',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/echo',
      destination_app: 'echo',
      destination_version: 'v1',
      destination_service: ECHO,
      destination_service_name: 'echo',
      destination_service_namespace: 'default',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'unknown',
    },
  );
  const [destination] = samples(e, 'istio_tcp_connections_opened_total', dst);
  assert.is(destination!.labels!.source_workload, 'client', 'the peer metadata exchange told the server side who called');
  assert.is(destination!.labels!.source_principal, 'spiffe://cluster.local/ns/default/sa/client');
  assert.is(destination!.labels!.destination_principal, 'spiffe://cluster.local/ns/default/sa/echo');
  assert.is(destination!.labels!.connection_security_policy, 'mutual_tls');
});

test('a port with no route closes the connection (NR), and a config change applies to new connections', async () => {
  // Remove the echo ServiceEntry from the client's config: its port has no routing any more.
  const without = mesh().filter((o) => (o as { metadata: { name: string } }).metadata.name !== 'echo');
  await clientProxy.applyConfig(configFor(client, without));
  const s = await dial(svc.echo);
  s.write('hello');
  assert.is((await readAll(s, 3000)).data.length, 0);
  assert.ok(total(clientProxy.renderPrometheus(), 'istio_tcp_connections_opened_total', { response_flags: 'NR' }) >= 1);
  await clientProxy.applyConfig(configFor(client, mesh()));
  const t = await dial(svc.echo);
  t.write('back');
  assert.is((await readExactly(t, 4)).toString(), 'back');
  t.destroy();
});

test.run();
