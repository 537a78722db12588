// wasmesh filter new --lang ts: a TypeScript filter (a component of the filter world) that, as
// generated, builds (esbuild + componentize-js, the component cached by bundle hash: the template's
// own build in this repository or an earlier run makes the first build here fast), passes its own
// tests in ComponentHarness (wasmesh filter test), type-checks against its editor config, and runs
// in a proxy from its example/mesh.yaml, swapped in by `wasmesh filter dev`. Bad input is refused.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildFilter, FilterBuildError } from '../../filters/toolchain/build.ts';
import { loadConfigFile } from '../../proxy-host/src/config/file-source.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { request } from '../../proxy-host/test/support/servers.ts';
import { WASMESH } from '../../orchestrator/test/support/run-wasmesh.ts';
import { run as filterDev } from '../cli/filter-dev.ts';
import { freePort } from '../cli/run.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const WORKLOAD = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
const ctx = { dirs: [] as string[], children: [] as ChildProcess[], proxies: [] as Proxy[] };
let root = '';

test.before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-filter-new-ts-'));
  ctx.dirs.push(root);
});

test.after(async () => {
  for (const child of ctx.children) child.kill('SIGTERM');
  await Promise.all(ctx.proxies.map((p) => p.stop(0)));
  for (const dir of ctx.dirs) await rm(dir, { recursive: true, force: true });
});

