// WasmPlugins of type NETWORK in a real proxy on loopback: the tcp-guard example (an AssemblyScript
// network filter) on the outbound and inbound TCP listeners, a trapping network filter (WebAssembly
// text) under FAIL_CLOSE and FAIL_OPEN, swapped in by config changes (hot reload). Real sockets, the
// real translator, real wasm. Build the example first:
//   node scripts/wasmesh.mjs filter build filters/examples/tcp-guard
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import { Proxy } from '../src/proxy.ts';
import { freePort } from './support/servers.ts';

const GUARD = fileURLToPath(new URL('../../filters/examples/tcp-guard/build/tcp-guard.wasm', import.meta.url));
const client: WorkloadIdentity = { name: 'client', namespace: 'default', labels: { app: 'client' }, serviceAccount: 'client' };
const ECHO = 'echo.default.svc.cluster.local';

/** A network filter that traps (unreachable) on client data starting with "T", and lets anything else through. */
const TRAP_WAT = guestModule({
  imports: '(import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))',
  body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $len i32) (param $eos i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 0))
      (then
        (drop (call $get (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 100) (i32.const 104)))
        (if (i32.eq (i32.load8_u (i32.load (i32.const 100))) (i32.const 84))
          (then unreachable))))
    (i32.const 0))`,
});

let proxy: Proxy;
let dir: string;
let trapPath: string;
let echoServer: net.Server;
let appPort = 0;
let servicePort = 0;
/** What the echo app received, per connection, once each ended or closed. */
const received: string[] = [];

function mesh(plugin: Record<string, unknown>): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'echo', namespace: 'default' },
      spec: { hosts: [ECHO], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: servicePort, name: 'tcp-echo', protocol: 'TCP' }], workloadSelector: { labels: { app: 'echo' } } },
    },
    { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'echo', namespace: 'default' }, spec: { address: '127.0.0.1', ports: { 'tcp-echo': appPort }, labels: { app: 'echo' } } },
    { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'WasmPlugin', metadata: { name: 'l4', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'client' } }, type: 'NETWORK', ...plugin } },
  ];
}

function configFor(plugin: Record<string, unknown>): ProxyConfig {
  const docs = fromObjects(mesh(plugin), join(dir, 'mesh.yaml'));
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, client, { telemetry: false });
}

const guard = { url: `file://${GUARD}`, pluginName: 'tcp_guard', pluginConfig: { denyPrefixes: ['DROP '] }, match: [{ mode: 'CLIENT_AND_SERVER' }] };
const trap = (failStrategy: string) => ({ url: `file://${trapPath}`, failStrategy, match: [{ mode: 'CLIENT' }] });

/** Connects, writes `text`, half-closes, and reads until the connection ends or closes (bounded). */
function exchange(port: number, text: string, ms = 4000): Promise<{ data: string; ended: boolean; reset: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let ended = false;
    let reset = false;
    const timer = setTimeout(() => done(), ms);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(chunks).toString(), ended, reset });
    };
    s.on('connect', () => s.end(text));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      ended = true;
      done();
    });
    s.on('error', () => (reset = true));
    s.on('close', done);
  });
}

function outbound(): number {
  return proxy.tcpOutboundPorts().get(servicePort)!;
}

