// TCP under iptables capture, on the real kernel: in a throwaway network namespace standing for an
// injected pod, the init container's rules (orchestrator/src/inject) redirect the app's outbound TCP
// to a real `wasmesh proxy --iptables-capture` running as the proxy's UID/GID 1337; a second namespace
// over a veth pair stands for the rest of the network, with a server-first TCP service (it greets,
// then echoes) and an HTTP service. The app (UID 1000) connects to the services' addresses directly,
// as an app in a pod does:
//   - TCP port 5432: the proxy reads the original destination, the TCP proxy takes the connection
//     (the greeting arrives before the app sends anything: no sniffing wait), the upstream sees the
//     proxy's pod address, and the proxy counts it in Istio's TCP metrics (reporter source);
//   - HTTP port 80: still the HTTP listener, routed by the Host header;
//   - a port no service has (a server outside the mesh): passed through to the original destination
//     (PassthroughCluster) under ALLOW_ANY, the default; closed under REGISTRY_ONLY.
// Needs root, unshare, nsenter, setpriv, ip and iptables (skipped, saying so, without them) and the
// native addon (skipped without it, saying why; failed under CI=true).
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { injectResource } from '../../orchestrator/src/inject/mutate.ts';
import { loadOriginalDstAddon } from '../../proxy-host/src/tcp/original-dst.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { cluster, forward, proxyConfig } from '../../proxy-host/test/support/config.ts';
import { request, startHttp1 } from '../../proxy-host/test/support/servers.ts';
import { createTestCa } from '../../proxy-host/test/support/test-ca.ts';
import type { WorkloadCertificate } from '../../proxy-host/src/identity/types.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

const addon = loadOriginalDstAddon();
const missingTools = ['unshare', 'nsenter', 'setpriv', 'iptables', 'ip'].filter((c) => !have(c));
const kernelOk =
  process.getuid?.() === 0 && missingTools.length === 0 && spawnSync('unshare', ['--net', '--', 'iptables', '-t', 'nat', '-S'], { timeout: 10_000 }).status === 0;
let skip: string | undefined;
if (!kernelOk) skip = process.getuid?.() !== 0 ? 'needs root' : missingTools.length > 0 ? `needs ${missingTools.join(', ')}` : 'cannot make a network namespace with a NAT table';
else if (!addon.ok) skip = `the native addon is unavailable: ${addon.reason}`;
if (skip && !addon.ok && process.env.CI === 'true') {
  test('the SO_ORIGINAL_DST addon is built (required under CI=true)', () => {
    assert.unreachable(`the addon is unavailable: ${addon.ok ? '' : addon.reason}`);
  });
}
if (skip) process.stderr.write(`iptables-capture.test.ts: SKIPPED the kernel test: ${skip}\n`);

// Anywhere (no root): a connection made to the capture listener itself was not rewritten (the kernel
// answers ENOENT, or the listener's own address), so it is HTTP as without capture.
(addon.ok ? test : test.skip)('under --iptables-capture, a connection made to the outbound listener itself is still HTTP', async () => {
  const upstream = await startHttp1('web');
  const config = proxyConfig({
    clusters: [cluster('outbound|80||web', [{ port: upstream.port }], { host: 'web' })],
    virtualHosts: [{ name: 'web', domains: ['web'], routes: [forward('all', 'outbound|80||web')] }],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: null, accessLog: 'off', iptablesCapture: true }, config);
  try {
    assert.is(proxy.capturedTcpUnavailable, undefined);
    const res = await request(proxy.outboundPort, { headers: { host: 'web' } });
    assert.is(res.status, 200);
    assert.is(res.headers['x-upstream'], 'web');
  } finally {
    await proxy.stop(0);
    await upstream.close();
  }
});

// The same for the inbound listener with app TCP ports: a connection made to it directly is HTTP,
// and the per-port inbound TCP listener still serves its port.
(addon.ok ? test : test.skip)('under --iptables-capture with --tcp-inbound, a connection made to the inbound listener itself is still HTTP', async () => {
  const app = await startHttp1('app');
  const tcpApp = await startHttp1('tcp-app');
  const proxy = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: null, accessLog: 'off', iptablesCapture: true, appPort: app.port, tcpInbound: [{ port: 0, appPort: tcpApp.port }] },
    proxyConfig({ clusters: [], virtualHosts: [] }),
  );
  try {
    const res = await request(proxy.inboundPort, { headers: { host: 'app' } });
    assert.is(res.status, 200);
    assert.is(res.headers['x-upstream'], 'app');
    // Bytes through the TCP listener reach the other app port as they are (an HTTP server there answers).
    const viaTcp = await request(proxy.tcpInboundPorts()[0]!, { headers: { host: 'whatever' } });
    assert.is(viaTcp.headers['x-upstream'], 'tcp-app');
  } finally {
    await proxy.stop(0);
    await app.close();
    await tcpApp.close();
  }
});

