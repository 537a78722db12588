// `wasmesh proxy --config mesh.yaml` as a user runs it: a real process, its YAML file edited while it
// runs (a valid change applies without a restart, an invalid one is rejected and the last good config
// stays), and SIGTERM draining it to a clean exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { request, startHttp1, type TestServer } from './support/servers.ts';

let upstream: TestServer;
let dir: string;
let child: ChildProcess;
let stderr = '';
let ports: { outbound: number; inbound: number; admin: number };

function mesh(body: string, port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} }, labels: { version: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  http:
${body}
`;
}

const FORWARD = `  - route: [{ destination: { host: ratings.default.svc.cluster.local } }]`;
const DIRECT = `  - directResponse: { status: 418, body: { string: "short and stout" } }`;

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; proxy stderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test.before(async () => {
  upstream = await startHttp1('ratings-v1');
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-standalone-'));
  writeFileSync(join(dir, 'mesh.yaml'), mesh(FORWARD, upstream.port));
  child = spawn(process.execPath, ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'mesh.yaml'), '--workload', 'productpage', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--drain-timeout', '2000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  await waitFor('the proxy to listen', () => /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+), admin [\d.]+:(\d+)/.test(stderr), 30_000);
  const m = /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+), admin [\d.]+:(\d+)/.exec(stderr)!;
  ports = { outbound: Number(m[1]), inbound: Number(m[2]), admin: Number(m[3]) };
});

test.after(async () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

test('routes by the short service name to the ServiceEntry endpoint', async () => {
  const r = await request(ports.outbound, { path: '/ratings/0', headers: { host: 'ratings:9080' } });
  assert.is(r.status, 200, stderr);
  assert.is(JSON.parse(r.body).upstream, 'ratings-v1');
});

test('a valid edit applies without a restart', async () => {
  writeFileSync(join(dir, 'mesh.yaml'), mesh(DIRECT, upstream.port));
  await waitFor('the new route', async () => (await request(ports.outbound, { headers: { host: 'ratings.default.svc.cluster.local' } })).status === 418);
});

test('an invalid edit is rejected with the field path and the last good config keeps serving', async () => {
  const before = JSON.parse((await request(ports.admin, { path: '/config_dump' })).body).status.version;
  writeFileSync(join(dir, 'mesh.yaml'), mesh(`  - route: [{ destination: { host: ratings.default.svc.cluster.local }, weight: 50 }]\n    corsPolicy: { allowOrigins: [] }`, upstream.port));
  await waitFor('the rejection', () => stderr.includes('rejected'));
  assert.match(stderr, 'corsPolicy');
  const dump = JSON.parse((await request(ports.admin, { path: '/config_dump' })).body);
  assert.is(dump.status.version, before);
  assert.ok(dump.status.lastError.message.includes('corsPolicy'));
  const r = await request(ports.outbound, { headers: { host: 'ratings.default.svc.cluster.local' } });
  assert.is(r.status, 418, 'still the last good config');
});

test('SIGTERM drains and exits 0', async () => {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.is(await exited, 0);
  assert.match(stderr, 'SIGTERM: draining');
});

test('--concurrency 2: workers share the ports and the primary sums their stats', async () => {
  writeFileSync(join(dir, 'mesh.yaml'), mesh(DIRECT, upstream.port));
  const c = spawn(process.execPath, ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'mesh.yaml'), '--workload', 'productpage', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--concurrency', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    const workersUp = /2 workers listening: outbound [\d.]+:(\d+)/;
    const adminUp = /admin [\d.]+:(\d+) \(primary/;
    await waitFor('two workers and the admin', () => workersUp.test(err) && adminUp.test(err), 30_000);
    const outbound = Number(workersUp.exec(err)![1]);
    const admin = Number(adminUp.exec(err)![1]);
    for (let i = 0; i < 20; i++) assert.is((await request(outbound, { headers: { host: 'ratings.default.svc.cluster.local' } })).status, 418);
    const stats = (await request(admin, { path: '/stats/prometheus' })).body;
    assert.match(stats, /wasmesh_proxy_requests_total\{direction="outbound"\} 20\n/);
    const info = JSON.parse((await request(admin, { path: '/server_info' })).body);
    assert.is(info.workers, 2);
    const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
    c.kill('SIGTERM');
    assert.is(await exited, 0);
  } finally {
    if (c.exitCode === null) c.kill('SIGKILL');
  }
});

test.run();
