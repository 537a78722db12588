// The admin port as an attacker meets it: it listens on loopback whatever the listeners bind, a
// write needs the admin token or --admin-writes, and a browser cannot drive it from a web page
// (foreign Origin, renamed Host, form-style bodies, GETs with side effects). Each refused write is
// checked to have changed nothing: the running module still answers.
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Proxy, type ProxyOptions } from '../src/proxy.ts';
import { logLevelName, setLogLevel } from '../src/log.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { startHttp1, type TestServer } from './support/servers.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';

const TOKEN = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6';
const WASM = { 'content-type': 'application/wasm' };
let dir = '';
let one = '';
let two: Buffer;
let app: TestServer;
const running: Proxy[] = [];
const children: ChildProcess[] = [];

test.before(async () => {
  dir = await mkdtemp(join(os.tmpdir(), 'wasmesh-admin-security-'));
  one = join(dir, 'one.wasm');
  await writeFile(one, await versionModule('one'));
  two = Buffer.from(await versionModule('two'));
  app = await startHttp1('app');
});

test.after.each(async () => {
  for (const p of running.splice(0)) await p.stop(0);
  for (const c of children.splice(0)) await stopChild(c);
});

test.after(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

async function start(options: Partial<ProxyOptions> = {}): Promise<Proxy> {
  const config = proxyConfig({
    virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
    clusters: [cluster('app', [{ port: app.port }])],
    outboundFilters: [filterBinding('versioned', one)],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', moduleOverrides: true, ...options }, config);
  running.push(proxy);
  return proxy;
}

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One request to 127.0.0.1:port; `host` overrides the Host header. */
function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | string, address = '127.0.0.1'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('admin request timed out')));
    req.end(body);
  });
}

/** Which module version answers on the outbound listener. */
async function version(proxy: Proxy): Promise<string | undefined> {
  return (await call(proxy.outboundPort, 'GET', '/')).headers['x-filter-version'] as string | undefined;
}

