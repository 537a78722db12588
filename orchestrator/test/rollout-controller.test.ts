// The rollout controller and deploy history through the REST API (buildApp + inject, a real store),
// fed with proxy reports in the wire format the discovery service receives them in.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FastifyInstance } from 'fastify';
import { versionModule } from '../../wasm/test/support/version-module.ts';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import type { FilterStatusBody } from '../src/http/filters.ts';
import { CanaryStats } from '../src/rollout/canary-stats.ts';
import type { RolloutStatus } from '../src/rollout/controller.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { ModuleRecord } from '../src/store/types.ts';

const tokens = TokenStore.inMemory();
const admin = tokens.create('admin');
const headers = { authorization: `Bearer ${admin}` };
const quietLog = () => {};

interface Ctx {
  store: MemoryStore;
  stats: CanaryStats;
  app: FastifyInstance;
  modules: Record<string, ModuleRecord>;
}

/** What the discovery service says about a connected proxy (GET /proxy-status items): its node and canaries. */
interface Connected {
  node: string;
  canaries?: Array<{ plugin: string; sha256: string }>;
}

async function setup(store = new MemoryStore(), stats = new CanaryStats(), connected?: () => Connected[]): Promise<Ctx> {
  const app = buildApp({ store, tokens, canaryStats: stats, rolloutLog: quietLog, ...(connected ? { proxyStatus: connected } : {}) });
  await app.ready();
  const modules: Record<string, ModuleRecord> = {};
  for (const [version, tag] of [['1.0.0', 'one'], ['2.0.0', 'two']] as const) {
    const existing = (await store.listModules('web')).find((m) => m.version === version);
    if (existing) {
      modules[version] = existing;
      continue;
    }
    const res = await app.inject({ method: 'POST', url: `/modules?name=web&version=${version}`, headers: { ...headers, 'content-type': 'application/wasm' }, payload: Buffer.from(await versionModule(tag)) });
    assert.is(res.statusCode, 201, res.body);
    modules[version] = res.json() as ModuleRecord;
  }
  return { store, stats, app, modules };
}

function plugin(sha256: string, annotations: Record<string, string> = {}) {
  return {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'WasmPlugin',
    metadata: { name: 'web', namespace: 'default', annotations },
    spec: { url: `digest:sha256:${sha256}` },
  };
}

async function put(ctx: Ctx, body: unknown): Promise<void> {
  const res = await ctx.app.inject({ method: 'PUT', url: '/apis/wasmplugins/default/web', headers, payload: body as object });
  assert.ok(res.statusCode === 200 || res.statusCode === 201, res.body);
}

const rollout = async (ctx: Ctx) => (await ctx.app.inject({ method: 'GET', url: '/filters/default/web/rollout', headers })).json() as RolloutStatus;
const status = async (ctx: Ctx) => (await ctx.app.inject({ method: 'GET', url: '/filters/default/web', headers })).json() as FilterStatusBody;

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A proxy's report: cumulative counters for both versions of default/web (and the canary's trap causes and stalls). */
function report(ctx: Ctx, node: string, stable: [number, number, number], canary: [number, number, number], bad = false, extra: { trapsByCause?: Record<string, number>; stalls?: number } = {}): void {
  const entry = (sha256: string, isCanary: boolean, [streams, failed, traps]: [number, number, number]) => ({
    plugin: 'default/web',
    sha256,
    canary: isCanary,
    streams: String(streams),
    failed_streams: String(failed),
    traps: String(traps),
    bad: isCanary && bad,
    traps_by_cause: isCanary ? Object.fromEntries(Object.entries(extra.trapsByCause ?? {}).map(([k, v]) => [k, String(v)])) : {},
    stalls: String(isCanary ? (extra.stalls ?? 0) : 0),
  });
  ctx.stats.record({ node_id: node, config_version: 'v', filters: [entry(ctx.modules['1.0.0']!.sha256, false, stable), entry(ctx.modules['2.0.0']!.sha256, true, canary)] });
}

/** Reports zero traffic for `node` every 50 ms until stopped: a quiet proxy, alive. */
function keepReporting(ctx: Ctx, node: string): () => void {
  const timer = setInterval(() => report(ctx, node, [0, 0, 0], [0, 0, 0]), 50);
  return () => clearInterval(timer);
}

test('history: a module change is recorded with its cause; a settings change and a forged history are not', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256, { 'wasmesh.io/change-cause': 'first' }));
    await put(ctx, { ...plugin(ctx.modules['1.0.0']!.sha256), spec: { url: `digest:sha256:${ctx.modules['1.0.0']!.sha256}`, pluginConfig: { a: 1 } } });
    await put(ctx, plugin(ctx.modules['2.0.0']!.sha256, { 'wasmesh.io/change-cause': 'second', 'wasmesh.io/deploy-history': '[{"url":"forged","at":"x","by":"me"}]' }));
    const s = await status(ctx);
    const by = s.history[0]!.by;
    assert.match(by, /^admin:/, 'the writer is recorded by role and token id');
    assert.equal(
      s.history.map((h) => [h.version, h.cause, h.by]),
      [
        ['1.0.0', 'first', by],
        ['2.0.0', 'second', by],
      ],
    );
    assert.equal(s.versions.map((v) => [v.version, v.current]), [['1.0.0', false], ['2.0.0', true]]);
  } finally {
    await ctx.app.close();
  }
});

