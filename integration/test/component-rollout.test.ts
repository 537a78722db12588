// A component filter through the orchestrator, end to end: a real orchestrator, a real managed proxy,
// traffic on loopback. A proxy-wasm version is serving; a JavaScript component (built by
// componentize-js in the test, cached by source hash) is deployed as the next version of the same
// WasmPlugin and takes over without a failed request; history says what it was made with; a
// rollback brings the proxy-wasm version back, again under traffic.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';
import { jsEverythingComponent } from '../../wasm/test/support/component.ts';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as filterDeploy } from '../../scripts/cli/filter-deploy.ts';
import { run as filterHistory } from '../../scripts/cli/filter-history.ts';
import { run as filterRollback } from '../../scripts/cli/filter-rollback.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';

const quiet = { write: () => true };
const ctx = {} as { root: string; orch: RunningOrchestrator; admin: string; app: TestServer; proxy?: Proxy; client: XdsClient; core: string; js: string };

async function cli(run: (argv: string[], io: { out: { write(t: string): unknown }; err: { write(t: string): unknown } }) => Promise<number>, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run([...args, '--server', ctx.orch.url, '--token', ctx.admin], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => err.push(t) } });
  return { code, out: out.join(''), err: err.join('') };
}

interface Answer {
  status: number;
  /** 'core' (x-filter-version: core), 'js' (the component's x-hits), or undefined. */
  servedBy: string | undefined;
}

function call(headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: ctx.proxy!.inboundPort, path: '/', agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy: res.headers['x-filter-version'] === 'core' ? 'core' : res.headers['x-hits'] !== undefined ? 'js' : undefined }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.end();
  });
}