// Anywhere: without the addon, a capture proxy with app TCP ports says once, at start, which ports
// are served as HTTP and why, and the inbound listener serves HTTP as before.
test('without the addon, --iptables-capture with --tcp-inbound logs why inbound TCP is unavailable and keeps serving HTTP', () => {
  const src = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const probe = `
const http = require('node:http');
(async () => {
  const { Proxy } = await import(${src('../../proxy-host/src/proxy.ts')});
  const { proxyConfig } = await import(${src('../../proxy-host/test/support/config.ts')});
  const app = http.createServer((req, res) => res.end('app')).listen(0, '127.0.0.1');
  await new Promise((r) => app.once('listening', r));
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: null, accessLog: 'off', iptablesCapture: true, appPort: app.address().port, tcpInbound: [{ port: 0, appPort: 5432 }] }, proxyConfig({}));
  const body = await (await fetch('http://127.0.0.1:' + proxy.inboundPort + '/')).text();
  await proxy.stop(0);
  app.close();
  process.stdout.write(JSON.stringify({ body, unavailable: proxy.capturedTcpUnavailable }));
})();`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', probe], { cwd: ROOT, env: { ...process.env, WASMESH_ORIGINAL_DST_ADDON: '/nonexistent/original-dst.node' }, encoding: 'utf8', timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('{"body"'))) as { body: string; unavailable?: string };
  assert.is(out.body, 'app');
  const logs = r.stdout + r.stderr;
  const lines = logs.split('\n').filter((l) => l.includes('inbound TCP is unavailable'));
  assert.is(lines.length, 1, logs);
  assert.match(lines[0]!, /captured connections to app TCP port\(s\) 5432 are served as HTTP: the native addon \/nonexistent\/original-dst\.node is not built/);
});

const MESH = (echoPort: number, webPort: number) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: default }
spec:
  hosts: [db.mesh.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp-db, protocol: TCP }]
  endpoints: [{ address: 10.77.0.1, ports: { tcp-db: ${echoPort} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: default }
spec:
  hosts: [web.mesh.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http-web, protocol: HTTP }]
  endpoints: [{ address: 10.77.0.1, ports: { http-web: ${webPort} } }]
`;

// The other side of the network: a server-first TCP service (greets with the peer's address, then
// echoes) and an HTTP service.
const SERVERS = `
const net = require('node:net');
const http = require('node:http');
const fs = require('node:fs');
let n = 0;
const ready = () => { if (++n === 3) fs.writeFileSync(process.env.READY, 'ok'); };
const greeter = (s) => { s.on('error', () => {}); s.write('hello ' + s.remoteAddress + '\\n'); s.pipe(s); };
net.createServer({ allowHalfOpen: true }, greeter).listen(Number(process.env.ECHO_PORT), '10.77.0.1', ready);
net.createServer({ allowHalfOpen: true }, greeter).listen(Number(process.env.OUTSIDE_PORT), '10.77.0.1', ready);
http.createServer((req, res) => res.end('web saw ' + req.headers.host)).listen(Number(process.env.WEB_PORT), '10.77.0.1', ready);`;

// The app's TCP client: waits for the greeting (sends nothing before it), then "ping", then half-closes.
const TCP_CLIENT = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]), allowHalfOpen: true });
let got = '', sent = false;
s.setTimeout(3000, () => { process.stdout.write(JSON.stringify({ timeout: true, got })); process.exit(0); });
s.on('data', (d) => { got += d; if (!sent && got.includes('\\n')) { sent = true; s.end('ping'); } });
s.on('end', () => { process.stdout.write(JSON.stringify({ got })); process.exit(0); });
s.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code, got })); process.exit(0); });`;

const HTTP_CLIENT = `
const http = require('node:http');
const req = http.get({ host: process.argv[1], port: Number(process.argv[2]) || 80, path: '/', headers: { host: 'web.mesh.test' }, timeout: 3000 }, (res) => {
  let body = ''; res.on('data', (d) => (body += d)); res.on('end', () => { process.stdout.write(JSON.stringify({ status: res.statusCode, body })); process.exit(0); });
});
req.on('timeout', () => { process.stdout.write(JSON.stringify({ timeout: true })); process.exit(0); });
req.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code })); process.exit(0); });`;

// Root in the pod's namespace: waits for the proxy's admin /ready (bounded), or reads its metrics.
const ADMIN = `
const [what] = process.argv.slice(1);
const url = 'http://127.0.0.1:15000' + (what === 'ready' ? '/ready' : '/stats/prometheus');
const deadline = Date.now() + 20000;
(async () => {
  for (;;) {
    try { const r = await fetch(url); if (r.ok) { process.stdout.write(what === 'ready' ? 'ready' : JSON.stringify(await r.text())); return; } } catch {}
    if (Date.now() > deadline) { process.stdout.write('"not ready"'); return; }
    await new Promise((r) => setTimeout(r, 100));
  }
})();`;

/** The app's outbound connections and the proxy's metrics (the outbound tests' steps). */
const OUTBOUND_STEPS = `
printf 'tcp %s\\n' "$(as_app "$TCP_CLIENT" 10.77.0.99 5432)"
printf 'http %s\\n' "$(as_app "$HTTP_CLIENT" 10.77.0.98 80)"
printf 'outside %s\\n' "$(as_app "$TCP_CLIENT" 10.77.0.1 $OUTSIDE_PORT)"
printf 'metrics %s\\n' "$(node -e "$ADMIN" metrics)"
`;

interface PodOptions {
  /** Documents added to the mesh. */
  extraYaml?: string;
  /** How the proxy is run (default: as UID/GID 1337, the rules' exclusion). */
  proxyUser?: string;
  /** The pod's annotations (traffic.sidecar.istio.io/...). */
  annotations?: Record<string, string>;
  /** More `wasmesh proxy` flags (shell words; $DIR is the test's directory). */
  proxyArgs?: string;
  /** Shell lines run in the pod's namespace before the proxy starts (the app's servers); may append to EXTRA_PIDS. */
  before?: string;
  /** Shell lines run once the proxy is ready; each `printf 'name %s\\n' ...` line is a result. */
  steps?: string;
  /** More environment for the shell (scripts the steps run). */
  env?: Record<string, string>;
  /** Called with the test's directory before the shell runs (certificates). */
  prepare?: (dir: string) => void;
}

/** Runs the pod (rules, servers, the proxy with the mesh plus `extraYaml`) and the app's connections; returns what each got. */
function runPod(options: PodOptions = {}): { seen: Record<string, string>; why: string; log: string } {
  const { extraYaml = '', proxyUser = 'setpriv --reuid=1337 --regid=1337 --clear-groups' } = options;
  const doc = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'app', namespace: 'default', labels: { app: 'app' }, ...(options.annotations ? { annotations: options.annotations } : {}) },
    spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 9080 }] }] },
  };
  const pod = injectResource(doc, { orchestrator: 'o:15010', image: 'i', tokenSecret: 's' }).object as { spec: { initContainers: Array<{ command: string[] }>; containers: unknown[] } };
  const script = pod.spec.initContainers[0]!.command[2]!;
  // The injected sidecar is told that iptables captures its traffic.
  assert.ok(JSON.stringify(pod.spec.containers).includes('--iptables-capture'), 'the injected proxy runs with --iptables-capture');

  const dir = mkdtempSync(path.join(tmpdir(), 'wasmesh-capture-'));
  try {
    chmodSync(dir, 0o755);
    const echoPort = 7000;
    const webPort = 7080;
    writeFileSync(path.join(dir, 'mesh.yaml'), MESH(echoPort, webPort) + extraYaml, { mode: 0o644 });
    options.prepare?.(dir);
    const body = `
set -eu
CLIENT_NS= SERVERS_PID= PROXY_PID= EXTRA_PIDS=
trap 'kill $PROXY_PID $SERVERS_PID $EXTRA_PIDS $CLIENT_NS 2>/dev/null || true' EXIT
ip link set lo up
unshare -n sleep 60 >/dev/null 2>&1 & CLIENT_NS=$!
sleep 0.2
ip link add v0 type veth peer name v1 netns $CLIENT_NS
ip addr add 10.77.0.5/24 dev v0 && ip link set v0 up
nsenter -t $CLIENT_NS -n sh -c 'ip link set lo up && ip addr add 10.77.0.1/24 dev v1 && ip link set v1 up'
sh -c "$SCRIPT" >/dev/null
nsenter -t $CLIENT_NS -n node -e "$SERVERS" >/dev/null 2>&1 & SERVERS_PID=$!
${options.before ?? ''}
$PROXY_USER node "$WASMESH" proxy --config "$DIR/mesh.yaml" --workload app --host 0.0.0.0 \\
  --outbound-port 15001 --inbound-port 15006 --admin-port 15000 --app-port 9080 --access-log off --no-telemetry --iptables-capture ${options.proxyArgs ?? ''} \\
  >"$DIR/proxy.log" 2>&1 & PROXY_PID=$!
for i in $(seq 100); do [ -f "$READY" ] && break; sleep 0.05; done
# printf, not echo: dash's echo would turn the JSON's \\n into newlines.
printf 'ready %s\\n' "$(node -e "$ADMIN" ready)"
as_app() { setpriv --reuid=1000 --regid=1000 --clear-groups node -e "$1" "$2" "$3"; }
${options.steps ?? OUTBOUND_STEPS}`;
    const env = {
      ...process.env,
      SCRIPT: script,
      SERVERS,
      TCP_CLIENT,
      HTTP_CLIENT,
      ADMIN,
      DIR: dir,
      READY: path.join(dir, 'servers-ready'),
      ECHO_PORT: String(echoPort),
      WEB_PORT: String(webPort),
      OUTSIDE_PORT: '9999',
      WASMESH: path.join(ROOT, 'scripts', 'wasmesh.mjs'),
      PROXY_USER: proxyUser,
      ...options.env,
    };
    const run = spawnSync('unshare', ['-n', 'sh', '-c', body], { cwd: ROOT, env, encoding: 'utf8', timeout: 90_000 });
    const log = spawnSync('cat', [path.join(dir, 'proxy.log')], { encoding: 'utf8' }).stdout ?? '';
    assert.is(run.status, 0, `exit ${run.status}\n${run.stdout}\n${run.stderr}\nproxy:\n${log}`);
    const seen = Object.fromEntries(
      run.stdout
        .trim()
        .split('\n')
        .filter((l) => l.includes(' '))
        .map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]),
    ) as Record<string, string>;
    const why = `\n${run.stdout}\nproxy:\n${log}`;
    assert.is(seen.ready, 'ready', why);
    return { seen, why, log };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The metric line of a TCP counter for a destination service. */