const upload = (port: number, headers: Record<string, string> = {}) => call(port, 'PUT', '/filters/module?plugin=versioned', { ...WASM, ...headers }, two);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Resolves 'connected' or the error code of a TCP connect to address:port. */
function connect(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    socket.setTimeout(3000, () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** An IPv4 address of this machine that is not loopback, if it has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

test('admin listens on loopback only when the listeners bind 0.0.0.0; the status port serves probes there', async () => {
  const proxy = await start({ host: '0.0.0.0', statusPort: 0 });
  assert.is((await call(proxy.adminPort, 'GET', '/server_info')).status, 200);
  const external = externalAddress();
  if (!external) {
    process.stderr.write('admin-security: this machine has no non-loopback IPv4 address; the "not reachable from outside" assertion is skipped\n');
    return;
  }
  assert.is(await connect(external, proxy.outboundPort), 'connected', `the listeners answer on ${external} (the check below can see a wrong bind)`);
  assert.is(await connect(external, proxy.adminPort), 'ECONNREFUSED', `admin must not answer on ${external}`);
  // The status port is what a kubelet probes on the pod's address: /ready yes, the config no.
  assert.is((await call(proxy.statusPort, 'GET', '/ready', {}, undefined, external)).status, 200);
  assert.is((await call(proxy.statusPort, 'GET', '/config_dump', {}, undefined, external)).status, 404);
  assert.is((await call(proxy.statusPort, 'POST', '/logging?level=debug', {}, undefined, external)).status, 405);
});

test('without a token or --admin-writes, writes are refused with how to enable them, and nothing changes', async () => {
  const proxy = await start();
  assert.is(await version(proxy), 'one');
  const res = await upload(proxy.adminPort);
  assert.is(res.status, 403);
  assert.match(res.body, /--admin-token-file/);
  assert.match(res.body, /--admin-writes/);
  assert.is(await version(proxy), 'one', 'the running module still answers');
  assert.is((await call(proxy.adminPort, 'POST', '/logging?level=debug')).status, 403);
  assert.is(logLevelName(), 'info');
  // Reads stay open on loopback.
  for (const path of ['/stats/prometheus', '/config_dump', '/clusters', '/filters', '/server_info', '/ready', '/healthz', '/logging']) {
    assert.is((await call(proxy.adminPort, 'GET', path)).status, 200, path);
  }
});

test('the admin token: 401 without it, 403 with a wrong one, the right one swaps the module', async () => {
  const proxy = await start({ adminAccess: { token: TOKEN } });
  const missing = await upload(proxy.adminPort);
  assert.is(missing.status, 401);
  assert.match(missing.headers['www-authenticate'] ?? '', /Bearer/);
  assert.is((await upload(proxy.adminPort, bearer(`${TOKEN}x`))).status, 403);
  assert.is((await upload(proxy.adminPort, bearer(TOKEN.slice(0, -1)))).status, 403);
  assert.is(await version(proxy), 'one', 'refused writes changed nothing');
  const ok = await upload(proxy.adminPort, bearer(TOKEN));
  assert.is(ok.status, 200, ok.body);
  assert.is(await version(proxy), 'two');
  assert.is((await call(proxy.adminPort, 'DELETE', '/filters/module?plugin=versioned')).status, 401);
  assert.is((await call(proxy.adminPort, 'DELETE', '/filters/module?plugin=versioned', bearer(TOKEN))).status, 200);
  assert.is(await version(proxy), 'one');
});

test('browsers cannot drive admin: a foreign Origin, a cross-site fetch or a renamed Host is refused, token or not', async () => {
  const proxy = await start({ adminAccess: { token: TOKEN } });
  const port = proxy.adminPort;
  const foreign = await upload(port, { ...bearer(TOKEN), origin: 'http://evil.example' });
  assert.is(foreign.status, 403);
  assert.match(foreign.body, /Origin http:\/\/evil\.example/);
  assert.is((await upload(port, { ...bearer(TOKEN), origin: 'null' })).status, 403, 'Origin: null (a sandboxed page)');
  assert.is((await upload(port, { ...bearer(TOKEN), 'sec-fetch-site': 'cross-site' })).status, 403);
  assert.is(await version(proxy), 'one');
  // DNS rebinding: the page's own name resolves to 127.0.0.1, so the browser sends its Host.
  const rebound = await call(port, 'GET', '/config_dump', { host: `evil.example:${port}` });
  assert.is(rebound.status, 403);
  assert.match(rebound.body, /not to Host: evil\.example/);
  assert.is((await call(port, 'GET', '/config_dump', { host: 'evil.example' })).status, 403, 'with no port either');
  // Scrapers and scripts that name loopback without the port are not a browser attack.
  assert.is((await call(port, 'GET', '/stats/prometheus', { host: '127.0.0.1' })).status, 200, 'Host: 127.0.0.1 without a port');
  assert.is((await call(port, 'GET', '/config_dump', { origin: 'http://evil.example' })).status, 403, 'reads too');
  // The admin's own origin is not refused (an operator's browser on the admin page).
  const own = await upload(port, { ...bearer(TOKEN), origin: `http://localhost:${port}`, host: `localhost:${port}` });
  assert.is(own.status, 200, own.body);
  assert.is(await version(proxy), 'two');
});

test('writes a form or a plain fetch could send are refused: text/plain and typeless uploads, form-encoded and GET log levels', async () => {
  const proxy = await start({ adminAccess: { token: TOKEN } });
  const port = proxy.adminPort;
  const plain = await call(port, 'POST', '/filters/module?plugin=versioned', { ...bearer(TOKEN), 'content-type': 'text/plain' }, two);
  assert.is(plain.status, 415);
  assert.match(plain.body, /application\/wasm or application\/octet-stream, not text\/plain/);
  assert.is((await call(port, 'PUT', '/filters/module?plugin=versioned', bearer(TOKEN), two)).status, 415, 'no content-type');
  assert.is((await call(port, 'POST', '/filters/module?plugin=versioned', { ...bearer(TOKEN), 'content-type': 'multipart/form-data; boundary=x' }, two)).status, 415);
  assert.is(await version(proxy), 'one');
  assert.is((await upload(port, { ...bearer(TOKEN), 'content-type': 'application/octet-stream' })).status, 200);
  assert.is(await version(proxy), 'two');

  const before = logLevelName();
  try {
    const get = await call(port, 'GET', '/logging?level=debug');
    assert.is(get.status, 405);
    assert.match(get.body, /POST \/logging\?level=debug/);
    assert.is(logLevelName(), before, 'a GET changed nothing');
    assert.is((await call(port, 'POST', '/logging?level=debug', { ...bearer(TOKEN), 'content-type': 'application/x-www-form-urlencoded' }, 'a=b')).status, 415);
    assert.is(logLevelName(), before);
    const post = await call(port, 'POST', '/logging?level=debug', bearer(TOKEN));
    assert.is(post.status, 200, post.body);
    assert.is(logLevelName(), 'debug');
    assert.match((await call(port, 'GET', '/logging')).body, /level: debug/);
  } finally {
    setLogLevel(before);
  }
});

// ---- the command line: what operators (and kube-inject's arguments) run ----------------------

function meshYaml(appPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: app, namespace: default }
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${appPort} } }]
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: versioned, namespace: default }
spec:
  url: file://${one}
