// wasmesh filter new: every template gives a folder that, as generated, builds, passes its own tests
// (wasmesh filter test) and does what its README says in a proxy run from its example/mesh.yaml with
// its example app, swapped in by `wasmesh filter dev`. Outside this repository, inside it, and after
// the folder moved (the editor configs follow). Bad input is refused with what was wrong.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build as esbuild } from 'esbuild';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildFilter, closeKeptCompiler } from '../../filters/toolchain/build.ts';
import { EDITOR_CONFIG_MARKER } from '../../filters/toolchain/editor-config.ts';
import { createFilter } from '../../filters/toolchain/scaffold.ts';
import { runFilterTests } from '../../filters/toolchain/test-runner.ts';
import { loadConfigFile } from '../../proxy-host/src/config/file-source.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { request } from '../../proxy-host/test/support/servers.ts';
import { WASMESH } from '../../orchestrator/test/support/run-wasmesh.ts';
import { run as filterDev } from '../cli/filter-dev.ts';
import { freePort } from '../cli/run.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const WORKLOAD = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
const ctx = { dirs: [] as string[], children: [] as ChildProcess[], proxies: [] as Proxy[] };

test.after(async () => {
  for (const child of ctx.children) child.kill('SIGTERM');
  await Promise.all(ctx.proxies.map((p) => p.stop(0)));
  await closeKeptCompiler();
  for (const dir of ctx.dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(parent = os.tmpdir()): Promise<string> {
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, 'wasmesh-filter-new-'));
  ctx.dirs.push(dir);
  return dir;
}

/** Runs the CLI (a real process) with `cwd`; resolves with its exit code and output. */
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

/** The example app of the folder on a free port; resolves once it listens. */
async function startApp(dir: string): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(dir, 'example/app.mjs'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  ctx.children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`example/app.mjs exited with ${code}`)));
  });
  return port;
}

/**
 * A proxy as `wasmesh proxy --config example/mesh.yaml --workload web --admin-writes` runs it (the
 * example's app port 8080 changed to the free one), with the folder's module swapped in by
 * `wasmesh filter dev --once`; resolves with the proxy.
 */
async function devProxy(dir: string, appPort: number): Promise<Proxy> {
  const mesh = path.join(dir, 'example/mesh.yaml');
  const text = await readFile(mesh, 'utf8');
  await writeFile(mesh, text.replaceAll('8080', String(appPort)));
  const loaded = await loadConfigFile(mesh, WORKLOAD, { telemetry: false });
  await writeFile(mesh, text);
  if (!loaded.ok) throw new Error(`example/mesh.yaml does not load: ${loaded.error}`);
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off', moduleOverrides: true, adminAccess: { loopbackWrites: true } }, loaded.config);
  ctx.proxies.push(proxy);
  const out: string[] = [];
  const code = await filterDev([dir, '--proxy', `http://127.0.0.1:${proxy.adminPort}`, '--once'], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => out.push(t) } });
  assert.is(code, 0, out.join(''));
  assert.match(out.join(''), /swapped default\//);
  return proxy;
}

test('filter new outside the repository: the files of a filter, named for it, no build output, nothing of the template left', async () => {
  const root = await tempDir();
  const r = await wasmesh(['filter', 'new', 'api-key', '--template', 'reject'], root);
  assert.is(r.code, 0, r.out);
  const dir = path.join(root, 'api-key');
  assert.equal(await filesUnder(dir), [
    '.gitignore', 'README.md', 'assembly/config.ts', 'assembly/index.ts', 'assembly/json.ts', 'assembly/tsconfig.json',
    'example/app.mjs', 'example/mesh.yaml', 'filter.json', 'package.json', 'test/filter.test.ts', 'tsconfig.json',
  ]);
  for (const file of await filesUnder(dir)) {
    assert.not.match(await readFile(path.join(dir, file), 'utf8'), /template[-_]reject/, `${file} still names the template`);
  }
  const manifest = JSON.parse(await readFile(path.join(dir, 'filter.json'), 'utf8')) as { name: string; rootId: string };
  assert.equal([manifest.name, manifest.rootId], ['api-key', 'api_key']);
  assert.match(await readFile(path.join(dir, 'assembly/index.ts'), 'utf8'), /new Counter\("api_key_rejected_total"\)/);
  assert.match(await readFile(path.join(dir, 'assembly/config.ts'), 'utf8'), /from "\.\/json"/, 'its own JSON reader, not a path into this repository');
  assert.match(r.out, /wasmesh filter build api-key\n\s+wasmesh filter test api-key/);
});