function tcpMetric(metrics: string, name: string, service: string): string | undefined {
  return metrics.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`destination_service="${service}"`));
}

(skip ? test.skip : test)('an injected pod\'s captured TCP reaches the mesh service through the proxy; HTTP stays HTTP; the rest passes through', () => {
  const { seen, why } = runPod();
  // The greeting came first (nothing was sent before it), from a service that saw the pod's address
  // (the proxy's own connection, not captured again), then the echo of what the app sent.
  assert.equal(JSON.parse(seen.tcp!), { got: 'hello 10.77.0.5\nping' }, why);
  assert.equal(JSON.parse(seen.http!), { status: 200, body: 'web saw web.mesh.test' }, why);
  // Outside the mesh (ALLOW_ANY): the same bytes, from the proxy too.
  assert.equal(JSON.parse(seen.outside!), { got: 'hello 10.77.0.5\nping' }, why);
  const metrics = JSON.parse(seen.metrics!) as string;
  const opened = tcpMetric(metrics, 'istio_tcp_connections_opened_total', 'db.mesh.test');
  assert.ok(opened, `no istio_tcp_connections_opened_total for db.mesh.test in\n${metrics}`);
  assert.match(opened!, /reporter="source"/);
  assert.match(opened!, /source_workload="app"/);
  assert.match(opened!, / 1$/);
  const passthrough = tcpMetric(metrics, 'istio_tcp_connections_opened_total', 'PassthroughCluster');
  assert.ok(passthrough, `no istio_tcp_connections_opened_total for PassthroughCluster in\n${metrics}`);
  assert.match(passthrough!, /response_flags="-"/);
  assert.match(passthrough!, / 1$/);
  assert.match(tcpMetric(metrics, 'istio_tcp_received_bytes_total', 'PassthroughCluster') ?? '', / 4$/);
});

