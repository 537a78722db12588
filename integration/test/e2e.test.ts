// End to end: real orchestrators (startOrchestrator: REST + gRPC on free loopback ports), real
// proxies in managed mode (Proxy + XdsClient in this process, as `wasmesh proxy --orchestrator`
// wires them), real upstreams, and the CLI as child processes.
//   1. An apply through the REST API changes a running proxy's routing within one second;
//      proxy-status says SYNCED; a WasmPlugin whose module traps in on_configure is NACKED with the
//      reason while the proxy keeps routing by the previous config.
//   2. Two orchestrator replicas on one etcd, a proxy on each: one apply through replica A changes
//      routing on both.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import type { ProxyStatusItem } from '../../orchestrator/src/http/proxy-status.ts';
import { ensureEtcd } from '../../orchestrator/test/support/etcd.ts';
import { wasmesh, waitFor, type CliResult } from '../../orchestrator/test/support/run-wasmesh.ts';

const HOST = 'ratings.default.svc.cluster.local';
const quiet = { write: () => true };
const show = (r: CliResult): string => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

const meshYaml = (v1: number, v2: number, subset: string): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${v1} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${v2} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
${routeYaml(subset)}`;

function routeYaml(subset: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  http: [{ route: [{ destination: { host: ${HOST}, subset: ${subset} } }] }]
`;
}

/** A filter module whose proxy_on_configure traps (unreachable): the proxy cannot start it. */
function trappingModule(): Promise<Uint8Array> {
  return wat2wasm(
    guestModule({
      body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (unreachable))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))`,
    }),
  );
}

async function apiToken(dataDir: string, args: string[]): Promise<string> {
  const out: string[] = [];
  const code = await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet);
  if (code !== 0) throw new Error(`token create ${args.join(' ')} failed`);
  return out.join('').trim();
}

async function applyYaml(orch: RunningOrchestrator, token: string, yaml: string): Promise<void> {
  const res = await fetch(`${orch.url}/apply`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' }, body: yaml });
  if (res.status !== 200) throw new Error(`apply: ${res.status} ${await res.text()}`);
}

async function proxyStatus(orch: RunningOrchestrator, token: string): Promise<ProxyStatusItem[]> {
  const res = await fetch(`${orch.url}/proxy-status`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`proxy-status: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { items: ProxyStatusItem[] }).items;
}

/** A managed proxy: Proxy + XdsClient, as `wasmesh proxy --orchestrator` runs them. */
interface ManagedProxy {
  proxy(): Proxy;
  client: XdsClient;
  logs: string[];
  upstream(): Promise<string>;
  stop(): Promise<void>;
}

async function startManagedProxy(grpcPort: number, token: string, workload: WorkloadIdentity, dataDir: string): Promise<ManagedProxy> {
  let proxy: Proxy | undefined;
  const logs: string[] = [];
  const client = new XdsClient({
    address: `127.0.0.1:${grpcPort}`,
    token,
    workload,
    dataDir,
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      if (proxy) return proxy.applyConfig(config);
      proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
    },
    log: (level, message) => void logs.push(`${workload.name} ${level} ${message}`),
  });
  client.start();
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([client.firstConfig(), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 10_000)))]);
  clearTimeout(timer);
  if (first === 'timeout' || !proxy) {
    await client.stop();
    await proxy?.stop(0);
    throw new Error(`${workload.name}: no first config within 10 s\n${logs.join('\n')}`);
  }
  return {
    proxy: () => proxy!,
    client,
    logs,
    async upstream() {
      const r = await request(proxy!.outboundPort, { path: '/ratings/1', headers: { host: HOST } });
      return r.status === 200 ? (JSON.parse(r.body) as { upstream: string }).upstream : `status ${r.status}`;
    },
    async stop() {
      await client.stop();
      await proxy?.stop(0);
    },
  };
}

const workload = (name: string): WorkloadIdentity => ({ name, namespace: 'default', labels: { app: name }, serviceAccount: name });

// ---------------------------------------------------------------------------------------------
// 1. One orchestrator, one proxy

const single = suite('one orchestrator, one managed proxy');
const s = {} as {
  root: string;
  orch: RunningOrchestrator;
  admin: string;
  v1: TestServer;
  v2: TestServer;
  mp: ManagedProxy;
  cli: (...args: string[]) => Promise<CliResult>;
};

