// Module versions through the orchestrator, end to end: a real orchestrator (REST + gRPC on free
// loopback ports), a real managed proxy reporting its filters' outcomes, real traffic on loopback,
// and the CLI commands (filter deploy / history / rollback / status / rollout) run in this process.
//   - deploy two versions, history records both with causes, rollback goes to the one before
//   - a canary rollout under traffic goes through its steps and promotes the new version
//   - a canary that traps is rolled back automatically, and the old version keeps every stream
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
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
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as filterDeploy } from '../../scripts/cli/filter-deploy.ts';
import { run as filterHistory } from '../../scripts/cli/filter-history.ts';
import { run as filterRollback } from '../../scripts/cli/filter-rollback.ts';
import { run as filterRollout } from '../../scripts/cli/filter-rollout.ts';
import { run as filterStatus } from '../../scripts/cli/filter-status.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import type { RolloutStatus } from '../../orchestrator/src/rollout/controller.ts';

const quiet = { write: () => true };

const ctx = {} as {
  root: string;
  orch: RunningOrchestrator;
  admin: string;
  app: TestServer;
  proxy?: Proxy;
  client: XdsClient;
  files: Record<'one' | 'two' | 'trap' | 'broken', string>;
};

async function cli(run: (argv: string[], io: { out: { write(t: string): unknown }; err: { write(t: string): unknown } }) => Promise<number>, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run([...args, '--server', ctx.orch.url, '--token', ctx.admin], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => err.push(t) } });
  return { code, out: out.join(''), err: err.join('') };
}

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${ctx.orch.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ctx.admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** One request through the proxy's inbound side (where the WasmPlugin runs); the version that answered. */
function call(id: string): Promise<{ status: number; version: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: ctx.proxy!.inboundPort, path: '/', agent: false, headers: { 'x-request-id': id } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.headers['x-filter-version'] as string | undefined }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.end();
  });
}

/** Traffic at a steady pace until stopped (bounded by `maxMs`); collects what answered. */
function traffic(maxMs: number): { stop(): Promise<Array<{ status: number; version: string | undefined }>> } {
  const seen: Array<{ status: number; version: string | undefined }> = [];
  let running = true;
  let n = 0;
  const deadline = Date.now() + maxMs;
  const loops = [0, 1, 2, 3].map(async (k) => {
    while (running && Date.now() < deadline) {
      seen.push(await call(`load-${k}-${n++}`).catch(() => ({ status: 0, version: undefined })));
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

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const servedBy = (version: string) => until(`the proxy to serve ${version}`, async () => ((await call(`probe-${Date.now()}`)).version === version ? true : undefined), 10_000);

test.before(async () => {
  ctx.root = await mkdtemp(join(tmpdir(), 'wasmesh-rollout-'));
  const dataDir = join(ctx.root, 'orchestrator');
  ctx.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  const token = async (args: string[]) => {
    const out: string[] = [];
    if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error('token create failed');
    return out.join('').trim();
  };
  ctx.admin = await token(['--role', 'admin']);
  ctx.files = { one: join(ctx.root, 'one.wasm'), two: join(ctx.root, 'two.wasm'), trap: join(ctx.root, 'trap.wasm'), broken: join(ctx.root, 'broken.wasm') };
  await writeFile(ctx.files.one, await versionModule('one'));
  await writeFile(ctx.files.two, await versionModule('two'));
  await writeFile(ctx.files.trap, await versionModule('trap', { trap: true }));
  await writeFile(ctx.files.broken, await versionModule('broken', { failStart: true }));
  // Version 1.0.0 is deployed before the proxy starts; 2.0.0 and 3.0.0 (the one that traps) are uploaded only.
  const deployed = await cli(filterDeploy, [ctx.files.one, '--name', 'versioned', '--version', '1.0.0']);
  assert.is(deployed.code, 0, deployed.err);
  for (const [file, version] of [[ctx.files.two, '2.0.0'], [ctx.files.trap, '3.0.0'], [ctx.files.broken, '4.0.0']] as const) {
    const r = await cli(filterDeploy, [file, '--name', 'versioned', '--version', version, '--upload-only']);
    assert.is(r.code, 0, r.err);
  }
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
    statsIntervalMs: 200,
    filterStats: () => ctx.proxy?.canaryStats() ?? [],
    apply: async (config: ProxyConfig) => {
      if (ctx.proxy) return ctx.proxy.applyConfig(config);
      ctx.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: ctx.app.port, accessLog: 'off' }, config);
    },
  });
  ctx.client.start();
  await ctx.client.firstConfig();
  await servedBy('one');
});

