// A YAML alias bomb ("billion laughs") through every way config text comes in: the orchestrator's
// REST API (400 naming the document; the server stays healthy and the store unchanged), `wasmesh
// validate` and `wasmesh apply` (a clear error, nothing sent), and a standalone proxy whose watched
// config directory is edited in place to hold one (rejected, the last good config keeps serving; a
// later valid in-place edit applies).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, ftruncateSync, writeSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocuments } from '../../../mesh/src/documents.ts';
import { buildApp } from '../../../orchestrator/src/app.ts';
import { TokenStore } from '../../../orchestrator/src/auth/tokens.ts';
import { SqliteStore } from '../../../orchestrator/src/store/sqlite-store.ts';
import { wasmesh, WASMESH } from '../../../orchestrator/test/support/run-wasmesh.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { billionLaughs, examples, managedExamples } from './support/mutate.ts';

/** Only catches hangs: each refusal here takes milliseconds on an idle machine. */
const HANG_MS = 10_000;
const ALIASES_LIMITED = /^YAML aliases were limited at line \d+: expanded, they would make the document larger than 1 MiB \(the limit\)$/;

interface Ctx {
  dir: string;
  store: SqliteStore;
  app: FastifyInstance;
  admin: string;
}

const rest = suite<Ctx>('billion laughs: REST API and CLI', {} as Ctx);

rest.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-laughs-'));
  ctx.store = new SqliteStore({ dataDir: ctx.dir });
  const tokens = TokenStore.inMemory();
  ctx.admin = tokens.create('admin');
  ctx.app = buildApp({ store: ctx.store, tokens, logStream: { write: () => undefined } });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const applied = await ctx.app.inject({ method: 'POST', url: '/apply', headers: { authorization: `Bearer ${ctx.admin}` }, payload: managedExamples() });
  assert.is(applied.statusCode, 200, applied.body);
});