test('rollout requests are checked: steps, unknown and current versions, a second rollout', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    const post = (body: object) => ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: body });
    const steps = await post({ to: '2.0.0', steps: [50, 20] });
    assert.is(steps.statusCode, 400);
    assert.match(steps.body, /steps must be increasing percentages/);
    const unknown = await post({ to: '9.0.0' });
    assert.is(unknown.statusCode, 400);
    assert.match(unknown.body, /web@9\.0\.0 has not been uploaded \(have: 1\.0\.0, 2\.0\.0\)/);
    const same = await post({ to: '1.0.0' });
    assert.is(same.statusCode, 409);
    assert.is((await post({ to: '2.0.0', intervalMs: 60_000 })).statusCode, 202);
    const second = await post({ to: '2.0.0' });
    assert.is(second.statusCode, 409);
    const missing = await ctx.app.inject({ method: 'POST', url: '/filters/default/nope/rollout', headers, payload: { to: '2.0.0' } });
    assert.is(missing.statusCode, 404);
  } finally {
    await ctx.app.close();
  }
});

test('a canary failing more of its streams than the old version is rolled back once it has enough streams', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    report(ctx, 'proxy-a', [500, 1, 0], [0, 0, 0]); // before the rollout: part of the baseline
    const started = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [20, 100], intervalMs: 60_000, minStreams: 20 } });
    assert.is(started.statusCode, 202, started.body);
    assert.equal((await status(ctx)).canary?.weight, 20);
    // 5 failures out of 10: alarming, but under minStreams: no verdict yet.
    report(ctx, 'proxy-a', [540, 1, 0], [10, 5, 0]);
    assert.is((await rollout(ctx)).phase, 'Progressing');
    // Two proxies now: 12 of 30 failed (40 %) against 0 of 80 since the rollout began.
    report(ctx, 'proxy-b', [40, 0, 0], [20, 7, 0]);
    await until('the rollback', async () => (await rollout(ctx)).phase === 'RolledBack');
    const r = await rollout(ctx);
    assert.match(r.message, /failed 40\.0% of 30 streams \(5xx or reset\) vs 0\.0% for the old one/);
    assert.is(r.canary?.proxies, 2);
    assert.is(r.stable?.streams, 80, 'the stable counters count from the rollout start');
    const s = await status(ctx);
    assert.is(s.canary, undefined, 'the canary is removed');
    assert.is(s.current.version, '1.0.0');
  } finally {
    await ctx.app.close();
  }
});

test('a version marked bad on a proxy is rolled back at once; a proxy that restarted counts from zero', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    report(ctx, 'proxy-a', [100, 0, 0], [50, 0, 0]);
    await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [50, 100], intervalMs: 60_000 } });
    // proxy-a restarted: its counters went down, so they count in full.
    report(ctx, 'proxy-a', [3, 0, 0], [2, 0, 0], true);
    await until('the rollback', async () => (await rollout(ctx)).phase === 'RolledBack');
    const r = await rollout(ctx);
    assert.match(r.message, /failed repeatedly on proxy-a/);
    assert.is(r.canary?.streams, 2);
  } finally {
    await ctx.app.close();
  }
});

test('a rollout interrupted by a restart resumes and completes; abort removes the canary', async () => {
  const store = new MemoryStore();
  let ctx = await setup(store);
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [10, 60, 100], intervalMs: 300 } });
    await until('step 2', async () => (await rollout(ctx)).weight === 60);
    await ctx.app.close();
    ctx = await setup(store);
    assert.is((await rollout(ctx)).phase, 'Progressing');
    await until('the rollout to finish', async () => (await rollout(ctx)).phase === 'Succeeded');
    const s = await status(ctx);
    assert.is(s.current.version, '2.0.0');
    assert.is(s.canary, undefined);
    assert.match(s.history.at(-1)!.cause ?? '', /rollout to web@2\.0\.0 \(steps 10,60,100%\)/);

    // Back to 1.0.0 by rollback, then a rollout that is aborted.
    const back = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollback', headers, payload: {} });
    assert.is(back.statusCode, 200, back.body);
    assert.is((back.json() as FilterStatusBody).current.version, '1.0.0');
    await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', intervalMs: 60_000 } });
    const aborted = await ctx.app.inject({ method: 'DELETE', url: '/filters/default/web/rollout', headers });
    assert.is(aborted.statusCode, 200);
    assert.is((aborted.json() as RolloutStatus).phase, 'Aborted');
    const after = await status(ctx);
    assert.is(after.canary, undefined);
    assert.is(after.current.version, '1.0.0');
  } finally {
    await ctx.app.close();
  }
});

