// wasmesh filter dev: a real AssemblyScript filter (a copy of the add-header example) is rebuilt and
// swapped into a running standalone proxy through its admin endpoint; a compile error is printed with
// its location and the proxy keeps the last good module; in watch mode every way an editor saves is
// picked up (in place, rename over, sed -i, delete and create, vim's backup dance), debounced, and each
// build's start and end are printed.
import { spawn, spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildFilter } from '../../filters/toolchain/build.ts';
import { run as filterDev } from '../cli/filter-dev.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import type { ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../proxy-host/test/support/config.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { WASMESH } from '../../orchestrator/test/support/run-wasmesh.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const ctx = {} as { tmp: string; dir: string; app: TestServer; proxy: Proxy; admin: string; config: ProxyConfig };

test.before(async () => {
  ctx.tmp = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-filter-dev-'));
  ctx.dir = path.join(ctx.tmp, 'filters', 'examples', 'add-header');
  const skipBuild = (src: string) => path.basename(src) !== 'build';
  await cp(path.join(repoRoot, 'filters/examples/add-header'), ctx.dir, { recursive: true, filter: skipBuild });
  await cp(path.join(repoRoot, 'filters/common'), path.join(ctx.tmp, 'filters', 'common'), { recursive: true, filter: skipBuild });
  const built = await buildFilter(ctx.dir, { quiet: true });
  ctx.app = await startHttp1('app');
  const config = proxyConfig({
    virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
    clusters: [cluster('app', [{ port: ctx.app.port }])],
    outboundFilters: [filterBinding('add-header', built.wasmPath, { rootId: 'add_header', pluginConfig: { response: { 'x-dev': 'v1' } } })],
  });
  ctx.config = config;
  // What `wasmesh proxy --admin-writes` runs: loopback writes need no token.
  ctx.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', moduleOverrides: true, adminAccess: { loopbackWrites: true } }, config);
  ctx.admin = `http://127.0.0.1:${ctx.proxy.adminPort}`;
});

test.after(async () => {
  await ctx.proxy?.stop(0);
  await ctx.app?.close();
  if (ctx.tmp) await rm(ctx.tmp, { recursive: true, force: true });
});

const source = () => path.join(ctx.dir, 'assembly', 'index.ts');

async function edit(from: string, to: string): Promise<void> {
  const text = await readFile(source(), 'utf8');
  assert.ok(text.includes(from), `the source contains ${from}`);
  await writeFile(source(), text.replace(from, to));
}

async function responseHeaders(): Promise<Record<string, unknown>> {
  return (await request(ctx.proxy.outboundPort, { path: '/' })).headers;
}

async function dev(args: string[], admin = ctx.admin): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await filterDev([ctx.dir, '--proxy', admin, ...args], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => err.push(t) } });
  return { code, out: out.join(''), err: err.join('') };
}

test('an edit is built and swapped into the running proxy', async () => {
  assert.is((await responseHeaders())['x-dev'], 'v1');
  await edit('    const list = this.root.config.response;', '    stream_context.headers.response.replace("x-edited", "yes");\n    const list = this.root.config.response;');
  const r = await dev(['--once']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /swapped default\/add-header to sha256:[0-9a-f]{12} .* in \d+ ms: build \d+ ms, load [\d.]+ ms/);
  const headers = await responseHeaders();
  assert.is(headers['x-edited'], 'yes');
  assert.is(headers['x-dev'], 'v1', 'the WasmPlugin’s configuration still applies');
});

test('a compile error is printed with its location and the proxy keeps the last good module', async () => {
  await edit('const ROOT_ID = "add_header";', 'const ROOT_ID: i32 = "add_header";');
  const r = await dev(['--once']);
  assert.is(r.code, 1);
  assert.match(r.err, /index\.ts:\d+:\d+/, 'the error names the file and line');
  assert.match(r.err, /build failed, the proxy keeps the last good module/);
  assert.is((await responseHeaders())['x-edited'], 'yes');
  await edit('const ROOT_ID: i32 = "add_header";', 'const ROOT_ID = "add_header";');
});