rest.after(async (ctx) => {
  await ctx.app.close();
  await ctx.store.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

async function state(store: SqliteStore): Promise<string> {
  return JSON.stringify({ resources: await store.list(), revision: await store.revision() });
}

rest('POST /apply: 400 naming the document and the line, nothing applied, the server still healthy', async (ctx) => {
  const before = await state(ctx.store);
  // The valid routing documents (one changed, so the batch would write) and the bomb after them.
  const valid = examples().texts.find((t) => t.includes('timeout: 2s'))!.replace('timeout: 2s', 'timeout: 3s');
  const bombAt = parseDocuments(valid, 'x').documents.length + 1;
  const payload = `${valid}\n---\n${billionLaughs('bomb', 'bookinfo')}`;
  const started = Date.now();
  const res = await ctx.app.inject({ method: 'POST', url: '/apply', headers: { authorization: `Bearer ${ctx.admin}`, 'content-type': 'application/yaml' }, payload });
  assert.ok(Date.now() - started < HANG_MS);
  assert.is(res.statusCode, 400, res.body);
  const body = res.json() as { code: string; errors: Array<{ document: string; path: string; message: string }> };
  assert.is(body.code, 'WASMESH_ORCH_INVALID');
  assert.is(body.errors.length, 1, res.body);
  assert.is(body.errors[0]!.document, `VirtualService bookinfo/bomb (apply#${bombAt})`);
  assert.match(body.errors[0]!.message, ALIASES_LIMITED);
  assert.is(await state(ctx.store), before, 'the valid documents of the batch were not applied either');
  assert.is((await ctx.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
});

rest('PUT of one resource as YAML: the same 400', async (ctx) => {
  const before = await state(ctx.store);
  const res = await ctx.app.inject({ method: 'PUT', url: '/apis/virtualservices/bookinfo/bomb', headers: { authorization: `Bearer ${ctx.admin}`, 'content-type': 'application/yaml' }, payload: billionLaughs('bomb', 'bookinfo') });
  assert.is(res.statusCode, 400, res.body);
  assert.is(res.json().errors[0].document, 'VirtualService bookinfo/bomb (request#1)');
  assert.match(res.json().errors[0].message, ALIASES_LIMITED);
  assert.is(await state(ctx.store), before);
});

rest('wasmesh validate and wasmesh apply: a clear error naming the file and document; apply sends nothing', async (ctx) => {
  const file = join(ctx.dir, 'bomb.yaml');
  writeFileSync(file, billionLaughs());
  const validate = await wasmesh(['validate', '-f', file], { timeoutMs: 60_000 });
  assert.is(validate.code, 1, validate.stderr);
  assert.match(validate.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#1 line \\d+ VirtualService default/bomb: YAML aliases were limited at line \\d+`));
  const before = await state(ctx.store);
  const address = ctx.app.server.address() as { port: number };
  const apply = await wasmesh(['apply', '-f', file], { env: { WASMESH_SERVER: `http://127.0.0.1:${address.port}`, WASMESH_TOKEN: ctx.admin }, timeoutMs: 60_000 });
  assert.is(apply.code, 1, apply.stderr);
  assert.match(apply.stderr, 'cannot read the documents; nothing was applied');
  assert.match(apply.stderr, 'YAML aliases were limited');
  assert.is(await state(ctx.store), before);
});

rest.run();

// ---------------------------------------------------------------------------------------------
// A standalone proxy, its config directory edited in place.

const proxy = suite<{ upstream: TestServer; dir: string; child: ChildProcess; stderr: string; ports: { outbound: number; admin: number } }>('billion laughs: standalone proxy', {} as never);

function mesh(status: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 9 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  http:
  - directResponse: { status: ${status}, body: { string: "status ${status}" } }
`;
}

/** Rewrites the file through an fd opened for writing: the same inode, as an editor saving in place. */
function writeInPlace(file: string, text: string): void {
  const fd = openSync(file, 'r+');
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, describe: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

proxy.before(async (ctx) => {
  ctx.upstream = await startHttp1('app');
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-laughs-proxy-'));
  writeFileSync(join(ctx.dir, 'mesh.yaml'), mesh(418));
  ctx.stderr = '';
  ctx.child = spawn(process.execPath, [WASMESH, 'proxy', '--config', ctx.dir, '--workload', 'productpage', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--app-port', String(ctx.upstream.port), '--access-log', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
  ctx.child.stderr!.on('data', (c: Buffer) => (ctx.stderr += c.toString()));
  const listening = /listening: outbound [\d.]+:(\d+), inbound [\d.]+:\d+, admin [\d.]+:(\d+)/;
  await waitFor('the proxy to listen', () => listening.test(ctx.stderr), () => ctx.stderr, 30_000);
  const m = listening.exec(ctx.stderr)!;
  ctx.ports = { outbound: Number(m[1]), admin: Number(m[2]) };
});

proxy.after(async (ctx) => {
  if (ctx.child.exitCode === null) {
    const exited = new Promise((r) => ctx.child.once('exit', r));
    ctx.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (ctx.child.exitCode === null) ctx.child.kill('SIGKILL');
  }
  await ctx.upstream.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

proxy('an in-place edit to an alias bomb is rejected and the last good config serves; the next valid in-place edit applies', async (ctx) => {
  const call = async () => (await request(ctx.ports.outbound, { headers: { host: 'ratings.default.svc.cluster.local' } })).status;
  const version = async () => JSON.parse((await request(ctx.ports.admin, { path: '/config_dump' })).body).status as { version: string; lastError?: { message: string } };
  assert.is(await call(), 418);
  const good = (await version()).version;

  writeInPlace(join(ctx.dir, 'mesh.yaml'), `${mesh(418)}---\n${billionLaughs()}`);
  await waitFor('the rejection', () => ctx.stderr.includes('rejected'), () => ctx.stderr);
  assert.match(ctx.stderr, /mesh\.yaml#3 line \d+ VirtualService default\/bomb: YAML aliases were limited at line \d+/);
  const status = await version();
  assert.is(status.version, good, 'still the last good config');
  assert.match(String(status.lastError?.message), 'YAML aliases were limited');
  assert.is(await call(), 418);

  writeInPlace(join(ctx.dir, 'mesh.yaml'), mesh(200));
  await waitFor('the valid edit to apply', async () => (await call()) === 200, () => ctx.stderr);
  assert.is.not((await version()).version, good);
});

proxy.run();