function traffic(maxMs: number): { stop(): Promise<Answer[]> } {
  const seen: Answer[] = [];
  let running = true;
  const deadline = Date.now() + maxMs;
  const loops = [0, 1, 2].map(async () => {
    while (running && Date.now() < deadline) {
      seen.push(await call().catch(() => ({ status: 0, servedBy: undefined })));
      await new Promise((r) => setTimeout(r, 5));
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

async function servedBy(who: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if ((await call()).servedBy === who) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the proxy did not serve ${who} within 60 s`);
}

test.before(async () => {
  ctx.root = await mkdtemp(join(tmpdir(), 'wasmesh-component-rollout-'));
  const dataDir = join(ctx.root, 'orchestrator');
  ctx.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  const token = async (args: string[]) => {
    const out: string[] = [];
    if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error('token create failed');
    return out.join('').trim();
  };
  ctx.admin = await token(['--role', 'admin']);
  ctx.core = join(ctx.root, 'core.wasm');
  ctx.js = join(ctx.root, 'everything.wasm');
  await writeFile(ctx.core, await versionModule('core'));
  await writeFile(ctx.js, (await jsEverythingComponent()).bytes);
  const deployed = await cli(filterDeploy, [ctx.core, '--name', 'versioned', '--version', '1.0.0']);
  assert.is(deployed.code, 0, deployed.err);
  ctx.app = await startHttp1('app', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  const workload: WorkloadIdentity = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
  ctx.client = new XdsClient({
    address: `127.0.0.1:${ctx.orch.grpcPort}`,
    token: await token(['--role', 'proxy', '--namespace', 'default', '--service-account', 'web']),
    workload,
    dataDir: join(ctx.root, 'proxy'),
    backoff: { initialMs: 50, maxMs: 300 },
    // The canary's streams and traps, reported as a managed proxy does: what the rollout controller judges.
    statsIntervalMs: 200,
    filterStats: () => ctx.proxy?.canaryStats() ?? [],
    apply: async (config: ProxyConfig) => {
      if (ctx.proxy) return ctx.proxy.applyConfig(config);
      // As the CLI runs a managed proxy: component transpiles kept in its data dir.
      ctx.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: ctx.app.port, accessLog: 'off', componentCache: { dir: join(ctx.root, 'proxy', 'component-cache') } }, config);
    },
  });
  ctx.client.start();
  await ctx.client.firstConfig();
  await servedBy('core');
});

test.after(async () => {
  await ctx.client?.stop();
  await ctx.proxy?.stop(0);
  await ctx.orch?.close();
  await ctx.app?.close();
  if (ctx.root) await rm(ctx.root, { recursive: true, force: true });
});

test('a component deployed as the next version takes over under traffic, and a rollback brings the core module back: no request fails', async () => {
  const load = traffic(120_000);
  let answers: Answer[] = [];
  try {
    const deployed = await cli(filterDeploy, [ctx.js, '--name', 'versioned', '--version', '2.0.0']);
    assert.is(deployed.code, 0, deployed.err);
    await servedBy('js');
    const history = await cli(filterHistory, ['versioned']);
    assert.is(history.code, 0, history.err);
    assert.match(history.out, /2\.0\.0 .*JavaScript/, 'history says what the component was made with');
    const versioned = ctx.proxy!.filters().inbound.find((f) => f.plugin === 'default.versioned');
    assert.ok(versioned, `the inbound chain has the plugin: ${JSON.stringify(ctx.proxy!.filters().inbound.map((f) => f.plugin))}`);
    assert.is(versioned.stable.kind, 'component');
    const back = await cli(filterRollback, ['versioned']);
    assert.is(back.code, 0, back.err);
    await servedBy('core');
  } finally {
    answers = await load.stop();
  }
  assert.ok(answers.length >= 20, `${answers.length} requests`);
  assert.equal([...new Set(answers.map((a) => a.status))], [200], 'every answer was 200');
  assert.ok(answers.some((a) => a.servedBy === 'js') && answers.some((a) => a.servedBy === 'core'));
});

test('a component canary that spins on one kind of request is rolled back automatically, and the rest of the traffic keeps flowing', async () => {
  // After the test before, 1.0.0 (the core module) serves and 2.0.0 (the component) is known. The
  // component loops forever on `x-component: spin`: its CPU budget stops it, the canary's trap is
  // reported, and the controller rolls the canary back long before its 20 s step ends.
  await servedBy('core');
  const load = traffic(60_000);
  let spinning = true;
  const spins: Answer[] = [];
  const spinner = (async () => {
    for (let i = 0; spinning && i < 200; i++) {
      spins.push(await call({ 'x-component': 'spin', 'x-request-id': `spin-${i}` }).catch(() => ({ status: 0, servedBy: undefined })));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let answers: Answer[] = [];
  try {
    const started = await fetch(`${ctx.orch.url}/filters/default/versioned/rollout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ctx.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: '2.0.0', steps: [50, 100], intervalMs: 20_000 }),
    });
    assert.is(started.status, 202, await started.text());
    let done: { phase: string; message: string; canary?: { traps?: number } } | undefined;
    for (const until = Date.now() + 40_000; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      const res = await fetch(`${ctx.orch.url}/filters/default/versioned/rollout`, { headers: { authorization: `Bearer ${ctx.admin}` } });
      const s = (await res.json()) as NonNullable<typeof done>;
      if (s.phase !== 'Progressing') {
        done = s;
        break;
      }
    }
    assert.ok(done, 'the rollout ended within 40 s');
    assert.is(done!.phase, 'RolledBack', done!.message);
    assert.match(done!.message, /rolled back automatically: the new version (trapped|failed repeatedly)/);
    assert.ok((done!.canary?.traps ?? 0) > 0, 'the canary\'s traps were reported');
    // The proxy drops the canary: the core module serves everything again.
    for (const until = Date.now() + 10_000; Date.now() < until && !ctx.proxy!.filters().inbound.every((f) => f.canary === undefined); ) await new Promise((r) => setTimeout(r, 50));
    assert.ok(ctx.proxy!.filters().inbound.every((f) => f.canary === undefined), 'the canary left the proxy');
  } finally {
    spinning = false;
    await spinner;
    answers = await load.stop();
  }
  assert.ok(spins.some((a) => a.status === 503), `a spinning request met the canary and failed closed: ${JSON.stringify(spins.slice(0, 10))}`);
  assert.ok(answers.length >= 20, `${answers.length} requests`);
  const good = answers.filter((a) => a.status === 200).length;
  // Streams in flight on the component's instance when it trapped fail with it (FAIL_CLOSE); nothing else.
  assert.ok(good >= answers.length * 0.9, `${good} of ${answers.length} ordinary requests answered 200`);
  assert.ok(answers.some((a) => a.servedBy === 'js'), 'the canary served ordinary requests before its rollback');
  const after = await Promise.all([1, 2, 3, 4, 5].map(() => call()));
  assert.ok(after.every((a) => a.status === 200 && a.servedBy === 'core'), JSON.stringify(after));
});

test.run();