test('a generated folder builds and passes its own tests with one command, from outside the repository', async () => {
  const root = await tempDir();
  assert.is((await wasmesh(['filter', 'new', 'keys', '--template', 'reject'], root)).code, 0);
  const r = await wasmesh(['filter', 'test', 'keys'], root);
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /keys: built keys\/build\/keys\.wasm/);
  assert.match(r.out, /Passed:\s+5/);
  assert.ok(!existsSync(path.join(root, 'keys', 'node_modules')), 'nothing was installed into the folder');
});

for (const template of ['headers', 'callout', 'metric'] as const) {
  test(`template ${template}: builds, passes its tests, and runs under filter dev with its example mesh and app`, async () => {
    const root = await tempDir();
    const dir = path.join(root, `my-${template}`);
    await createFilter(dir, { template });
    // Dev builds (what filter dev makes) keep the test short; filter test runs them as they are.
    await buildFilter(dir, { dev: true, quiet: true });
    const report: string[] = [];
    const code = await runFilterTests(dir, { stdout: { write: (t: string) => report.push(t) }, color: false });
    assert.is(code, 0, report.join(''));
    assert.match(report.join(''), /Passed:\s+[1-9]/);

    const appPort = await startApp(dir);
    const proxy = await devProxy(dir, appPort);
    const at = proxy.inboundPort;
    if (template === 'headers') {
      const r = await request(at, { path: '/', headers: { host: 'web' } });
      assert.is(r.headers['x-served-by'], 'wasmesh');
      assert.is(r.headers.server, undefined);
      assert.match(r.body, /"greeting": "hello from the filter"/, 'the body was rewritten');
      assert.match(r.body, /"x-hello": "world"/, 'the app saw the request header');
    } else if (template === 'callout') {
      const denied = await request(at, { path: '/', headers: { host: 'web' } });
      assert.is(denied.status, 403);
      assert.match(denied.body, /unknown user/);
      const allowed = await request(at, { path: '/', headers: { host: 'web', 'x-user': 'alice' } });
      assert.is(allowed.status, 200);
      assert.match(allowed.body, /"x-user-id": "id-alice"/);
    } else {
      for (let i = 0; i < 3; i++) assert.is((await request(at, { path: '/', headers: { host: 'web' } })).status, 200);
      const stats = await request(proxy.adminPort, { path: '/stats/prometheus', headers: { host: `127.0.0.1:${proxy.adminPort}` } });
      assert.match(stats.body, /my_metric_responses_total\{code="2xx"\} 3/, stats.body.split('\n').filter((l) => l.includes('my_metric')).join('\n'));
    }
  });
}

test('inside the repository: no package.json of its own (the repository is ES modules); every template builds and passes its tests, and it works the same', async () => {
  const root = await tempDir(path.join(repoRoot, '.wasmesh'));
  for (const template of ['headers', 'callout', 'metric', 'reject'] as const) {
    const made = path.join(root, `in-repo-${template}`);
    await createFilter(made, { template });
    assert.ok(!existsSync(path.join(made, 'package.json')), `${template}: no package.json`);
    await buildFilter(made, { dev: true, quiet: true });
    const report: string[] = [];
    assert.is(await runFilterTests(made, { stdout: { write: (t: string) => report.push(t) }, color: false }), 0, `${template}:\n${report.join('')}`);
    assert.match(report.join(''), /Passed:\s+[1-9]/, template);
  }
  const dir = path.join(root, 'in-repo-reject');
  const appPort = await startApp(dir);
  const proxy = await devProxy(dir, appPort);
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'web' } })).status, 401);
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'web', 'x-api-key': 'let-me-in' } })).status, 200);
});