function metric(name: string): number {
  let sum = 0;
  for (const line of proxy.renderPrometheus().split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

test.before(async () => {
  dir = await mkdtemp(join(os.tmpdir(), 'wasmesh-l4-'));
  trapPath = join(dir, 'trap.wasm');
  await writeFile(trapPath, await wat2wasm(TRAP_WAT));
  // echo: answers every byte, ends when the client ends; records what each connection sent.
  echoServer = net.createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    let recorded = false;
    const record = (): void => {
      if (!recorded) received.push(got);
      recorded = true;
    };
    s.on('data', (c: Buffer) => {
      got += c.toString();
      s.write(c);
    });
    s.on('end', () => {
      record();
      s.end();
    });
    s.on('close', record);
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => echoServer.listen(0, '127.0.0.1', resolve));
  appPort = (echoServer.address() as net.AddressInfo).port;
  servicePort = await freePort();
  proxy = await Proxy.start(
    {
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
      accessLog: 'off',
      appPort,
      tcpOutbound: [{ port: servicePort, listenPort: 0 }],
      tcpInbound: [{ port: 0, appPort }],
    },
    configFor(guard),
  );
});

test.after(async () => {
  await proxy?.stop(100);
  echoServer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a NETWORK plugin becomes the TCP chain of its match mode, never an HTTP filter', () => {
  const config = proxy.config;
  assert.equal([...config.inboundFilters, ...config.outboundFilters].filter((b) => b.name === 'l4'), [], 'not in the HTTP chains');
  assert.equal(config.networkFilters?.inbound.map((b) => b.name), ['l4']);
  assert.equal(config.networkFilters?.outbound.map((b) => b.name), ['l4']);
  const status = proxy.filters();
  assert.equal(status.network?.outbound.map((f) => f.plugin), ['default.l4']);
  assert.equal(status.inbound.map((f) => f.plugin).filter((p) => p === 'default.l4'), []);
  // An HTTP plugin stays HTTP-only: no network chains at all.
  const http = configFor({ ...guard, type: 'HTTP' });
  assert.is(http.networkFilters, undefined);
  assert.ok(http.inboundFilters.some((b) => b.name === 'l4'));
});

test('tcp-guard: an echo passes both ways and is counted; a deny prefix is closed before any byte reaches the app', async () => {
  const connectionsBefore = metric('tcp_guard_connections_total');
  const ok = await exchange(outbound(), 'SELECT 1;');
  assert.is(ok.data, 'SELECT 1;');
  assert.ok(ok.ended, 'the half-close went through the filter both ways');
  await until(() => received.includes('SELECT 1;'));
  assert.ok(received.includes('SELECT 1;'));
  await until(() => metric('tcp_guard_downstream_bytes_total') >= 9 && metric('tcp_guard_upstream_bytes_total') >= 9);
  assert.is(metric('tcp_guard_downstream_bytes_total'), 9);
  assert.is(metric('tcp_guard_upstream_bytes_total'), 9);

  const receivedBefore = received.length;
  const denied = await exchange(outbound(), 'DROP TABLE users;');
  assert.is(denied.data, '', 'nothing echoed');
  assert.ok(!denied.ended || denied.data === '', 'closed');
  await until(() => metric('tcp_guard_connections_denied_total') >= 1);
  assert.is(metric('tcp_guard_connections_denied_total'), 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.not.ok(received.slice(receivedBefore).some((r) => r.includes('DROP')), 'the app never saw the denied bytes');
  // A deny prefix split over two chunks: the filter holds "DR" and closes on the rest.
  const split = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: outbound() });
    let data = '';
    s.on('connect', () => {
      s.write('DR');
      setTimeout(() => s.write('OP x'), 50);
    });
    s.on('data', (c: Buffer) => (data += c));
    s.on('error', () => {});
    s.on('close', () => resolve(data));
    setTimeout(() => s.destroy(), 3000);
  });
  assert.is(split, '');
  assert.is(metric('tcp_guard_connections_denied_total'), 2);
  assert.not.ok(received.some((r) => r.includes('DR')), 'held bytes never went upstream');

  // Inbound (match CLIENT_AND_SERVER): the same filter on the inbound TCP listener.
  const inbound = proxy.tcpInboundPorts()[0]!;
  assert.is((await exchange(inbound, 'hello inbound')).data, 'hello inbound');
  assert.is((await exchange(inbound, 'DROP me')).data, '');
  assert.is(metric('tcp_guard_connections_denied_total'), 3);
  assert.ok(metric('tcp_guard_connections_total') - connectionsBefore >= 5);
});

test('a trapping network filter under FAIL_CLOSE closes its connection; other connections flow (hot reload, no restart)', async () => {
  await proxy.applyConfig(configFor(trap('FAIL_CLOSE')));
  assert.equal(proxy.config.networkFilters?.outbound.map((b) => b.failStrategy), ['FAIL_CLOSE']);
  const before = received.length;
  const trapped = await exchange(outbound(), 'Trap me');
  assert.is(trapped.data, '', 'the trapping connection is closed, nothing echoed');
  await new Promise((r) => setTimeout(r, 100));
  assert.not.ok(received.slice(before).some((r) => r.includes('Trap')), 'its bytes never reached the app');
  // Connections after the trap get a fresh VM and flow, several at once.
  const others = await Promise.all([1, 2, 3].map((i) => exchange(outbound(), `fine ${i}`)));
  assert.equal(others.map((o) => o.data), ['fine 1', 'fine 2', 'fine 3']);
  // Inbound has no filter with match CLIENT.
  assert.is((await exchange(proxy.tcpInboundPorts()[0]!, 'Trap inbound')).data, 'Trap inbound');
});

test('a trapping network filter under FAIL_OPEN lets the bytes through', async () => {
  await proxy.applyConfig(configFor(trap('FAIL_OPEN')));
  const passed = await exchange(outbound(), 'Trap me too');
  assert.is(passed.data, 'Trap me too');
  assert.ok(passed.ended);
  await until(() => received.includes('Trap me too'));
  assert.ok(received.includes('Trap me too'));
  assert.is((await exchange(outbound(), 'after')).data, 'after');
});

test.run();
