// A managed proxy keeps its identity: a real orchestrator (REST + gRPC + CA) and two `wasmesh proxy
// --orchestrator` processes (productpage calls reviews, STRICT mesh-wide, reviews registered as a
// sidecar endpoint). Both keep their key (0600), chain and bundle in their data dir. The orchestrator
// stops, both proxies restart: they serve from their cached config and their kept certificates, and
// STRICT mTLS keeps working (before issue 14 they came back without a certificate and answered
// plaintext).
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { WASMESH } from '../../orchestrator/test/support/run-wasmesh.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';
const quiet = { write: () => true };

interface Ports {
  inbound: number;
  outbound: number;
  admin: number;
}

interface ProxyProcess {
  child: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

let root = '';
let orch: RunningOrchestrator | undefined;
let app: TestServer;
const running = new Set<ProxyProcess>();

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function ports(): Promise<Ports> {
  return { inbound: await freePort(), outbound: await freePort(), admin: await freePort() };
}

async function token(dataDir: string, args: string[]): Promise<string> {
  const out: string[] = [];
  if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error(`token create ${args.join(' ')} failed`);
  return out.join('').trim();
}

function startProxy(args: string[]): ProxyProcess {
  const child = spawn(process.execPath, [WASMESH, 'proxy', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const p: ProxyProcess = {
    child,
    log: () => log,
    stop: () =>
      new Promise<void>((resolve) => {
        running.delete(p);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
  running.add(p);
  return p;
}

function proxyArgs(name: string, p: Ports, tokenFile: string, grpcPort: number, extra: string[] = []): string[] {
  return [
    '--orchestrator', `127.0.0.1:${grpcPort}`,
    '--token-file', tokenFile,
    '--workload', name,
    '--inbound-port', String(p.inbound),
    '--outbound-port', String(p.outbound),
    '--admin-port', String(p.admin),
    '--data-dir', join(root, `proxy-${name}`),
    '--first-config-timeout', '3000',
    '--access-log', 'off',
    ...extra,
  ];
}

async function until(what: string, check: () => Promise<boolean>, proxies: ProxyProcess[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${proxies.map((p) => p.log().split('\n').slice(-15).join('\n')).join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ready = async (p: Ports): Promise<{ status: number; body: string }> => request(p.admin, { path: '/ready' });
const callReviews = (productpage: Ports) => request(productpage.outbound, { path: '/reviews/1', headers: { host: REVIEWS } });

test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wasmesh-identity-restart-'));
  app = await startHttp1('reviews-app');
});

test.after(async () => {
  for (const p of [...running]) await p.stop();
  await orch?.close();
  await app?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

test('managed proxies restarted while the orchestrator is down reuse their kept certificates: STRICT keeps working', async () => {
  const dataDir = join(root, 'orchestrator');
  orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  const admin = await token(dataDir, ['--role', 'admin']);
  const mesh = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [${REVIEWS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: reviews } }
`;
  const applied = await fetch(`${orch.url}/apply`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' }, body: mesh });
  assert.is(applied.status, 200, await applied.text());
  for (const sa of ['reviews', 'productpage']) await writeFile(join(root, `${sa}.token`), await token(dataDir, ['--role', 'proxy', '--namespace', 'default', '--service-account', sa]), { mode: 0o600 });
  const grpcPort = orch.grpcPort!;
  const reviewsPorts = await ports();
  const productpagePorts = await ports();
  const reviewsArgs = proxyArgs('reviews', reviewsPorts, join(root, 'reviews.token'), grpcPort, ['--app-port', String(app.port), '--register-port', `http=${reviewsPorts.inbound}`]);
  const productpageArgs = proxyArgs('productpage', productpagePorts, join(root, 'productpage.token'), grpcPort);

  let reviews = startProxy(reviewsArgs);
  let productpage = startProxy(productpageArgs);
  await until('productpage to reach reviews over mTLS', async () => (await callReviews(productpagePorts)).status === 200, [reviews, productpage]);
  assert.is(JSON.parse((await callReviews(productpagePorts)).body).upstream, 'reviews-app');
  const plain = await request(reviewsPorts.inbound, { path: '/', headers: { host: REVIEWS } }).catch((err: Error) => err);
  assert.instance(plain, Error, 'STRICT: plaintext refused, so the 200 was mTLS');
  for (const name of ['reviews', 'productpage']) {
    const keyFile = join(root, `proxy-${name}`, 'identity', 'key.pem');
    await until(`${name}'s kept key`, async () => statSync(keyFile, { throwIfNoEntry: false }) !== undefined, [reviews, productpage]);
    assert.is(statSync(keyFile).mode & 0o777, 0o600, `${keyFile} mode`);
  }

  // The orchestrator goes away; both proxies restart.
  await Promise.all([reviews.stop(), productpage.stop()]);
  await orch.close();
  orch = undefined;
  reviews = startProxy(reviewsArgs);
  productpage = startProxy(productpageArgs);
  await until('reviews to be ready (STRICT with its kept certificate)', async () => (await ready(reviewsPorts)).status === 200, [reviews, productpage]);
  await until('productpage to reach reviews again', async () => (await callReviews(productpagePorts)).status === 200, [reviews, productpage]);
  assert.is(JSON.parse((await callReviews(productpagePorts)).body).upstream, 'reviews-app');
  const plainAgain = await request(reviewsPorts.inbound, { path: '/', headers: { host: REVIEWS } }).catch((err: Error) => err);
  assert.instance(plainAgain, Error, 'still STRICT: no plaintext after the restart');
  for (const p of [reviews, productpage]) {
    assert.match(p.log(), /using the workload certificate spiffe:\/\/cluster.local\/ns\/default\/sa\/\w+ kept in/);
    assert.match(p.log(), /serving the cached config/);
  }
  await Promise.all([reviews.stop(), productpage.stop()]);
});

test.run();