test('from the bundled CLI (npm run build: dist/), filter new finds the templates and filter test its hooks', async () => {
  // Bundled as scripts/build.mjs bundles it, into a folder of its own inside the installation.
  const out = await tempDir(path.join(repoRoot, '.wasmesh'));
  await esbuild({
    absWorkingDir: repoRoot,
    entryPoints: { cli: 'scripts/cli/main.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir: out,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    logLevel: 'error',
  });
  const bundled = (args: string[], cwd: string) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      const script = `const { main } = await import(${JSON.stringify(pathToFileURL(path.join(out, 'cli.mjs')).href)}); process.exitCode = await main(${JSON.stringify(args)});`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? 1, out: text }));
    });
  const root = await tempDir();
  const made = await bundled(['filter', 'new', 'from-dist', '--template', 'reject'], root);
  assert.is(made.code, 0, made.out);
  assert.ok(existsSync(path.join(root, 'from-dist', 'assembly', 'json.ts')));
  await buildFilter(path.join(root, 'from-dist'), { dev: true, quiet: true });
  const tested = await bundled(['filter', 'test', 'from-dist', '--no-build'], root);
  assert.is(tested.code, 0, tested.out);
  assert.match(tested.out, /Passed:\s+5/);
});

test('a moved folder: the build rewrites its editor configs for the new place; they resolve the SDK, wasmesh/wasm and uvu', async () => {
  const root = await tempDir();
  await createFilter(path.join(root, 'moving'), { template: 'headers' });
  const moved = path.join(root, 'deeper', 'still', 'moving');
  await mkdir(path.dirname(moved), { recursive: true });
  await rename(path.join(root, 'moving'), moved);
  const out: string[] = [];
  await buildFilter(moved, { dev: true, stdout: { write: (t: string) => out.push(t) } });
  assert.match(out.join(''), /moving: rewrote .*assembly\/tsconfig\.json for where this folder and wasmesh are now/);
  assert.match(out.join(''), /moving: rewrote .*moving\/tsconfig\.json/);
  const assemblyConfig = await readFile(path.join(moved, 'assembly/tsconfig.json'), 'utf8');
  assert.ok(assemblyConfig.startsWith(EDITOR_CONFIG_MARKER));
  const parsed = JSON.parse(assemblyConfig.replace(/^\/\/.*$/gm, '')) as { extends: string; compilerOptions: { paths: Record<string, string[]> } };
  for (const target of [parsed.extends, ...Object.values(parsed.compilerOptions.paths).flat()]) {
    const file = path.resolve(moved, 'assembly', target.replace(/\/\*$/, ''));
    assert.ok(existsSync(file), `${target} exists from the new place`);
  }
  // The tests' config: TypeScript itself checks the test against it.
  const tsc = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', moved], { encoding: 'utf8' });
  assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
  // An author's own config (no marker) is never touched.
  await writeFile(path.join(moved, 'tsconfig.json'), '{ "include": ["test/**/*.ts"] }\n');
  await buildFilter(moved, { dev: true, quiet: true });
  assert.is(await readFile(path.join(moved, 'tsconfig.json'), 'utf8'), '{ "include": ["test/**/*.ts"] }\n');
});

test('bad input is refused with what was wrong', async () => {
  const root = await tempDir();
  const unknown = await wasmesh(['filter', 'new', 'x', '--template', 'nope'], root);
  assert.is(unknown.code, 2);
  assert.match(unknown.out, /--template "nope" is not a template; choose one of: headers, reject, callout, metric/);
  const badName = await wasmesh(['filter', 'new', 'My_Filter'], root);
  assert.is(badName.code, 2);
  assert.match(badName.out, /the folder name "My_Filter" is not a filter name: .*or give --name/);
  await mkdir(path.join(root, 'taken'));
  await writeFile(path.join(root, 'taken', 'keep.txt'), 'mine');
  const taken = await wasmesh(['filter', 'new', 'taken'], root);
  assert.is(taken.code, 2);
  assert.match(taken.out, /taken already exists and is not empty/);
  assert.equal(await readdir(path.join(root, 'taken')), ['keep.txt'], 'nothing was written into it');
  const notAFilter = await wasmesh(['filter', 'test', '.'], root);
  assert.is(notAFilter.code, 1);
  assert.match(notAFilter.out, /no filter\.json \(not a filter folder\)/);
  await createFilter(path.join(root, 'untested'), { template: 'reject' });
  const noMatch = await wasmesh(['filter', 'test', 'untested', '--no-build', '--pattern', 'nothing-like-this'], root);
  assert.is(noMatch.code, 1);
  assert.match(noMatch.out, /untested: no test file in test\/ ends in \.test\.ts and matches nothing-like-this/);
  await rm(path.join(root, 'untested', 'test'), { recursive: true });
  const noTests = await wasmesh(['filter', 'test', 'untested', '--no-build'], root);
  assert.is(noTests.code, 1);
  assert.match(noTests.out, /untested: no test\/ folder/);
});

test.run();