// uvu swallows an error thrown by a before hook (the suite then reports 0 / n and passes): keep it
// and fail every test with it instead.
function guarded(setup: () => Promise<void>, holder: { error?: unknown }): () => Promise<void> {
  return async () => {
    try {
      await setup();
    } catch (err) {
      holder.error = err;
      process.stderr.write(`setup failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    }
  };
}
function checkSetup(holder: { error?: unknown }): void {
  if (holder.error) throw new Error(`setup failed: ${holder.error instanceof Error ? holder.error.message : String(holder.error)}`);
}

const singleSetup: { error?: unknown } = {};
single.before.each(() => checkSetup(singleSetup));
single.before(guarded(async () => {
  s.root = await mkdtemp(join(tmpdir(), 'wasmesh-e2e-'));
  const dataDir = join(s.root, 'orchestrator');
  s.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  s.admin = await apiToken(dataDir, ['--role', 'admin']);
  s.cli = (...args) => wasmesh([...args, '--server', s.orch.url, '--token', s.admin], { cwd: s.root });
  s.v1 = await startHttp1('ratings-v1');
  s.v2 = await startHttp1('ratings-v2');
  // The starting config goes in through the CLI, before any proxy runs.
  await writeFile(join(s.root, 'mesh.yaml'), meshYaml(s.v1.port, s.v2.port, 'v1'));
  const applied = await s.cli('apply', '-f', 'mesh.yaml');
  if (applied.code !== 0) throw new Error(`wasmesh apply failed\n${show(applied)}`);
  const proxyToken = await apiToken(dataDir, ['--role', 'proxy', '--namespace', 'default', '--service-account', 'productpage']);
  s.mp = await startManagedProxy(s.orch.grpcPort!, proxyToken, workload('productpage'), join(s.root, 'proxy'));
}, singleSetup));

single.after(async () => {
  await s.mp?.stop();
  await s.orch?.close();
  await Promise.all([s.v1?.close(), s.v2?.close()]);
  if (s.root) await rm(s.root, { recursive: true, force: true });
});

single('the proxy routes by the config applied with wasmesh apply', async () => {
  // The proxy may have connected inside the cache's debounce window after the apply (first a
  // snapshot without the route, then the update): a bounded wait.
  await waitFor('routing to v1', async () => (await s.mp.upstream()) === 'ratings-v1', 3000, () => s.mp.logs.slice(-10).join('\n'));
  await waitFor('SYNCED', async () => (await proxyStatus(s.orch, s.admin))[0]?.status === 'SYNCED', 3000);
});

single('an apply through the REST API changes routing within one second', async () => {
  const before = s.mp.proxy().config.version;
  const started = Date.now();
  await applyYaml(s.orch, s.admin, routeYaml('v2'));
  const elapsed = await waitFor('routing to v2', async () => (await s.mp.upstream()) === 'ratings-v2', 3000, () => s.mp.logs.slice(-10).join('\n'));
  const total = Date.now() - started;
  process.stdout.write(`\n  apply -> proxy routes by it: ${total} ms (after the API answered: ${elapsed} ms)\n`);
  assert.ok(total < 1000, `took ${total} ms`);
  assert.is.not(s.mp.proxy().config.version, before);
  for (let i = 0; i < 5; i++) assert.is(await s.mp.upstream(), 'ratings-v2');
});

single('proxy-status: SYNCED, over REST and in the CLI table', async () => {
  const version = s.mp.proxy().config.version;
  await waitFor('SYNCED', async () => (await proxyStatus(s.orch, s.admin))[0]?.status === 'SYNCED', 3000);
  const [p] = await proxyStatus(s.orch, s.admin);
  assert.is(p!.workload, 'productpage');
  assert.is(p!.namespace, 'default');
  assert.is(p!.acked, version);
  assert.is(p!.sent?.version, version);
  assert.ok(p!.node.length > 0);
  assert.ok(Date.parse(p!.lastPush!) > 0 && Date.parse(p!.connectedSince!) > 0);
  assert.is(p!.nacked, undefined);

  const r = await s.cli('proxy-status');
  assert.is(r.code, 0, show(r));
  const [header, row, ...rest] = r.stdout.trim().split('\n');
  assert.match(header!, /^PROXY\s+NAMESPACE\s+VERSION\s+STATUS\s+LAST PUSH\s+CONNECTED\s+NODE$/);
  assert.match(row!, new RegExp(`^productpage\\s+default\\s+${version.slice(0, 12)}\\s+SYNCED\\s+\\d+s ago\\s+\\d+s\\s+\\S+`));
  assert.is(rest.length, 0);
});

single('a WasmPlugin whose module traps in on_configure is NACKED with the reason; the old config keeps routing', async () => {
  const before = s.mp.proxy().config.version;
  await writeFile(join(s.root, 'trap.wasm'), await trappingModule());
  const deploy = await s.cli('filter', 'deploy', 'trap.wasm', '--name', 'trapper', '--version', '1.0.0');
  assert.is(deploy.code, 0, show(deploy));
  assert.match(deploy.stdout, 'wasmplugin default/trapper created');

  await waitFor('NACKED', async () => (await proxyStatus(s.orch, s.admin))[0]?.status === 'NACKED', 5000, () => s.mp.logs.slice(-10).join('\n'));
  const [p] = await proxyStatus(s.orch, s.admin);
  assert.ok(p!.nacked!.message.length > 0);
  assert.match(p!.nacked!.message, 'trapper');
  assert.is(p!.acked, before, 'the proxy says it still runs the previous version');
  assert.is(s.mp.proxy().config.version, before);
  for (let i = 0; i < 3; i++) assert.is(await s.mp.upstream(), 'ratings-v2', 'still routing by the previous config');

  const r = await s.cli('proxy-status');
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /productpage\s+default\s+[0-9a-f]{12}\s+NACKED\s+/);
  assert.match(r.stdout, new RegExp(`\\n  NACK ${p!.nacked!.version.slice(0, 12)}: .*trapper`));
  assert.match(r.stdout, `  still running ${before.slice(0, 12)}`);

  // Removing the plugin is a new version: it applies and the proxy is SYNCED again.
  const del = await s.cli('delete', 'wasmplugin', 'trapper');
  assert.is(del.code, 0, show(del));
  await waitFor('SYNCED again', async () => (await proxyStatus(s.orch, s.admin))[0]?.status === 'SYNCED', 5000);
  assert.is(await s.mp.upstream(), 'ratings-v2');
});

single.run();

// ---------------------------------------------------------------------------------------------
// 2. Two replicas on one etcd

const ETCD_SH = fileURLToPath(new URL('../../scripts/etcd.sh', import.meta.url));
const etcdBin = ensureEtcd();
const replicas = suite('two orchestrator replicas on one etcd');
const r = {} as {
  etcd?: { url: string; pid: number; dir: string };
  root: string;
  a: RunningOrchestrator;
  b: RunningOrchestrator;
  adminA: string;
  adminB: string;
  v1: TestServer;
  v2: TestServer;
  pa: ManagedProxy;
  pb: ManagedProxy;
};

function sh(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Without FORCE_COLOR (the test runner sets it): etcd.sh picks ports with `node -e console.log(port)`,
    // which would print the port as an ANSI-colored number.
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.FORCE_COLOR;
    execFile('bash', [ETCD_SH, ...args], { timeout: timeoutMs, encoding: 'utf8', env }, (err, stdout, stderr) => (err ? reject(new Error(`etcd.sh ${args[0]}: ${err.message}\n${stderr}`)) : resolve({ stdout, stderr })));
  });
}

const killEtcd = (): void => {
  if (r.etcd) {
    try {
      process.kill(r.etcd.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
};

if (!etcdBin.bin) {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!! SKIPPING the two-replica end-to-end test: ${etcdBin.reason}\n!! CI must install etcd: bash scripts/etcd.sh install\n${line}\n\n`);
} else {
  const replicasSetup: { error?: unknown } = {};
  replicas.before.each(() => checkSetup(replicasSetup));
  replicas.before(guarded(async () => {
    const started = await sh(['start'], 30_000);
    const vars = Object.fromEntries(started.stdout.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
    r.etcd = { url: vars.ETCD_URL!, pid: Number(vars.ETCD_PID), dir: vars.ETCD_DIR! };
    process.once('exit', killEtcd);
    const store = r.etcd.url.replace(/^http:/, 'etcd:');
    r.root = await mkdtemp(join(tmpdir(), 'wasmesh-e2e-replicas-'));
    const start = (name: string) =>
      startOrchestrator({ dataDir: join(r.root, name), store, listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
    r.a = await start('a');
    r.b = await start('b');
    // Each replica keeps its own tokens (in its data dir); the config is shared through etcd.
    r.adminA = await apiToken(join(r.root, 'a'), ['--role', 'admin']);
    r.adminB = await apiToken(join(r.root, 'b'), ['--role', 'admin']);
    r.v1 = await startHttp1('ratings-v1');
    r.v2 = await startHttp1('ratings-v2');
    await applyYaml(r.a, r.adminA, meshYaml(r.v1.port, r.v2.port, 'v1'));
    const tokenA = await apiToken(join(r.root, 'a'), ['--role', 'proxy', '--namespace', 'default', '--service-account', 'web-a']);
    const tokenB = await apiToken(join(r.root, 'b'), ['--role', 'proxy', '--namespace', 'default', '--service-account', 'web-b']);
    r.pa = await startManagedProxy(r.a.grpcPort!, tokenA, workload('web-a'), join(r.root, 'proxy-a'));
    r.pb = await startManagedProxy(r.b.grpcPort!, tokenB, workload('web-b'), join(r.root, 'proxy-b'));
  }, replicasSetup));

  replicas.after(async () => {
    await Promise.allSettled([r.pa?.stop(), r.pb?.stop()]);
    await Promise.allSettled([r.a?.close(), r.b?.close()]);
    await Promise.allSettled([r.v1?.close(), r.v2?.close()]);
    if (r.etcd) {
      await sh(['stop', String(r.etcd.pid), r.etcd.dir], 15_000).catch((err: unknown) => process.stderr.write(`${(err as Error).message}\n`));
      process.removeListener('exit', killEtcd);
    }
    if (r.root) await rm(r.root, { recursive: true, force: true });
  });

  replicas('both proxies start from the config written through replica A', async () => {
    // B learns of A's write through its etcd watch; a proxy that connected to B first may get B's
    // earlier snapshot and then the update: bounded waits, not a single look.
    await waitFor('proxy on A routing to v1', async () => (await r.pa.upstream()) === 'ratings-v1', 3000, () => r.pa.logs.slice(-10).join('\n'));
    await waitFor('proxy on B routing to v1', async () => (await r.pb.upstream()) === 'ratings-v1', 3000, () => r.pb.logs.slice(-10).join('\n'));
  });

  replicas('one wasmesh apply through replica A changes routing on the proxies of A and B', async () => {
    await writeFile(join(r.root, 'v2.yaml'), routeYaml('v2'));
    const applied = await wasmesh(['apply', '-f', 'v2.yaml', '--server', r.a.url, '--token', r.adminA], { cwd: r.root });
    assert.is(applied.code, 0, show(applied));
    assert.is(applied.stdout, 'virtualservice default/ratings configured\n');
    const done = Date.now();
    await Promise.all([
      waitFor('proxy on A routing to v2', async () => (await r.pa.upstream()) === 'ratings-v2', 5000, () => r.pa.logs.slice(-10).join('\n')),
      waitFor('proxy on B routing to v2', async () => (await r.pb.upstream()) === 'ratings-v2', 5000, () => r.pb.logs.slice(-10).join('\n')),
    ]);
    process.stdout.write(`\n  apply via A -> proxies on A and B route by it: ${Date.now() - done} ms after the CLI exited\n`);

    // Each replica reports its own proxy, SYNCED; B serves the resource A wrote.
    await waitFor('both SYNCED', async () => (await proxyStatus(r.a, r.adminA))[0]?.status === 'SYNCED' && (await proxyStatus(r.b, r.adminB))[0]?.status === 'SYNCED', 3000);
    assert.equal((await proxyStatus(r.a, r.adminA)).map((p) => p.workload), ['web-a']);
    const status = await wasmesh(['proxy-status', '--server', r.b.url, '--token', r.adminB], { cwd: r.root });
    assert.is(status.code, 0, show(status));
    assert.match(status.stdout, /web-b\s+default\s+[0-9a-f]{12}\s+SYNCED/, show(status));
    const got = await wasmesh(['get', 'vs', 'ratings', '-o', 'json', '--server', r.b.url, '--token', r.adminB], { cwd: r.root });
    assert.is(got.code, 0, show(got));
    assert.match(got.stdout, '"subset": "v2"');
  });

  replicas.run();
}