`;
}

interface Started {
  child: ChildProcess;
  stderr: () => string;
  match: RegExpExecArray;
}

/** `wasmesh proxy --config <mesh> ...args`, until `ready` shows in its log (or it exits). */
async function cli(args: string[], ready: RegExp): Promise<Started> {
  const config = join(dir, 'mesh.yaml');
  await writeFile(config, meshYaml(app.port));
  const child = spawn(process.execPath, ['scripts/wasmesh.mjs', 'proxy', '--config', config, '--workload', 'web', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--app-port', String(app.port), '--access-log', 'off', '--no-telemetry', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!ready.test(stderr) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const match = ready.exec(stderr);
  if (!match) throw new Error(`proxy not ready (exit ${child.exitCode}):\n${stderr}`);
  return { child, stderr: () => stderr, match };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

/** Exit code and stderr of a `wasmesh proxy` run expected to refuse to start. */
async function refusedStart(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'mesh.yaml'), '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  clearTimeout(timer);
  return { code, stderr };
}

const LISTENING = /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+), admin ([\d.]+):(\d+)/;

test('wasmesh proxy --host 0.0.0.0 --admin-writes: admin on 127.0.0.1, loopback writes without a token', async () => {
  const p = await cli(['--host', '0.0.0.0', '--admin-writes'], LISTENING);
  const inbound = Number(p.match[2]);
  const admin = Number(p.match[4]);
  assert.is(p.match[3], '127.0.0.1');
  const external = externalAddress();
  if (external) assert.is(await connect(external, admin), 'ECONNREFUSED');
  const served = async () => (await call(inbound, 'GET', '/')).headers['x-filter-version'];
  assert.is(await served(), 'one', p.stderr());
  const res = await upload(admin);
  assert.is(res.status, 200, res.body);
  assert.is(await served(), 'two');
  // --admin-writes does not open the door to browsers.
  assert.is((await call(admin, 'DELETE', '/filters/module?plugin=versioned', { origin: 'http://evil.example' })).status, 403);
  assert.is(await served(), 'two');
});

test('wasmesh proxy --concurrency 2 --host 0.0.0.0: the primary serves admin on loopback (and the status port), writes need the token file', async () => {
  const file = join(dir, 'admin-token');
  await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
  const p = await cli(['--host', '0.0.0.0', '--concurrency', '2', '--admin-token-file', file, '--status-port', '0'], /admin ([\d.]+):(\d+), status 0\.0\.0\.0:(\d+) \(primary, 2 workers\)/);
  assert.is(p.match[1], '127.0.0.1');
  const admin = Number(p.match[2]);
  const deadline = Date.now() + 30_000;
  while (!/2 workers listening/.test(p.stderr()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.is((await call(Number(p.match[3]), 'GET', '/ready')).status, 200, 'the primary serves the status port');
  assert.not.match(p.stderr(), /listening: outbound .*, status/, 'workers serve neither admin nor a status port of their own');
  const external = externalAddress();
  if (external) assert.is(await connect(external, admin), 'ECONNREFUSED');
  assert.is((await call(admin, 'POST', '/logging?level=debug')).status, 401);
  assert.is((await call(admin, 'POST', '/logging?level=warn', bearer(TOKEN))).status, 200);
  assert.match((await call(admin, 'GET', '/logging')).body, /level: warn/);
});

test('an admin token file others can read, or a short token, stops the proxy at start with the reason', async () => {
  await writeFile(join(dir, 'mesh.yaml'), meshYaml(app.port));
  const open = join(dir, 'open-token');
  await writeFile(open, `${TOKEN}\n`);
  await chmod(open, 0o644);
  const r = await refusedStart(['--admin-token-file', open]);
  assert.is(r.code, 2);
  assert.match(r.stderr, `--admin-token-file ${open}: permissions 0644 are too open`);
  assert.match(r.stderr, 'chmod 600');
  const short = join(dir, 'short-token');
  await writeFile(short, 'secret\n', { mode: 0o600 });
  const s = await refusedStart(['--admin-token-file', short]);
  assert.is(s.code, 2);
  assert.match(s.stderr, /the token has 6 characters, use at least 16/);
  const missing = await refusedStart(['--admin-token-file', join(dir, 'nope')]);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, /--admin-token-file .*nope: ENOENT/);
});

test.run();
