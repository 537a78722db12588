// Namespace-scoped editor tokens through the REST API (app.inject) and the CLI: an editor writes
// and reads its own namespace only, uploads modules (mesh-wide, content-addressed) and deploys,
// rolls out and rolls back WasmPlugins of its namespace; everything else is 403 naming the
// namespace, and a refused request changes nothing.
import { suite, test } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { stringify } from 'yaml';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { authenticate } from '../src/xds/auth.ts';
import { startOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { goodModule } from './support/wasm.ts';
import { wasmesh } from './support/run-wasmesh.ts';

interface Ctx {
  app: FastifyInstance;
  store: MemoryStore;
  tokens: TokenStore;
  admin: string;
  viewer: string;
  editor: string;
}

const api = suite<Ctx>('editor tokens through the REST API', {} as Ctx);

api.before.each(async (ctx) => {
  ctx.store = new MemoryStore();
  ctx.tokens = TokenStore.inMemory();
  ctx.admin = ctx.tokens.create('admin');
  ctx.viewer = ctx.tokens.create('viewer');
  ctx.editor = ctx.tokens.create('editor', { namespace: 'team-a' });
  ctx.app = buildApp({ store: ctx.store, tokens: ctx.tokens, rolloutLog: () => {} });
  await ctx.app.ready();
});

api.after.each(async (ctx) => {
  await ctx.app.close();
  await ctx.store.close();
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

const serviceEntry = (name: string, namespace?: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, ...(namespace ? { namespace } : {}) },
  spec: {
    hosts: [`${name}.${namespace ?? 'default'}.svc.cluster.local`],
    ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
    resolution: 'STATIC',
    endpoints: [{ address: '10.0.0.1' }],
  },
});
const wasmPlugin = (name: string, namespace: string, url: string) => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name, namespace },
  spec: { url },
});
const meshWidePolicy = {
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'default', namespace: 'istio-system' },
  spec: { mtls: { mode: 'DISABLE' } },
};

type Answer = { statusCode: number; body: string; json<T>(): T };
const messages = (r: Answer) => r.json<{ errors: Array<{ document: string; message: string }> }>().errors;

