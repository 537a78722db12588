// Rollouts and stuck proxies, end to end: a real orchestrator (REST + gRPC on free loopback ports), a
// managed proxy in this process reporting every 200 ms, and, for silence, a second managed proxy as
// its own process (`wasmesh proxy --orchestrator`) that the test stops with SIGSTOP.
//   - a canary that loops forever on one path traps under the CPU budget (cause cpu_budget) and is
//     rolled back, while every other request keeps being served
//   - a proxy running the canary that goes silent holds the rollout, which then rolls back naming it
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { hashString } from '../../proxy-host/src/stable-hash.ts';
import { startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as filterDeploy } from '../../scripts/cli/filter-deploy.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import type { RolloutStatus } from '../../orchestrator/src/rollout/controller.ts';

const WASMESH = fileURLToPath(new URL('../../scripts/wasmesh.mjs', import.meta.url));
const quiet = { write: () => true };

const ctx = {} as {
  root: string;
  orch: RunningOrchestrator;
  admin: string;
  proxyTokenFile: string;
  app: TestServer;
  proxy?: Proxy;
  client: XdsClient;
};

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${ctx.orch.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ctx.admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** One request through the in-process proxy's inbound side (where the WasmPlugin runs). */
function call(id: string, path = '/'): Promise<{ status: number; version: string | undefined }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: ctx.proxy!.inboundPort, path, agent: false, headers: { 'x-request-id': id } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.headers['x-filter-version'] as string | undefined }));
    });
    req.on('error', () => resolve({ status: 0, version: undefined }));
    req.setTimeout(10_000, () => req.destroy());
    req.end();
  });
}

/** Requests to / at a steady pace until stopped (bounded by maxMs); what each request id got. */
function traffic(maxMs: number): { stop(): Promise<Array<{ id: string; status: number; version: string | undefined }>> } {
  const seen: Array<{ id: string; status: number; version: string | undefined }> = [];
  let running = true;
  let n = 0;
  const deadline = Date.now() + maxMs;
  const loops = [0, 1].map(async (k) => {
    while (running && Date.now() < deadline) {
      const id = `load-${k}-${n++}`;
      seen.push({ id, ...(await call(id)) });
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return seen;
    },
  };
}

/** The 50 % step sends a stream to the canary when this hash of its x-request-id is in the lower half. */
const onCanary = (id: string) => hashString(id) < 0x8000_0000;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, detail = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const rollout = async () => (await api<RolloutStatus>('GET', '/filters/default/stuck/rollout')).body;
const ended = (timeoutMs: number) => until('the rollout to end', async () => ((s) => (s.phase === 'Progressing' ? undefined : s))(await rollout()), timeoutMs);

async function deploy(file: string, version: string, uploadOnly: boolean): Promise<void> {
  const args = [file, '--name', 'stuck', '--version', version, ...(uploadOnly ? ['--upload-only'] : []), '--server', ctx.orch.url, '--token', ctx.admin];
  const err: string[] = [];
  const code = await filterDeploy(args, { out: quiet, err: { write: (t: string) => err.push(t) } });
  if (code !== 0) throw new Error(`filter deploy ${version}: ${err.join('')}`);
}

test.before(async () => {
  ctx.root = await mkdtemp(join(tmpdir(), 'wasmesh-rollout-stuck-'));
  const dataDir = join(ctx.root, 'orchestrator');
  ctx.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  const token = async (args: string[]) => {
    const out: string[] = [];
    if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error('token create failed');
    return out.join('').trim();
  };
  ctx.admin = await token(['--role', 'admin']);
  const proxyToken = await token(['--role', 'proxy', '--namespace', 'default', '--service-account', 'web']);
  ctx.proxyTokenFile = join(ctx.root, 'proxy-token');
  await writeFile(ctx.proxyTokenFile, proxyToken, { mode: 0o600 });
  const modules = { one: join(ctx.root, 'one.wasm'), loopy: join(ctx.root, 'loopy.wasm'), three: join(ctx.root, 'three.wasm') };
  await writeFile(modules.one, await versionModule('one'));
  await writeFile(modules.loopy, await versionModule('loopy', { loopOn: '/loop' }));
  await writeFile(modules.three, await versionModule('three'));
  await deploy(modules.one, '1.0.0', false);
  await deploy(modules.loopy, '2.0.0', true);
  await deploy(modules.three, '3.0.0', true);
  ctx.app = await startHttp1('app', (_req, res) => res.end('ok'));
  const workload: WorkloadIdentity = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
  ctx.client = new XdsClient({
    address: `127.0.0.1:${ctx.orch.grpcPort}`,
    token: proxyToken,
    workload,
    nodeId: 'web-in-process',
    dataDir: join(ctx.root, 'proxy'),
    backoff: { initialMs: 50, maxMs: 300 },
    statsIntervalMs: 200,
    filterStats: () => ctx.proxy?.canaryStats() ?? [],
    apply: async (config: ProxyConfig) => {
      if (ctx.proxy) return ctx.proxy.applyConfig(config);
      ctx.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: ctx.app.port, accessLog: 'off' }, config);
    },
  });
  ctx.client.start();
  await ctx.client.firstConfig();
  await until('version one to serve', async () => ((await call('probe')).version === 'one' ? true : undefined), 10_000);
});