function wasmesh(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WASMESH, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

async function filesUnder(dir: string, sub = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, sub), { withFileTypes: true })) {
    const rel = path.join(sub, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

test('filter new --lang ts: a TypeScript component filter, named for it, that builds and passes its own tests with one command', async () => {
  const made = await wasmesh(['filter', 'new', 'ts-hello', '--lang', 'ts'], root);
  assert.is(made.code, 0, made.out);
  assert.match(made.out, /from the TypeScript headers template/);
  const dir = path.join(root, 'ts-hello');
  assert.equal(await filesUnder(dir), ['.gitignore', 'README.md', 'example/app.mjs', 'example/mesh.yaml', 'filter.json', 'package.json', 'src/index.ts', 'src/world.ts', 'test/filter.test.ts', 'tsconfig.json']);
  for (const file of await filesUnder(dir)) assert.not.match(await readFile(path.join(dir, file), 'utf8'), /template[-_]ts[-_]headers/, `${file} still names the template`);
  const manifest = JSON.parse(await readFile(path.join(dir, 'filter.json'), 'utf8')) as { name: string; lang: string; world: string };
  assert.equal([manifest.name, manifest.lang, manifest.world], ['ts-hello', 'ts', 'wasmesh:filter/http-filter@0.1.0']);

  const tested = await wasmesh(['filter', 'test', 'ts-hello'], root);
  assert.is(tested.code, 0, tested.out);
  assert.match(tested.out, /ts-hello: built ts-hello\/build\/ts-hello\.wasm \(\d+ bytes, (componentize-js|component from the build cache)/);
  assert.match(tested.out, /Passed:\s+3/);
  // Built once: the next test run does not build again.
  assert.is((await buildFilter(dir, { quiet: true })).skipped, true);

  // Its editor config resolves the filter's types, wasmesh/component and uvu: TypeScript checks the folder against it.
  const tsc = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' });
  assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
});

test('it runs in a proxy from its example mesh, swapped in by filter dev', async () => {
  const dir = path.join(root, 'ts-hello');
  const port = await freePort();
  const app = spawn(process.execPath, [path.join(dir, 'example/app.mjs'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  ctx.children.push(app);
  await new Promise<void>((resolve, reject) => {
    app.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    app.once('exit', (code) => reject(new Error(`example/app.mjs exited with ${code}`)));
  });
  const mesh = path.join(dir, 'example/mesh.yaml');
  const text = await readFile(mesh, 'utf8');
  await writeFile(mesh, text.replaceAll('8080', String(port)));
  const loaded = await loadConfigFile(mesh, WORKLOAD, { telemetry: false });
  await writeFile(mesh, text);
  if (!loaded.ok) throw new Error(`example/mesh.yaml does not load: ${loaded.error}`);
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: port, accessLog: 'off', moduleOverrides: true, adminAccess: { loopbackWrites: true } }, loaded.config);
  ctx.proxies.push(proxy);
  const out: string[] = [];
  const code = await filterDev([dir, '--proxy', `http://127.0.0.1:${proxy.adminPort}`, '--once'], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => out.push(t) } });
  assert.is(code, 0, out.join(''));
  assert.match(out.join(''), /swapped default\//);
  const r = await request(proxy.inboundPort, { path: '/', headers: { host: 'web' } });
  assert.is(r.headers['x-served-by'], 'wasmesh');
  assert.is(r.headers.server, undefined);
  assert.match(r.body, /"greeting": "hello from the filter"/, 'the body was rewritten');
  assert.match(r.body, /"x-hello": "world"/, 'the app saw the request header');
  assert.is(proxy.filters().inbound.find((f) => f.plugin.endsWith('ts-hello'))?.stable.kind, 'component');
});

test('a TypeScript error in src/ fails the build naming file, line and column', async () => {
  const dir = path.join(root, 'broken');
  assert.is((await wasmesh(['filter', 'new', 'broken', '--lang', 'ts'], root)).code, 0);
  const index = path.join(dir, 'src/index.ts');
  await writeFile(index, `${await readFile(index, 'utf8')}\nexport const oops = ;\n`);
  try {
    await buildFilter(dir, { quiet: true });
    assert.unreachable('built');
  } catch (err) {
    assert.instance(err, FilterBuildError);
    // The type check reads the files first: a syntax error is its error too, at its place.
    assert.match((err as Error).message, /broken: type check failed \(1 error\)\n\s+.*broken\/src\/index\.ts:\d+:\d+: error TS1109: Expression expected/);
  }
});

test('a type error in src/ fails the build too (the bundler alone would strip it), naming file, line and column', async () => {
  const dir = path.join(root, 'mistyped');
  assert.is((await wasmesh(['filter', 'new', 'mistyped', '--lang', 'ts'], root)).code, 0);
  const index = path.join(dir, 'src/index.ts');
  const lines = (await readFile(index, 'utf8')).split('\n');
  await writeFile(index, [...lines, "export const count: number = 'three';", ''].join('\n'));
  try {
    await buildFilter(dir, { quiet: true });
    assert.unreachable('built');
  } catch (err) {
    assert.instance(err, FilterBuildError);
    assert.match((err as Error).message, new RegExp(`mistyped: type check failed \\(1 error\\)\\n\\s+.*mistyped/src/index\\.ts:${lines.length + 1}:14: error TS2322: Type 'string' is not assignable to type 'number'`));
  }
  assert.not.ok(existsSync(path.join(dir, 'build', 'mistyped.wasm')), 'nothing was built');
});

test('bad input is refused with what was wrong', async () => {
  const lang = await wasmesh(['filter', 'new', 'x', '--lang', 'rust'], root);
  assert.is(lang.code, 2);
  assert.match(lang.out, /--lang "rust" is not a language; choose as \(AssemblyScript\) or ts \(TypeScript\)/);
  const template = await wasmesh(['filter', 'new', 'y', '--lang', 'ts', '--template', 'reject'], root);
  assert.is(template.code, 2);
  assert.match(template.out, /--template "reject" is not a TypeScript template; choose one of: headers/);
  await mkdir(path.join(root, 'z'));
  await writeFile(path.join(root, 'z', 'filter.json'), JSON.stringify({ id: 'z', name: 'z', lang: 'rust' }));
  const manifest = await wasmesh(['filter', 'build', 'z'], root);
  assert.is(manifest.code, 1);
  assert.match(manifest.out, /"lang" must be "as" \(AssemblyScript\) or "ts" \(TypeScript, a component\), got "rust"/);
});

test.run();