test.after(async () => {
  await ctx.client?.stop();
  await ctx.proxy?.stop(0);
  await ctx.orch?.close();
  await ctx.app?.close();
  if (ctx.root) await rm(ctx.root, { recursive: true, force: true });
});

test('deploy records the history; rollback goes back to the version before, or to --to', async () => {
  const deployed = await cli(filterDeploy, [ctx.files.two, '--name', 'versioned', '--version', '2.0.0']);
  assert.is(deployed.code, 0, deployed.err);
  await servedBy('two');

  const history = await cli(filterHistory, ['versioned']);
  assert.is(history.code, 0, history.err);
  assert.match(history.out, /versioned@1\.0\.0 .*filter deploy versioned@1\.0\.0/);
  assert.match(history.out, /versioned@2\.0\.0 .*filter deploy versioned@2\.0\.0/);
  assert.match(history.out, /2\.0\.0 .*serving/);
  assert.match(history.out, /3\.0\.0/, 'uploaded versions are listed too');

  const back = await cli(filterRollback, ['versioned']);
  assert.is(back.code, 0, back.err);
  assert.match(back.out, /rolled back to versioned@1\.0\.0/);
  await servedBy('one');
  const status = (await api<FilterStatusBody>('GET', '/filters/default/versioned')).body;
  assert.is(status.current.version, '1.0.0');
  assert.equal(
    status.history.map((h) => [h.version, h.cause]),
    [
      ['1.0.0', 'filter deploy versioned@1.0.0'],
      ['2.0.0', 'filter deploy versioned@2.0.0'],
      ['1.0.0', 'rollback to versioned@1.0.0'],
    ],
  );
  const unknown = await cli(filterRollback, ['versioned', '--to', '9.9.9']);
  assert.is(unknown.code, 1);
  assert.match(unknown.err, /versioned@9\.9\.9 has not been uploaded \(versions: 1\.0\.0, 2\.0\.0, 3\.0\.0, 4\.0\.0\)/);
});

test('usage errors name what is wrong and exit 2', async () => {
  const noTo = await cli(filterRollout, ['versioned']);
  assert.is(noTo.code, 2);
  assert.match(noTo.err, /--to VERSION is required/);
  const badSteps = await cli(filterRollout, ['versioned', '--to', '2.0.0', '--steps', '10,abc']);
  assert.is(badSteps.code, 2);
  assert.match(badSteps.err, /--steps must be percentages/);
  const badInterval = await cli(filterRollout, ['versioned', '--to', '2.0.0', '--interval', 'soon']);
  assert.is(badInterval.code, 2);
  assert.match(badInterval.err, /--interval must be a duration like 30s/);
  const noName = await cli(filterHistory, []);
  assert.is(noName.code, 2);
  assert.match(noName.err, /missing the WasmPlugin NAME/);
  const unknownPlugin = await cli(filterStatus, ['nope']);
  assert.is(unknownPlugin.code, 1);
  assert.match(unknownPlugin.err, /WasmPlugin default\/nope.*no such WasmPlugin/s);
});

test('a canary rollout under traffic moves through its steps and promotes the new version', async () => {
  const load = traffic(30_000);
  try {
    // The CLI starts it and follows it to the end (a block per step when not on a terminal).
    const rollout = cli(filterRollout, ['versioned', '--to', '2.0.0', '--steps', '30,100', '--interval', '1500ms', '--min-streams', '5']);
    await until('the rollout to start', async () => ((await api<RolloutStatus>('GET', '/filters/default/versioned/rollout')).body.phase === 'Progressing' ? true : undefined), 5000);
    // A second rollout while this one runs is refused.
    const again = await api<{ errors: Array<{ message: string }> }>('POST', '/filters/default/versioned/rollout', { to: '3.0.0' });
    assert.is(again.status, 409);
    assert.match(again.body.errors[0]!.message, /in progress/);
    const r = await rollout;
    assert.is(r.code, 0, r.err + r.out);
    assert.match(r.out, /rollout of default\/versioned to versioned@2\.0\.0 started: steps 30,100%, 1\.5s each/);
    assert.match(r.out, /\[█{7}░{17}\]  30% of streams on the new version, step 1\/2/);
    assert.match(r.out, /Succeeded/);
    assert.match(r.out, /default\/versioned now runs versioned@2\.0\.0/);
    const done = (await api<RolloutStatus>('GET', '/filters/default/versioned/rollout')).body;
    assert.is(done.phase, 'Succeeded', done.message);
    assert.ok((done.canary?.streams ?? 0) > 0, 'the proxy reported the new version');
  } finally {
    const seen = await load.stop();
    assert.ok(seen.every((s) => s.status === 200), 'no request failed during the rollout');
    assert.ok(seen.some((s) => s.version === 'one') && seen.some((s) => s.version === 'two'), 'both versions served during the rollout');
  }
  await servedBy('two');
  const status = (await api<FilterStatusBody>('GET', '/filters/default/versioned')).body;
  assert.is(status.current.version, '2.0.0');
  assert.is(status.canary, undefined);
  assert.match(status.history.at(-1)!.cause ?? '', /rollout to versioned@2\.0\.0/);
});

