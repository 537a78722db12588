// Managed mode never goes silently stale (issue 17): a resource that cannot apply to a proxy is
// refused at `apply` when the orchestrator can tell, and otherwise it is left out of (or stood in
// for in) that proxy's config while the rest still reaches it, and proxy-status says so.
//   1. A real orchestrator (REST + gRPC, SQLite), a managed proxy in this process, the CLI as a child
//      process: `wasmesh apply` refuses a file:// WasmPlugin; one already in the store (as an older
//      orchestrator would have let in) does not stop a later AuthorizationPolicy from taking effect.
//   2. The discovery service over a store, a managed proxy, and GET /proxy-status through
//      app.inject: a config that cannot be built at all is STALE with the reason, never SYNCED.
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
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
import type { ProxyStatusItem } from '../../orchestrator/src/http/proxy-status.ts';
import { buildApp } from '../../orchestrator/src/app.ts';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import type { ConfigStore, ResourceInput } from '../../orchestrator/src/store/types.ts';
import { startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';
import { wasmesh, waitFor, type CliResult } from '../../orchestrator/test/support/run-wasmesh.ts';

const quiet = { write: () => true };
const show = (r: CliResult): string => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const web: WorkloadIdentity = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };

const localPlugin = (failStrategy: 'FAIL_OPEN' | 'FAIL_CLOSE'): ResourceInput => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name: 'local-filter', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'web' } }, url: 'file:///opt/filters/local.wasm', failStrategy },
});
const pluginYaml = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: local-filter }
spec:
  selector:
    matchLabels: { app: web }
  url: file:///opt/filters/local.wasm
`;
const denyPrivateYaml = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-private }
spec:
  selector:
    matchLabels: { app: web }
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/private"] } }]
`;

/** A managed proxy for `web` in this process (Proxy + XdsClient, as `wasmesh proxy --orchestrator` wires them). */
async function managedProxy(grpcPort: number, token: string, appPort: number, dataDir: string, logs: string[]): Promise<{ proxy(): Proxy; client: XdsClient; stop(): Promise<void> }> {
  let proxy: Proxy | undefined;
  const client = new XdsClient({
    address: `127.0.0.1:${grpcPort}`,
    token,
    workload: web,
    nodeId: 'web-in-process',
    dataDir,
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      if (proxy) return proxy.applyConfig(config);
      proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off' }, config);
    },
    log: (level, message) => void logs.push(`proxy ${level} ${message}`),
  });
  client.start();
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([client.firstConfig(), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 10_000)))]);
  clearTimeout(timer);
  if (first === 'timeout' || !proxy) {
    await client.stop();
    throw new Error(`no first config within 10 s\n${logs.join('\n')}`);
  }
  return {
    proxy: () => proxy!,
    client,
    async stop() {
      await client.stop();
      await proxy?.stop(0);
    },
  };
}

const statusOf = async (port: number, path: string): Promise<number> => (await request(port, { path, headers: { host: 'web' } })).status;

// ---------------------------------------------------------------------------------------------
// 1. A real orchestrator, the CLI

const real = suite('managed: a resource a proxy cannot load is refused at apply, or left out without holding the rest back');
const r = {} as { root: string; orch: RunningOrchestrator; admin: string; app: TestServer; mp: Awaited<ReturnType<typeof managedProxy>>; logs: string[]; cli: (...args: string[]) => Promise<CliResult> };

real.before(async () => {
  r.root = await mkdtemp(join(tmpdir(), 'wasmesh-managed-problems-'));
  r.logs = [];
  const dataDir = join(r.root, 'orchestrator');
  r.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  const token = async (args: string[]): Promise<string> => {
    const out: string[] = [];
    if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error(`token create ${args.join(' ')} failed`);
    return out.join('').trim();
  };
  r.admin = await token(['--role', 'admin']);
  r.cli = (...args) => wasmesh([...args, '--server', r.orch.url, '--token', r.admin], { cwd: r.root });
  r.app = await startHttp1('web-app');
  r.mp = await managedProxy(r.orch.grpcPort!, await token(['--role', 'proxy', '--namespace', 'default', '--service-account', 'web']), r.app.port, join(r.root, 'proxy'), r.logs);
});