async function call(ctx: Ctx, token: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown): Promise<Answer> {
  const headers: Record<string, string> = auth(token);
  if (Buffer.isBuffer(payload)) headers['content-type'] = 'application/wasm';
  return ctx.app.inject({ method, url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
}

async function upload(ctx: Ctx, token: string, name: string, version: string, salt: number): Promise<Answer> {
  return call(ctx, token, 'POST', `/modules?name=${name}&version=${version}`, Buffer.from(await goodModule(salt)));
}

api('an editor creates, replaces, applies and deletes resources in its namespace', async (ctx) => {
  const created = await call(ctx, ctx.editor, 'POST', '/apis/serviceentries', serviceEntry('web', 'team-a'));
  assert.is(created.statusCode, 201, created.body);
  const replaced = await call(ctx, ctx.editor, 'PUT', '/apis/serviceentries/team-a/web', serviceEntry('web', 'team-a'));
  assert.is(replaced.statusCode, 200, replaced.body);
  const applied = await call(ctx, ctx.editor, 'POST', '/apply', [serviceEntry('api', 'team-a'), serviceEntry('db', 'team-a')]);
  assert.is(applied.statusCode, 200, applied.body);
  assert.is((await call(ctx, ctx.editor, 'DELETE', '/apis/serviceentries/team-a/db')).statusCode, 200);
  assert.equal((await ctx.store.list('ServiceEntry')).map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort(), ['team-a/api', 'team-a/web']);
});

api('an editor cannot write another namespace, the root namespace or mesh-wide; refused writes change nothing', async (ctx) => {
  assert.is((await call(ctx, ctx.admin, 'POST', '/apis/serviceentries', serviceEntry('shop', 'team-b'))).statusCode, 201);
  const before = JSON.stringify(await ctx.store.list('ServiceEntry'));

  const post = await call(ctx, ctx.editor, 'POST', '/apis/serviceentries', serviceEntry('x', 'team-b'));
  assert.is(post.statusCode, 403);
  assert.match(messages(post)[0]!.message, 'an editor token of namespace team-a cannot write in namespace team-b');
  assert.is(messages(post)[0]!.document, 'ServiceEntry team-b/x');
  const put = await call(ctx, ctx.editor, 'PUT', '/apis/serviceentries/team-b/shop', serviceEntry('shop', 'team-b'));
  assert.is(put.statusCode, 403);
  assert.match(messages(put)[0]!.message, 'namespace team-b');
  assert.is((await call(ctx, ctx.editor, 'DELETE', '/apis/serviceentries/team-b/shop')).statusCode, 403);
  // A document without a namespace lands in "default", which is not the editor's either.
  const unnamed = await call(ctx, ctx.editor, 'POST', '/apis/serviceentries', serviceEntry('y'));
  assert.is(unnamed.statusCode, 403);
  assert.match(messages(unnamed)[0]!.message, 'namespace default');

  // /apply is all or nothing: one foreign document refuses the whole request, naming it.
  const mixed = await call(ctx, ctx.editor, 'POST', '/apply', [serviceEntry('ok', 'team-a'), serviceEntry('sneaky', 'team-b')]);
  assert.is(mixed.statusCode, 403);
  assert.equal(messages(mixed).map((e) => e.document), ['ServiceEntry team-b/sneaky (apply#2)']);
  assert.is(await ctx.store.get('ServiceEntry', 'team-a', 'ok'), undefined, 'nothing of the request was written');

  const root = await call(ctx, ctx.editor, 'POST', '/apply', [meshWidePolicy]);
  assert.is(root.statusCode, 403);
  assert.match(messages(root)[0]!.message, /cannot write in namespace istio-system \(istio-system is the root namespace: what is there applies mesh-wide\)/);
  const rotate = await call(ctx, ctx.editor, 'POST', '/ca/rotate');
  assert.is(rotate.statusCode, 403);
  assert.match(messages(rotate)[0]!.message, /POST \/ca\/rotate: it is mesh-wide, use an admin token/);

  assert.is(JSON.stringify(await ctx.store.list('ServiceEntry')), before);
  assert.equal(await ctx.store.list('PeerAuthentication'), []);
});

api('an editor reads its own namespace only and must name it; viewers still read everything', async (ctx) => {
  await call(ctx, ctx.admin, 'POST', '/apply', [serviceEntry('web', 'team-a'), serviceEntry('shop', 'team-b')]);
  const own = await call(ctx, ctx.editor, 'GET', '/apis/serviceentries?namespace=team-a');
  assert.is(own.statusCode, 200);
  assert.equal(own.json<{ items: Array<{ metadata: { name: string } }> }>().items.map((r) => r.metadata.name), ['web']);
  assert.is((await call(ctx, ctx.editor, 'GET', '/apis/serviceentries/team-a/web')).statusCode, 200);

  const all = await call(ctx, ctx.editor, 'GET', '/apis/serviceentries');
  assert.is(all.statusCode, 403);
  assert.match(messages(all)[0]!.message, /reads that namespace only: name it \(\?namespace=team-a; on the command line -n team-a\)/);
  const other = await call(ctx, ctx.editor, 'GET', '/apis/serviceentries?namespace=team-b');
  assert.is(other.statusCode, 403);
  assert.match(messages(other)[0]!.message, 'cannot read namespace team-b');
  assert.is((await call(ctx, ctx.editor, 'GET', '/apis/serviceentries/team-b/shop')).statusCode, 403);
  assert.is((await call(ctx, ctx.editor, 'GET', '/apis/serviceentries?watch=true')).statusCode, 403, 'a watch of every namespace');
  assert.is((await call(ctx, ctx.editor, 'GET', '/proxy-status')).statusCode, 403);
  assert.is((await call(ctx, ctx.editor, 'GET', '/proxy-status?namespace=team-a')).statusCode, 200);
  // What belongs to no namespace stays readable.
  for (const url of ['/apis', '/modules', '/openapi.json']) assert.is((await call(ctx, ctx.editor, 'GET', url)).statusCode, 200, url);

  const viewed = await call(ctx, ctx.viewer, 'GET', '/apis/serviceentries');
  assert.is(viewed.json<{ items: unknown[] }>().items.length, 2);
});

api('modules: an editor uploads them and deploys, rolls out and rolls back WasmPlugins of its namespace only', async (ctx) => {
  const up = await upload(ctx, ctx.editor, 'team-filter', '1.0.0', 1024);
  assert.is(up.statusCode, 201, up.body);
  assert.match(up.json<{ uploadedBy: string }>().uploadedBy, /^editor:[0-9a-f]{12}$/);
  assert.is((await upload(ctx, ctx.editor, 'team-filter', '1.1.0', 2048)).statusCode, 201);

  const deployed = await call(ctx, ctx.editor, 'PUT', '/apis/wasmplugins/team-a/team-filter', wasmPlugin('team-filter', 'team-a', 'module://team-filter@1.0.0'));
  assert.is(deployed.statusCode, 201, deployed.body);
  const elsewhere = await call(ctx, ctx.editor, 'PUT', '/apis/wasmplugins/team-b/team-filter', wasmPlugin('team-filter', 'team-b', 'module://team-filter@1.0.0'));
  assert.is(elsewhere.statusCode, 403);
  const meshWide = await call(ctx, ctx.editor, 'POST', '/apply', [wasmPlugin('everywhere', 'istio-system', 'module://team-filter@1.0.0')]);
  assert.is(meshWide.statusCode, 403, 'a plugin in the root namespace would run in every workload');

  assert.is((await call(ctx, ctx.editor, 'GET', '/filters/team-a/team-filter')).statusCode, 200);
  const started = await call(ctx, ctx.editor, 'POST', '/filters/team-a/team-filter/rollout', { to: '1.1.0', steps: [50, 100], intervalMs: 60_000 });
  assert.is(started.statusCode, 202, started.body);
  assert.is((await call(ctx, ctx.editor, 'DELETE', '/filters/team-a/team-filter/rollout')).statusCode, 200);
  const updated = await call(ctx, ctx.editor, 'PUT', '/apis/wasmplugins/team-a/team-filter', wasmPlugin('team-filter', 'team-a', 'module://team-filter@1.1.0'));
  assert.is(updated.statusCode, 200, updated.body);
  const back = await call(ctx, ctx.editor, 'POST', '/filters/team-a/team-filter/rollback', {});
  assert.is(back.statusCode, 200, back.body);
  assert.is(back.json<{ current: { version: string } }>().current.version, '1.0.0');

  // Another team's plugin: no status, rollout or rollback for this editor, and it stays as it was.
  assert.is((await call(ctx, ctx.admin, 'PUT', '/apis/wasmplugins/team-b/shop-filter', wasmPlugin('shop-filter', 'team-b', 'module://team-filter@1.0.0'))).statusCode, 201);
  const theirs = JSON.stringify(await ctx.store.get('WasmPlugin', 'team-b', 'shop-filter'));
  for (const [method, url, body] of [
    ['GET', '/filters/team-b/shop-filter', undefined],
    ['POST', '/filters/team-b/shop-filter/rollout', { to: '1.1.0' }],
    ['POST', '/filters/team-b/shop-filter/rollback', { to: '1.1.0' }],
    ['DELETE', '/filters/team-b/shop-filter/rollout', undefined],
  ] as const) {
    const r = await call(ctx, ctx.editor, method, url, body);
    assert.is(r.statusCode, 403, `${method} ${url}`);
    assert.match(messages(r)[0]!.message, 'namespace team-b');
  }
  assert.is(JSON.stringify(await ctx.store.get('WasmPlugin', 'team-b', 'shop-filter')), theirs);
});

api('an editor token cannot stream config or ask for workload certificates over gRPC', (ctx) => {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${ctx.editor}`);
  const r = authenticate(metadata, ctx.tokens);
  assert.is(r.ok, false);
  if (!r.ok) assert.is(r.error.code, grpc.status.PERMISSION_DENIED);
});

api.run();

test('editor tokens are bound to one namespace, never the root namespace', () => {
  const tokens = TokenStore.inMemory();
  assert.throws(() => tokens.create('editor'), /bound to one namespace/);
  assert.throws(() => tokens.create('editor', { namespace: 'a', serviceAccount: 'b' }), /not to a service account/);
  assert.throws(() => tokens.create('editor', { namespace: 'istio-system' }), /root namespace/);
  assert.throws(() => tokens.create('editor', { namespace: 'Team_A' }), /invalid namespace/);
  const id = tokens.verify(tokens.create('editor', { namespace: 'team-a' }))!;
  assert.equal([id.role, id.namespace, id.serviceAccount], ['editor', 'team-a', undefined]);
});

test('the CLI: token create --role editor, then apply and get work in its namespace and are refused elsewhere', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-editor-cli-'));
  const quiet = { write: () => true };
  const orch = await startOrchestrator({ dataDir: dir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: undefined, out: quiet, err: quiet });
  try {
    const missing = await wasmesh(['token', 'create', '--role', 'editor', '--data-dir', dir]);
    assert.is(missing.code, 2);
    assert.match(missing.stderr, /an editor token needs --namespace/);
    const root = await wasmesh(['token', 'create', '--role', 'editor', '--namespace', 'istio-system', '--data-dir', dir]);
    assert.is(root.code, 2);
    assert.match(root.stderr, /root namespace/);
    const created = await wasmesh(['token', 'create', '--role', 'editor', '--namespace', 'team-a', '--data-dir', dir]);
    assert.is(created.code, 0, created.stderr);
    assert.match(created.stderr, /editor token created for namespace team-a/);
    const token = created.stdout.trim();
    const as = (args: string[]) => wasmesh([...args, '--server', orch.url, `--token=${token}`], { cwd: dir });

    await writeFile(join(dir, 'ours.yaml'), stringify(serviceEntry('web', 'team-a')));
    await writeFile(join(dir, 'theirs.yaml'), `${stringify(serviceEntry('api', 'team-a'))}---\n${stringify(serviceEntry('shop', 'team-b'))}`);
    const ours = await as(['apply', '-f', 'ours.yaml']);
    assert.is(ours.code, 0, ours.stderr);
    assert.match(ours.stdout, 'serviceentry team-a/web created');
    const theirs = await as(['apply', '-f', 'theirs.yaml']);
    assert.is(theirs.code, 1);
    assert.match(theirs.stderr, /forbidden \(403\): an editor token of namespace team-a cannot write in namespace team-b/);
    const got = await as(['get', 'se', '-n', 'team-a']);
    assert.is(got.code, 0, got.stderr);
    assert.match(got.stdout, /web/);
    assert.not.match(got.stdout, /api/, 'the refused apply wrote nothing');
    const everywhere = await as(['get', 'se', '-A']);
    assert.is(everywhere.code, 1);
    assert.match(everywhere.stderr, /-n team-a/);
  } finally {
    await orch.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