const REGISTRY_ONLY = `---
apiVersion: wasmesh.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
`;

(skip ? test.skip : test)('MeshConfig outboundTrafficPolicy REGISTRY_ONLY: a port no service has is closed (BlackHoleCluster); mesh TCP still works', () => {
  const { seen, why } = runPod({ extraYaml: REGISTRY_ONLY });
  assert.equal(JSON.parse(seen.tcp!), { got: 'hello 10.77.0.5\nping' }, why);
  const outside = JSON.parse(seen.outside!) as { got: string; error?: string };
  assert.is(outside.got, '', why);
  const metrics = JSON.parse(seen.metrics!) as string;
  assert.match(tcpMetric(metrics, 'istio_tcp_connections_opened_total', 'BlackHoleCluster') ?? '', / 1$/);
  assert.not.ok(tcpMetric(metrics, 'istio_tcp_connections_opened_total', 'PassthroughCluster'));
});

(skip ? test.skip : test)('a proxy whose own connections are captured (not UID 1337) closes the loop instead of feeding it', () => {
  const { seen, why, log } = runPod({ proxyUser: '' });
  const outside = JSON.parse(seen.outside!) as { got: string; timeout?: boolean };
  assert.is(outside.timeout, undefined, why);
  assert.is(outside.got, '', why);
  assert.match(log, /own connection to 10\.77\.0\.1:\d+ was captured again and is closed: run the proxy as the UID\/GID the iptables rules exclude/);
  // Each of the app's three connections made a hop or two, not a connection storm.
  const metrics = JSON.parse(seen.metrics!) as string;
  const passthrough = metrics.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('destination_service="PassthroughCluster"'));
  const opened = passthrough.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  assert.ok(opened >= 1 && opened <= 6, `${opened} passthrough connections${why}`);
});