test('trap causes are named in the rollback; stalls of a proxy running the canary roll back', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [50, 100], intervalMs: 60_000 } });
    report(ctx, 'proxy-a', [10, 0, 0], [10, 2, 2], false, { trapsByCause: { cpu_budget: 2 } });
    await until('the rollback', async () => (await rollout(ctx)).phase === 'RolledBack');
    assert.match((await rollout(ctx)).message, /the new version trapped 2 time\(s\) \(cpu_budget: 2\) in 10 streams/);

    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    const again = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [50, 100], intervalMs: 60_000 } });
    assert.is(again.statusCode, 202, again.body);
    // proxy-b joins with a stall since it loaded the new version; no failure at all otherwise.
    report(ctx, 'proxy-b', [10, 0, 0], [10, 0, 0], false, { stalls: 1 });
    await until('the rollback', async () => (await rollout(ctx)).phase === 'RolledBack');
    assert.match((await rollout(ctx)).message, /rolled back automatically: proxy proxy-b's event loop stalled 1 time\(s\) while it ran the new version \(step 1\)/);
  } finally {
    await ctx.app.close();
  }
});

test('a quiet proxy (no streams, but reporting) does not hold a rollout', async () => {
  const ctx = await setup(new MemoryStore(), new CanaryStats(), () => [{ node: 'quiet', canaries: [{ plugin: 'default/web', sha256: ctx.modules['2.0.0']!.sha256 }] }]);
  const stop = keepReporting(ctx, 'quiet');
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    const started = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [50, 100], intervalMs: 300, silentAfterMs: 400, maxSilenceMs: 2000 } });
    assert.is(started.statusCode, 202, started.body);
    const live = await rollout(ctx);
    assert.equal(live.reporting, { expected: 1, silent: [] });
    await until('the rollout to finish', async () => (await rollout(ctx)).phase !== 'Progressing');
    const r = await rollout(ctx);
    assert.is(r.phase, 'Succeeded', r.message);
  } finally {
    stop();
    await ctx.app.close();
  }
});

test('a silent proxy holds its step, the step moves on when it reports again, and one that disconnects rolls back naming it', async () => {
  const canaries = () => [{ plugin: 'default/web', sha256: ctx.modules['2.0.0']!.sha256 }];
  let connected: Connected[] = [];
  const ctx = await setup(new MemoryStore(), new CanaryStats(), () => connected);
  connected = [{ node: 'quiet', canaries: canaries() }, { node: 'flaky', canaries: canaries() }];
  const stopQuiet = keepReporting(ctx, 'quiet');
  let stopFlaky = keepReporting(ctx, 'flaky');
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    const started = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', steps: [50, 100], intervalMs: 600, silentAfterMs: 250, maxSilenceMs: 2500 } });
    assert.is(started.statusCode, 202, started.body);
    // flaky stops reporting but stays connected (a stopped process): step 1 waits past its interval.
    stopFlaky();
    await until('step 1 to wait', async () => /^step 1 of 2 waits: proxy flaky has not reported for \d+\.\d s; rolled back at 2\.5 s$/.test((await rollout(ctx)).message), 3000);
    const waiting = await rollout(ctx);
    assert.is(waiting.step, 0);
    assert.is(waiting.reporting?.silent[0]?.node, 'flaky');
    assert.is(waiting.reporting?.silent[0]?.connected, true);
    // It reports again: the step moves on.
    stopFlaky = keepReporting(ctx, 'flaky');
    await until('step 2', async () => (await rollout(ctx)).step === 1, 3000);
    // Now it leaves (its stream ends, its reports stop): silence, then a rollback naming it.
    stopFlaky();
    connected = connected.filter((p) => p.node !== 'flaky');
    await until('the rollback', async () => (await rollout(ctx)).phase !== 'Progressing', 6000);
    const r = await rollout(ctx);
    assert.is(r.phase, 'RolledBack', r.message);
    assert.match(r.message, /^rolled back automatically: proxy flaky stopped reporting during step 2 \(no report for \d+\.\d s; it disconnected\)$/);
    assert.is((await status(ctx)).canary, undefined, 'the canary is removed');
  } finally {
    stopFlaky();
    stopQuiet();
    await ctx.app.close();
  }
});

test('silence thresholds are checked', async () => {
  const ctx = await setup();
  try {
    await put(ctx, plugin(ctx.modules['1.0.0']!.sha256));
    const res = await ctx.app.inject({ method: 'POST', url: '/filters/default/web/rollout', headers, payload: { to: '2.0.0', silentAfterMs: 5000, maxSilenceMs: 1000 } });
    assert.is(res.statusCode, 400);
    assert.match(res.body, /maxSilenceMs \(1000\) must be at least silentAfterMs \(5000\)/);
  } finally {
    await ctx.app.close();
  }
});

test.run();