/** A `wasmesh filter dev` child in watch mode: its output so far, waits on it, and a stop. */
async function watchMode(): Promise<{ output(): string; waitFor(pattern: RegExp, after: number, what: string): Promise<void>; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [WASMESH, 'filter', 'dev', ctx.dir, '--proxy', ctx.admin], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, after: number, what: string) => {
    const deadline = Date.now() + 60_000;
    while (!pattern.test(out.slice(after)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(out.slice(after), pattern, `${what}; filter dev printed:\n${out}`);
  };
  return {
    output: () => out,
    waitFor,
    async stop() {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Waits until the proxy's responses carry x-edited: value (the swapped module serves). */
async function servesEdited(value: string, what: string, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await responseHeaders())['x-edited'] !== value && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.is((await responseHeaders())['x-edited'], value, `${what}: the proxy serves the saved module; filter dev printed:\n${log()}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('watch mode picks up every way an editor saves, and prints when each build starts and ends', async () => {
  const dev = await watchMode();
  try {
    await dev.waitFor(/watching/, 0, 'the first build and swap');
    assert.match(dev.output(), /start: building .*\n.*swapped default\/add-header/, 'the first build is announced, then its swap');
    const file = source();
    const dirOf = path.dirname(file);
    let current = 'yes';
    // Each save changes x-edited from `current` to `next`, the way one kind of editor writes files.
    const saves: Array<[string, (text: string) => Promise<void>]> = [
      ['in place (write the same file)', (text) => writeFile(file, text)],
      ['write a new file, rename it over the old one', async (text) => {
        await writeFile(path.join(dirOf, '.index.ts.new'), text);
        await rename(path.join(dirOf, '.index.ts.new'), file);
      }],
      ['sed -i', async () => {
        const sed = spawnSync('sed', ['-i', `s/"x-edited", "${current}"/"x-edited", "sed"/`, file]);
        assert.is(sed.status, 0, String(sed.stderr));
      }],
      ['delete, then create', async (text) => {
        await unlink(file);
        await sleep(150);
        await writeFile(file, text);
      }],
      ["vim's backup dance (4913, rename to name~, write anew, delete name~)", async (text) => {
        await writeFile(path.join(dirOf, '4913'), '');
        await unlink(path.join(dirOf, '4913'));
        await rename(file, `${file}~`);
        await writeFile(file, text);
        await unlink(`${file}~`);
      }],
      ['in place again, after all the renames', (text) => writeFile(file, text)],
    ];
    for (const [how, save] of saves) {
      const next = how === 'sed -i' ? 'sed' : `v${saves.findIndex(([h]) => h === how)}`;
      const text = (await readFile(file, 'utf8')).replace(`"x-edited", "${current}"`, `"x-edited", "${next}"`);
      const before = dev.output().length;
      await save(text);
      await dev.waitFor(/assembly\/index\.ts changed: building/, before, `${how}: the build started`);
      await servesEdited(next, how, dev.output);
      await dev.waitFor(/swapped default\/add-header/, before, `${how}: the build ended with a swap`);
      current = next;
    }

    // A broken save: the error is printed, the proxy keeps the last good module, the next save works.
    let before = dev.output().length;
    const good = await readFile(file, 'utf8');
    await writeFile(file, good.replace('const ROOT_ID = "add_header";', 'const ROOT_ID: i32 = "add_header";'));
    await dev.waitFor(/build failed, the proxy keeps the last good module/, before, 'a failed build is reported');
    assert.match(dev.output().slice(before), /index\.ts:\d+:\d+/, 'with the file and line');
    assert.is((await responseHeaders())['x-edited'], current);
    before = dev.output().length;
    await writeFile(file, good.replace(`"x-edited", "${current}"`, '"x-edited", "saved"'));
    await servesEdited('saved', 'the save after a failed build', dev.output);
    // Debounced: a burst of saves is one build.
    before = dev.output().length;
    for (let i = 0; i < 5; i++) await writeFile(file, good.replace(`"x-edited", "${current}"`, `"x-edited", "burst"`));
    await servesEdited('burst', 'a burst of saves', dev.output);
    await sleep(500);
    assert.is(dev.output().slice(before).match(/changed: building/g)?.length, 1, `one build for the burst:\n${dev.output().slice(before)}`);
    if (process.env.WASMESH_TEST_VERBOSE) process.stderr.write(dev.output());
    await writeFile(file, good.replace(`"x-edited", "${current}"`, '"x-edited", "saved"'));
    await servesEdited('saved', 'the last save', dev.output);
  } finally {
    await dev.stop();
  }
});

test('a proxy that takes writes with a token only: refused without --admin-token-file, swapped with it', async () => {
  const token = path.join(ctx.tmp, 'admin-token');
  await writeFile(token, 'f'.repeat(40) + '\n', { mode: 0o600 });
  const guarded = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', moduleOverrides: true, adminAccess: { token: 'f'.repeat(40) } }, ctx.config);
  try {
    const edited = async () => (await request(guarded.outboundPort, { path: '/' })).headers['x-edited'];
    const before = await edited();
    await edit('"x-edited", "saved"', '"x-edited", "token"');
    assert.is.not(before, 'token');
    const refused = await dev(['--once'], `http://127.0.0.1:${guarded.adminPort}`);
    assert.is(refused.code, 1);
    assert.match(refused.err, /the proxy refused the module \(HTTP 401\)/);
    assert.match(refused.err, /Authorization: Bearer/);
    assert.is(await edited(), before, 'nothing changed');
    const r = await dev(['--once', '--admin-token-file', token], `http://127.0.0.1:${guarded.adminPort}`);
    assert.is(r.code, 0, r.err);
    assert.is(await edited(), 'token', 'the edited module serves');
  } finally {
    await guarded.stop(0);
  }
});

test.run();