// The server side: the pod's app serves TCP ports 7433 (PERMISSIVE) and 7434 (STRICT, by
// PeerAuthentication portLevelMtls) and HTTP 9080; the proxy is told the TCP ones with
// `--tcp-inbound 0=PORT`. Clients in the other namespace connect to the pod's address, as other pods
// do; the rules capture them to the inbound listener (15006), which reads the original port.
const INBOUND_YAML = `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: app, namespace: default }
spec:
  selector: { matchLabels: { app: app } }
  mtls: { mode: PERMISSIVE }
  portLevelMtls: { 7434: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-7435, namespace: default }
spec:
  selector: { matchLabels: { app: app } }
  action: DENY
  rules: [{ to: [{ operation: { ports: ["7435"] } }] }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: appdb, namespace: default }
spec:
  hosts: [appdb.mesh.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5434, name: tcp-strict, protocol: TCP }]
  endpoints: [{ address: 10.77.0.5, ports: { tcp-strict: 7434 }, labels: { security.istio.io/tlsMode: istio } }]
`;

// The pod's app: greets each connection with the address it came from, then echoes; HTTP on 9080.
const APP_SERVERS = `
const net = require('node:net');
const http = require('node:http');
const greeter = (s) => { s.on('error', () => {}); s.write('hello ' + s.remoteAddress + '\\n'); s.pipe(s); };
net.createServer({ allowHalfOpen: true }, greeter).listen(7433, '127.0.0.1');
net.createServer({ allowHalfOpen: true }, greeter).listen(7434, '127.0.0.1');
net.createServer({ allowHalfOpen: true }, greeter).listen(7435, '127.0.0.1');
http.createServer((req, res) => res.end('app saw ' + req.url)).listen(9080, '127.0.0.1');`;

// A client that speaks first: "ping\n" (enough bytes for a TLS server to see it is no record),
// half-closes, and reports what came back and how it ended.
const SEND_FIRST = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]), allowHalfOpen: true });
let got = '';
s.setTimeout(4000, () => { process.stdout.write(JSON.stringify({ timeout: true, got })); process.exit(0); });
s.on('connect', () => s.end('ping\\n'));
s.on('data', (d) => (got += d));
s.on('end', () => { process.stdout.write(JSON.stringify({ got })); process.exit(0); });
s.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code, got })); process.exit(0); });`;

const INBOUND_STEPS = `
in_client() { nsenter -t $CLIENT_NS -n node -e "$1" "$2" "$3"; }
printf 'plain %s\\n' "$(in_client "$SEND_FIRST" 10.77.0.5 7433)"
printf 'strict_plain %s\\n' "$(in_client "$SEND_FIRST" 10.77.0.5 7434)"
printf 'denied %s\\n' "$(in_client "$SEND_FIRST" 10.77.0.5 7435)"
printf 'http %s\\n' "$(in_client "$HTTP_CLIENT" 10.77.0.5 9080)"
nsenter -t $CLIENT_NS -n node "$WASMESH" proxy --config "$DIR/mesh.yaml" --workload client --cert-dir "$DIR/client" \\
  --tcp-outbound 5434=7500 --outbound-port 15001 --inbound-port 15006 --admin-port 15000 --access-log off --no-telemetry \\
  >"$DIR/client.log" 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
