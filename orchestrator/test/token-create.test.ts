// Tokens from the running orchestrator: POST /tokens (app.inject), and `wasmesh token create` as a
// user runs it (a child process) with $WASMESH_SERVER set, the way the demo's guide leaves a shell:
// the token is made by that orchestrator and works there; nothing is written where no orchestrator
// would read it.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { wasmesh, type CliResult } from './support/run-wasmesh.ts';

const quiet = { write: () => true };
const show = (r: CliResult): string => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

// ---------------------------------------------------------------------------------------------

const api = suite('POST /tokens');

api('an admin creates tokens of every role, valid at once; editors and viewers cannot; bad bindings are 400', async () => {
  const store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  const app = buildApp({ store, tokens });
  try {
    const admin = tokens.create('admin');
    const post = (token: string, body: object) => app.inject({ method: 'POST', url: '/tokens', headers: { authorization: `Bearer ${token}` }, payload: body });
    const made = await post(admin, { role: 'proxy', namespace: 'shop', serviceAccount: 'cart' });
    assert.is(made.statusCode, 201, made.body);
    const body = made.json<{ token: string; id: string; role: string; namespace: string; serviceAccount: string }>();
    assert.equal({ role: body.role, namespace: body.namespace, serviceAccount: body.serviceAccount }, { role: 'proxy', namespace: 'shop', serviceAccount: 'cart' });
    assert.equal(tokens.verify(body.token), { role: 'proxy', namespace: 'shop', serviceAccount: 'cart', id: body.id });

    const viewer = (await post(admin, { role: 'viewer' })).json<{ token: string }>().token;
    assert.is((await app.inject({ method: 'GET', url: '/apis', headers: { authorization: `Bearer ${viewer}` } })).statusCode, 200, 'the new token works');
    assert.is((await post(viewer, { role: 'admin' })).statusCode, 403);
    const editor = (await post(admin, { role: 'editor', namespace: 'shop' })).json<{ token: string }>().token;
    const escalate = await post(editor, { role: 'admin' });
    assert.is(escalate.statusCode, 403, 'an editor cannot mint tokens');

    const noSa = await post(admin, { role: 'proxy', namespace: 'shop' });
    assert.is(noSa.statusCode, 400);
    assert.match(noSa.body, 'a proxy token is bound to a namespace and a service account');
    const root = await post(admin, { role: 'editor', namespace: 'istio-system' });
    assert.is(root.statusCode, 400);
    assert.match(root.body, 'istio-system is the root namespace');
    assert.is((await post(admin, { role: 'root' })).statusCode, 400);
    assert.is((await app.inject({ method: 'POST', url: '/tokens', payload: { role: 'admin' } })).statusCode, 401);
  } finally {
    await app.close();
    await store.close();
  }
});

api.run();

// ---------------------------------------------------------------------------------------------

const cli = suite('wasmesh token create');
const c = {} as { root: string; orch: RunningOrchestrator; admin: string; cwd: string };

cli.before(async () => {
  c.root = await mkdtemp(join(tmpdir(), 'wasmesh-token-create-'));
  c.orch = await startOrchestrator({ dataDir: join(c.root, 'orchestrator'), store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: undefined, out: quiet, err: quiet });
  c.admin = readFileSync(c.orch.adminTokenPath, 'utf8').trim();
  // A working directory that is not the orchestrator's: no .wasmesh/ here.
  c.cwd = join(c.root, 'elsewhere');
  await mkdir(c.cwd);
});

cli.after(async () => {
  await c.orch?.close();
  if (c.root) await rm(c.root, { recursive: true, force: true });
});

cli('with $WASMESH_SERVER set, the token is made by that orchestrator and works there; nothing lands in ./.wasmesh', async () => {
  const r = await wasmesh(['token', 'create', '--role', 'viewer'], { cwd: c.cwd, env: { WASMESH_SERVER: c.orch.url, WASMESH_TOKEN: c.admin } });
  assert.is(r.code, 0, show(r));
  const token = r.stdout.trim();
  assert.match(r.stderr, `viewer token created by the orchestrator at ${c.orch.url}`);
  const res = await fetch(`${c.orch.url}/apis`, { headers: { authorization: `Bearer ${token}` } });
  assert.is(res.status, 200, 'the running orchestrator accepts it');
  assert.not.ok(existsSync(join(c.cwd, '.wasmesh')), 'no token file was written where no orchestrator reads it');

  // --server does the same; a token without the admin role is refused with the reason.
  const proxy = await wasmesh(['token', 'create', '--role', 'proxy', '--namespace', 'shop', '--service-account', 'cart', '--server', c.orch.url, '--token', c.admin], { cwd: c.cwd });
  assert.is(proxy.code, 0, show(proxy));
  assert.match(proxy.stderr, 'proxy token created for shop/cart');
  const refused = await wasmesh(['token', 'create', '--role', 'admin', '--server', c.orch.url, '--token', token], { cwd: c.cwd });
  assert.is(refused.code, 1, show(refused));
  assert.is(refused.stdout, '');
  assert.match(refused.stderr, 'forbidden (403): a viewer token cannot');
});

cli('without a server, a data dir no orchestrator has used is refused, saying how to do it', async () => {
  const r = await wasmesh(['token', 'create', '--role', 'viewer'], { cwd: c.cwd });
  assert.is(r.code, 1, show(r));
  assert.is(r.stdout, '');
  assert.match(r.stderr, 'no orchestrator has used .wasmesh/orchestrator');
  assert.match(r.stderr, '--server URL (or set WASMESH_SERVER)');
  assert.not.ok(existsSync(join(c.cwd, '.wasmesh')));
  // The orchestrator's own data dir works without a server, and the token is valid there at once;
  // an explicit --data-dir is not overridden by $WASMESH_SERVER.
  const local = await wasmesh(['token', 'create', '--role', 'viewer', '--data-dir', join(c.root, 'orchestrator')], { cwd: c.cwd, env: { WASMESH_SERVER: 'http://127.0.0.1:9' } });
  assert.is(local.code, 0, show(local));
  assert.match(local.stderr, `in ${join(c.root, 'orchestrator', 'tokens.json')}`);
  assert.is((await fetch(`${c.orch.url}/apis`, { headers: { authorization: `Bearer ${local.stdout.trim()}` } })).status, 200);
  const stray = await wasmesh(['token', 'create', '--role', 'viewer', '--token', c.admin], { cwd: c.cwd });
  assert.is(stray.code, 2, show(stray));
  assert.match(stray.stderr, '--token is the admin token for --server');
});

cli.run();