test('a canary that traps is rolled back automatically and the old version keeps serving', async () => {
  const load = traffic(30_000);
  let seen: Array<{ status: number; version: string | undefined }> = [];
  try {
    const started = await api<RolloutStatus>('POST', '/filters/default/versioned/rollout', { to: '3.0.0', steps: [50, 100], intervalMs: 20_000 });
    assert.is(started.status, 202, JSON.stringify(started.body));
    const done = await until('the automatic rollback', async () => {
      const s = (await api<RolloutStatus>('GET', '/filters/default/versioned/rollout')).body;
      return s.phase === 'Progressing' ? undefined : s;
    }, 15_000);
    assert.is(done.phase, 'RolledBack');
    assert.match(done.message, /rolled back automatically: the new version (trapped|failed repeatedly)/);
    assert.ok((done.canary?.traps ?? 0) > 0);
  } finally {
    seen = await load.stop();
  }
  // The proxy drops the canary: every stream is on the old version again.
  await until('the canary to leave the proxy', async () => (ctx.proxy!.filters().inbound.every((f) => f.canary === undefined) ? true : undefined), 5000);
  const after = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => call(`after-${i}`)));
  assert.ok(after.every((a) => a.status === 200 && a.version === 'two'));
  assert.ok(seen.some((s) => s.status === 503), 'the canary did fail streams before the rollback');
  const status = await cli(filterStatus, ['versioned']);
  assert.is(status.code, 0);
  assert.match(status.out, /serving: versioned@2\.0\.0/);
  assert.match(status.out, /RolledBack/);
  // The proxy's module cache keeps what its config references, and nothing else. It is cleaned
  // after the config is applied and saved, so a moment after the canary leaves the proxy.
  const listCache = async () => new Set((await readdir(join(ctx.root, 'proxy', 'modules', 'sha256'))).map((f) => f.slice(0, 64)));
  const digest = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');
  const trap = await digest(ctx.files.trap);
  const cached = await until('the module cache to drop the rolled back canary', async () => {
    const c = await listCache();
    return c.has(trap) ? undefined : c;
  }, 5000).catch(listCache);
  assert.ok(cached.has(await digest(ctx.files.two)), 'the serving module is cached');
  assert.not.ok(cached.has(await digest(ctx.files.one)), 'a module no config references is gone');
  assert.not.ok(cached.has(trap), 'the rolled back canary is gone');
});

test('a new version the proxies cannot start is NACKed, rolled back automatically, and never served', async () => {
  const load = traffic(30_000);
  let seen: Array<{ status: number; version: string | undefined }> = [];
  try {
    const started = await api<RolloutStatus>('POST', '/filters/default/versioned/rollout', { to: '4.0.0', steps: [50, 100], intervalMs: 20_000 });
    assert.is(started.status, 202, JSON.stringify(started.body));
    const done = await until('the automatic rollback', async () => {
      const s = (await api<RolloutStatus>('GET', '/filters/default/versioned/rollout')).body;
      return s.phase === 'Progressing' ? undefined : s;
    }, 15_000);
    assert.is(done.phase, 'RolledBack');
    assert.match(done.message, /proxy web\.default~.* refused the new version: WasmPlugin default\/versioned: .*proxy_on_vm_start returned false/);
  } finally {
    seen = await load.stop();
  }
  assert.ok(seen.length > 0 && seen.every((s) => s.status === 200 && s.version === 'two'), 'the old version served every request');
  assert.is((await api<FilterStatusBody>('GET', '/filters/default/versioned')).body.canary, undefined);
});

test.run();