printf 'client_ready %s\\n' "$(nsenter -t $CLIENT_NS -n node -e "$ADMIN" ready)"
printf 'mtls %s\\n' "$(in_client "$SEND_FIRST" 127.0.0.1 7500)"
printf 'metrics %s\\n' "$(node -e "$ADMIN" metrics)"
`;

/** The workload identity files `--cert-dir` reads (the key 0600, owned by the proxy's user). */
function writeIdentity(dir: string, cert: WorkloadCertificate, uid: number): void {
  mkdirSync(dir, { mode: 0o755 });
  writeFileSync(path.join(dir, 'key.pem'), cert.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'cert-chain.pem'), cert.certChainPem, { mode: 0o644 });
  writeFileSync(path.join(dir, 'root-cert.pem'), cert.trustBundlePem.join(''), { mode: 0o644 });
  chownSync(path.join(dir, 'key.pem'), uid, uid);
}

(skip ? test.skip : test)('inbound under capture: a connection to the app\'s TCP port takes the inbound TCP path (PeerAuthentication, mTLS from a sidecar, reporter destination); HTTP stays HTTP', async () => {
  const ca = await createTestCa();
  const [server, client] = await Promise.all([ca.issue('default', 'app'), ca.issue('default', 'client')]);
  const { seen, why } = runPod({
    extraYaml: INBOUND_YAML,
    annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '9080,7433,7434,7435' },
    proxyArgs: '--cert-dir "$DIR/server" --tcp-inbound 0=7433 --tcp-inbound 0=7434 --tcp-inbound 0=7435',
    before: `setpriv --reuid=1000 --regid=1000 --clear-groups node -e "$APP_SERVERS" >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"`,
    steps: INBOUND_STEPS,
    env: { APP_SERVERS, SEND_FIRST },
    prepare: (dir) => {
      writeIdentity(path.join(dir, 'server'), server, 1337);
      writeIdentity(path.join(dir, 'client'), client, 0);
    },
  });
  // Plaintext on the PERMISSIVE port: through the proxy (the app sees it come from loopback).
  assert.equal(JSON.parse(seen.plain!), { got: 'hello 127.0.0.1\nping\n' }, why);
  // Plaintext on the STRICT port: refused, the app never hears of it.
  const strictPlain = JSON.parse(seen.strict_plain!) as { got: string; timeout?: boolean };
  assert.is(strictPlain.got, '', why);
  assert.is(strictPlain.timeout, undefined, why);
  // The AuthorizationPolicy denying the app's port 7435 (the original port, not the listener's) closes it.
  assert.is((JSON.parse(seen.denied!) as { got: string }).got, '', why);
  // The HTTP app port is still the HTTP inbound listener.
  assert.equal(JSON.parse(seen.http!), { status: 200, body: 'app saw /' }, why);
  // mTLS from the client's sidecar to the STRICT port.
  assert.is(seen.client_ready, 'ready', why);
  assert.equal(JSON.parse(seen.mtls!), { got: 'hello 127.0.0.1\nping\n' }, why);
  const metrics = JSON.parse(seen.metrics!) as string;
  const opened = metrics.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"'));
  const plain = opened.find((l) => l.includes('connection_security_policy="none"'));
  const mtls = opened.find((l) => l.includes('connection_security_policy="mutual_tls"'));
  // The plaintext ones: the one served on 7433 and the one denied on 7435 (opened and closed at once).
  assert.match(plain ?? '', / 2$/, `no plaintext reporter="destination" series in\n${metrics}`);
  assert.match(mtls ?? '', / 1$/, `no mutual_tls reporter="destination" series in\n${metrics}`);
  assert.match(mtls!, /source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/client"/);
  assert.match(mtls!, /source_workload="client"/);
  // The plaintext connection STRICT refused never became a TCP connection of the app: not counted.
  assert.is(opened.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0), 3, metrics);
});

test.run();