real.after(async () => {
  await r.mp?.stop();
  await r.orch?.close();
  await r.app?.close();
  if (r.root) await rm(r.root, { recursive: true, force: true });
});

const proxyStatus = async (): Promise<ProxyStatusItem> => {
  const res = await fetch(`${r.orch.url}/proxy-status`, { headers: { authorization: `Bearer ${r.admin}` } });
  return ((await res.json()) as { items: ProxyStatusItem[] }).items.find((p) => p.workload === 'web')!;
};

real('wasmesh apply refuses a file:// WasmPlugin, naming spec.url and saying to upload; nothing is written', async () => {
  await writeFile(join(r.root, 'plugin.yaml'), pluginYaml);
  const res = await r.cli('apply', '-f', 'plugin.yaml');
  assert.is(res.code, 1, show(res));
  assert.match(res.stderr, 'rejected, nothing was applied');
  assert.match(res.stderr, /WasmPlugin default\/local-filter \(plugin\.yaml#1 line 7\): spec\.url: file:\/\/ modules cannot be served to managed proxies/);
  assert.match(res.stderr, 'upload the module instead (`wasmesh filter deploy <module.wasm> --name NAME --version VERSION`)');
  assert.is(await r.orch.store.get('WasmPlugin', 'default', 'local-filter'), undefined);
});

real('a file:// WasmPlugin already in the store is left out (FAIL_OPEN); a later AuthorizationPolicy still takes effect; proxy-status says what was left out', async () => {
  const before = r.mp.proxy().config.version;
  // As an orchestrator before this check would have stored it.
  await r.orch.store.put(localPlugin('FAIL_OPEN'));
  await waitFor('the problem in proxy-status', async () => ((await proxyStatus()).problems?.length ?? 0) > 0, 3000);
  assert.is(await statusOf(r.mp.proxy().inboundPort, '/private'), 200);

  await writeFile(join(r.root, 'deny.yaml'), denyPrivateYaml);
  const applied = await r.cli('apply', '-f', 'deny.yaml');
  assert.is(applied.code, 0, show(applied));
  await waitFor('the AuthorizationPolicy on the proxy', async () => (await statusOf(r.mp.proxy().inboundPort, '/private')) === 403, 3000, () => r.logs.slice(-10).join('\n'));
  assert.is(await statusOf(r.mp.proxy().inboundPort, '/public'), 200);
  assert.is.not(r.mp.proxy().config.version, before);

  await waitFor('SYNCED', async () => (await proxyStatus()).status === 'SYNCED', 3000);
  const p = await proxyStatus();
  assert.equal(p.problems!.map((x) => [x.resource, x.path]), [['WasmPlugin default/local-filter', '/spec/url']]);
  assert.match(p.problems![0]!.message, 'left out (failStrategy FAIL_OPEN: its streams pass without it)');
  const table = await r.cli('proxy-status');
  assert.is(table.code, 0, show(table));
  assert.match(table.stdout, /\nweb\s+default\s+[0-9a-f]{12}\s+SYNCED\s/);
  assert.match(table.stdout, /\n {2}problem: WasmPlugin default\/local-filter spec\.url: "file:\/\/\/opt\/filters\/local\.wasm" is a file, and managed proxies load modules from the orchestrator only: upload it .*: left out/);
});

real('the same plugin failing closed denies the streams it would have filtered; deleting it restores them', async () => {
  await r.orch.store.put(localPlugin('FAIL_CLOSE'));
  await waitFor('the deny stand-in', async () => (await statusOf(r.mp.proxy().inboundPort, '/public')) === 403, 3000, () => r.logs.slice(-10).join('\n'));
  const denied = await request(r.mp.proxy().inboundPort, { path: '/public', headers: { host: 'web' } });
  assert.is(denied.body, 'RBAC: access denied');
  await waitFor('SYNCED with the new problem', async () => {
    const p = await proxyStatus();
    return p.status === 'SYNCED' && (p.problems?.[0]?.message.includes('every request it would filter is denied (403)') ?? false);
  }, 3000);

  const del = await r.cli('delete', 'wasmplugin', 'local-filter');
  assert.is(del.code, 0, show(del));
  await waitFor('the app again', async () => (await statusOf(r.mp.proxy().inboundPort, '/public')) === 200, 3000);
  assert.is(await statusOf(r.mp.proxy().inboundPort, '/private'), 403, 'the AuthorizationPolicy stays');
  await waitFor('no problem left', async () => (await proxyStatus()).problems === undefined, 3000);
});

real.run();

// ---------------------------------------------------------------------------------------------
// 2. A config that cannot be built: STALE with the reason (GET /proxy-status through app.inject)

const stale = suite('managed: a config the orchestrator cannot build is STALE with the reason, never SYNCED');
const s = {} as { root: string; store: ConfigStore; xds: XdsServer; app: ReturnType<typeof buildApp>; admin: string; upstream: TestServer; mp: Awaited<ReturnType<typeof managedProxy>>; logs: string[] };

stale.before(async () => {
  s.root = await mkdtemp(join(tmpdir(), 'wasmesh-managed-stale-'));
  s.logs = [];
  // The built-in filters of this checkout without the policy filter: a FAIL_CLOSE plugin that cannot
  // be served then has nothing to fail closed with, and the config cannot be built.
  const filters = join(s.root, 'filters');
  await mkdir(join(filters, 'telemetry'), { recursive: true });
  await cp(fileURLToPath(new URL('../../filters/telemetry/build/', import.meta.url)), join(filters, 'telemetry', 'build'), { recursive: true });
  s.store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  s.admin = tokens.create('admin');
  const proxyToken = tokens.create('proxy', { namespace: 'default', serviceAccount: 'web' });
  s.xds = await startXdsServer({ store: s.store, tokens, host: '127.0.0.1', port: 0, filtersDir: filters, log: (level, message) => void s.logs.push(`orchestrator ${level} ${message}`) });
  s.app = buildApp({ store: s.store, tokens, proxyStatus: () => s.xds.proxies() });
  await s.app.ready();
  s.upstream = await startHttp1('web-app');
  s.mp = await managedProxy(s.xds.port, proxyToken, s.upstream.port, join(s.root, 'proxy'), s.logs);
});

stale.after(async () => {
  await s.mp?.stop();
  await s.app?.close();
  await s.xds?.close();
  await s.upstream?.close();
  if (s.root) await rm(s.root, { recursive: true, force: true });
});

const status = async (): Promise<ProxyStatusItem> => {
  const res = await s.app.inject({ method: 'GET', url: '/proxy-status', headers: { authorization: `Bearer ${s.admin}` } });
  assert.is(res.statusCode, 200, res.body);
  return res.json<{ items: ProxyStatusItem[] }>().items.find((p) => p.workload === 'web')!;
};

stale('STALE with the reason while the latest config cannot be built; the proxy keeps its config; SYNCED once it can be', async () => {
  await waitFor('SYNCED', async () => (await status()).status === 'SYNCED', 3000);
  const running = s.mp.proxy().config.version;
  await s.store.put(localPlugin('FAIL_CLOSE'));
  await waitFor('STALE', async () => (await status()).status === 'STALE', 3000, () => s.logs.slice(-5).join('\n'));
  const p = await status();
  assert.is(p.acked, running, 'the proxy still runs what it had');
  assert.match(p.buildErrors!.join('\n'), /^WasmPlugin default\/local-filter: its module cannot be served and the filter that would deny its streams instead is missing: cannot read .*policy\.wasm/);
  assert.match(p.reason!, /^the orchestrator cannot build this proxy's latest config: WasmPlugin default\/local-filter: .*; it runs [0-9a-f]{12}$/);
  assert.equal(p.problems?.map((x) => x.resource), ['WasmPlugin default/local-filter']);
  // It stays STALE: a retry does not turn it SYNCED behind the operator's back.
  await new Promise((res) => setTimeout(res, 2500));
  assert.is((await status()).status, 'STALE');
  assert.is(s.mp.proxy().config.version, running);
  assert.is(await statusOf(s.mp.proxy().inboundPort, '/'), 200);
  assert.ok(s.logs.some((l) => l.startsWith('orchestrator warn') && l.includes('cannot be built')));

  await s.store.delete('WasmPlugin', 'default', 'local-filter');
  await waitFor('SYNCED again', async () => {
    const q = await status();
    return q.status === 'SYNCED' && q.reason === undefined && q.buildErrors === undefined;
  }, 5000);
});

stale.run();