test.after(async () => {
  await ctx.client?.stop();
  await ctx.proxy?.stop(0);
  await ctx.orch?.close();
  await ctx.app?.close();
  if (ctx.root) await rm(ctx.root, { recursive: true, force: true });
});

test('a canary that loops forever on one path traps (cpu_budget) and is rolled back; other requests keep flowing', async () => {
  const canaryIds = Array.from({ length: 200 }, (_, i) => `loop-${i}`).filter(onCanary).slice(0, 4);
  const load = traffic(60_000);
  let seen: Array<{ id: string; status: number; version: string | undefined }> = [];
  try {
    const started = await api<RolloutStatus>('POST', '/filters/default/stuck/rollout', { to: '2.0.0', steps: [50, 100], intervalMs: 30_000, maxTrapRateIncrease: 0 });
    assert.is(started.status, 202, JSON.stringify(started.body));
    await until('the canary on the proxy', async () => (ctx.proxy!.filters().inbound.some((f) => f.canary !== undefined) ? true : undefined), 10_000);
    // Each looping request ends in a trap (FAIL_CLOSE: 503), not a hang; once the rollout is rolled
    // back, the old version serves the path.
    const looped: Array<{ status: number; version: string | undefined }> = [];
    for (const id of canaryIds) looped.push(await call(id, '/loop'));
    assert.is(looped[0]!.status, 503);
    assert.ok(looped.every((l) => l.status === 503 || (l.status === 200 && l.version === 'one')), JSON.stringify(looped));
    const done = await ended(15_000);
    assert.is(done.phase, 'RolledBack', done.message);
    assert.match(done.message, /^rolled back automatically: the new version (trapped \d+ time\(s\)|failed repeatedly on web-in-process) \(cpu_budget: \d+\)/);
    assert.ok((done.canary?.trapCauses.cpu_budget ?? 0) >= 1);
  } finally {
    seen = await load.stop();
  }
  // Every request got an answer; the old version's never failed (streams caught on a trapping canary
  // VM, or sent to it while it is replaced, get 503 by its failStrategy).
  assert.ok(seen.length > 0 && seen.every((s) => s.status !== 0), 'no request hung or was refused');
  const stable = seen.filter((s) => !onCanary(s.id) || s.version === 'one');
  assert.ok(stable.length > 0 && stable.every((s) => s.status === 200), `the old version served all of its streams: ${[...new Set(stable.map((s) => s.status))].join(',')}`);
  await until('the canary to leave the proxy', async () => (ctx.proxy!.filters().inbound.every((f) => f.canary === undefined) ? true : undefined), 5000);
  assert.equal(await call(canaryIds[0]!, '/loop'), { status: 200, version: 'one' }, 'the old version serves /loop');
});

test('a proxy running the canary that goes silent holds the rollout, which rolls back naming it', async () => {
  const dataDir = join(ctx.root, 'web-b');
  const child: ChildProcess = spawn(
    process.execPath,
    [WASMESH, 'proxy', '--orchestrator', `127.0.0.1:${ctx.orch.grpcPort}`, '--token-file', ctx.proxyTokenFile, '--workload', 'web-b', '--labels', 'app=web', '--service-account', 'web', '--data-dir', dataDir, '--no-mtls', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await until('web-b to take its config', async () => (/config [0-9a-f]{12} applied|listening: outbound/.test(stderr) ? true : undefined), 40_000, () => stderr);
    // web-b reports every 2 s: silent after 3.5 s, rolled back after 10 s; steps of 5 s, so that a
    // step ends while it is silent.
    const started = await api<RolloutStatus>('POST', '/filters/default/stuck/rollout', { to: '3.0.0', steps: [50, 100], intervalMs: 5000, silentAfterMs: 3500, maxSilenceMs: 10_000 });
    assert.is(started.status, 202, JSON.stringify(started.body));
    // Both proxies were sent the canary; web-b reports on it (every 2 s) before it is stopped.
    await until('web-b to report on the canary', async () => ((await rollout()).canary?.proxies === 2 ? true : undefined), 15_000, () => stderr);
    assert.is((await rollout()).reporting?.expected, 2);
    process.kill(child.pid!, 'SIGSTOP');
    // Without it the two steps would be over in 10 s; it holds them instead.
    const waiting = await until('the rollout to wait for web-b', async () => ((s) => (/waits: proxy web-b\.default~/.test(s.message) || s.phase !== 'Progressing' ? s : undefined))(await rollout()), 20_000);
    assert.is(waiting.phase, 'Progressing', waiting.message);
    assert.is(waiting.reporting?.silent[0]?.node, waiting.message.match(/proxy (\S+)/)?.[1]);
    const done = await ended(15_000);
    assert.is(done.phase, 'RolledBack', done.message);
    assert.match(done.message, /^rolled back automatically: proxy web-b\.default~[^ ]+ stopped reporting during step [12] \(no report for \d+\.\d s\)$/);
    const filter = (await api<FilterStatusBody>('GET', '/filters/default/stuck')).body;
    assert.is(filter.current.version, '1.0.0', 'not promoted');
    assert.is(filter.canary, undefined);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
});

test.run();
