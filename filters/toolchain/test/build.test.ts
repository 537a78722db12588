// Tests for filters/toolchain/build.ts: builds the add-header example into a temporary copy, checks
// the module's imports and exports, runs it under a minimal in-test proxy-wasm host (which exercises
// the patched SDK: pinning, log-level guard, configuration), and checks compile-error reporting.

import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterBuildError, buildFilter, commonDirs, findFilterDirs, verifyFilterModule } from '../build.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const exampleDir = path.join(repoRoot, 'filters/examples/add-header');
const commonDir = path.join(repoRoot, 'filters/common');
const silent = { write: () => true };
const quiet = { quiet: true, stdout: silent, stderr: silent };

let tmpRoot = '';
let builtWasm = '';

test.before(async () => {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-filter-build-'));
});

test.after(async () => {
  if (tmpRoot !== '') await rm(tmpRoot, { recursive: true, force: true });
});

/** Copies the example to <tmp>/<name>/examples/add-header, with filters/common beside it as <tmp>/<name>/common. */
async function copyExample(name: string): Promise<string> {
  const dir = path.join(tmpRoot, name, 'examples', 'add-header');
  await cp(exampleDir, dir, { recursive: true, filter: (src) => path.basename(src) !== 'build' });
  await cp(commonDir, path.join(tmpRoot, name, 'common'), { recursive: true, filter: (src) => path.basename(src) !== 'build' });
  return dir;
}

test('builds the add-header example with the expected imports and exports', async () => {
  const dir = await copyExample('add-header');
  const result = await buildFilter(dir, quiet);
  assert.is(result.name, 'add-header');
  assert.is(result.wasmPath, path.join(dir, 'build', 'add-header.wasm'));
  const bytes = await readFile(result.wasmPath);
  assert.is(result.bytes, bytes.byteLength);
  assert.not.ok(existsSync(path.join(dir, 'build', 'add-header.wat')), 'no .wat without debug');
  builtWasm = result.wasmPath;

  const module = await WebAssembly.compile(bytes);
  const exports = WebAssembly.Module.exports(module).map((e) => `${e.name}:${e.kind}`);
  for (const name of [
    '_initialize:function', 'memory:memory', 'malloc:function', 'proxy_abi_version_0_2_1:function',
    'proxy_on_context_create:function', 'proxy_on_vm_start:function', 'proxy_on_configure:function',
    'proxy_on_request_headers:function', 'proxy_on_response_headers:function', 'proxy_on_done:function',
    'proxy_on_log:function', 'proxy_on_delete:function',
  ]) {
    assert.ok(exports.includes(name), `exports ${name}`);
  }
  const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
  assert.ok(imports.includes('wasi_unstable.proc_exit'), 'abort path imports wasi_unstable.proc_exit');
  assert.ok(imports.includes('env.proxy_get_log_level'), 'reads the host log level');
  assert.not.ok(imports.includes('env.abort'), 'no env.abort');
  assert.not.ok(imports.includes('env.proxy_clear_route_cache'), 'no 0.1.0-only import');
  for (const i of imports) assert.ok(/^(env\.proxy_|wasi_unstable\.)/.test(i), `unexpected import ${i}`);
  assert.equal(await verifyFilterModule(bytes, { abi: '0.2.1' }), []);

  const again = await buildFilter(dir, quiet);
  assert.is(again.skipped, true, 'second build is skipped when nothing changed');
  assert.is(again.bytes, result.bytes);

  // A change in the shared common/ folder makes the filter stale.
  const shared = path.join(dir, '../../common/assembly/json.ts');
  await writeFile(shared, `${await readFile(shared, 'utf8')}\n`);
  const rebuilt = await buildFilter(dir, quiet);
  assert.is(rebuilt.skipped, undefined, 'rebuilt after filters/common changed');
});

test('debug builds also write a .wat', async () => {
  const dir = await copyExample('add-header-debug');
  const result = await buildFilter(dir, { ...quiet, debug: true });
  const wat = await readFile(path.join(dir, 'build', 'add-header.wat'), 'utf8');
  assert.ok(wat.startsWith('(module'));
  assert.ok(result.bytes > 0);
});

test('the built module runs under a minimal proxy-wasm host', async () => {
  assert.ok(builtWasm !== '', 'built by the first test');
  const module = await WebAssembly.compile(await readFile(builtWasm));
  const config = JSON.parse(await readFile(path.join(exampleDir, 'example/config.json'), 'utf8')) as unknown;

  const info = await runHost(module, { level: 2, config: JSON.stringify(config), requests: 3 });
  assert.is(info.configured, 1);
  assert.equal(Object.fromEntries(info.maps[0]), { 'x-wasmesh-example': 'hello' });
  assert.equal(Object.fromEntries(info.maps[2]), { 'x-powered-by': 'wasmesh' });
  assert.equal([...info.metrics.values()], [{ name: 'add_header_requests_total', value: 3n }]);
  assert.equal(info.logs.filter((l) => l.level < 2), [], 'no debug logs at info level');

  const debug = await runHost(module, { level: 1, config: JSON.stringify(config), requests: 1 });
  assert.ok(debug.logs.some((l) => l.level === 1 && l.message.includes('add-header: context')), 'debug log per request');

  const bad = await runHost(module, { level: 2, config: '{"request": {"x-a": 1}}', requests: 0 });
  assert.is(bad.configured, 0, 'bad configuration is rejected');
  const error = bad.logs.find((l) => l.level === 4);
  assert.ok(error?.message.includes('"request"."x-a": the value must be a string'), error?.message);

  // Every blob the host returns through malloc is unpinned again: 5000 reconfigurations with a
  // 4 KiB configuration (20 MB if leaked) must not grow memory.
  const big = JSON.stringify({ request: { 'x-pad': 'p'.repeat(4096) } });
  const many = await runHost(module, { level: 2, config: big, requests: 0, reconfigure: 5000 });
  assert.ok(many.memoryBytes <= 1024 * 1024, `memory stayed small (${many.memoryBytes} bytes)`);
});

test('a syntax error fails with the file and line', async () => {
  const dir = path.join(tmpRoot, 'broken');
  await mkdir(path.join(dir, 'assembly'), { recursive: true });
  await writeFile(path.join(dir, 'filter.json'), JSON.stringify({ id: 'wasmesh.filters.http.broken', name: 'broken', version: '0.0.1', abi: '0.2.1', rootId: 'broken' }));
  await writeFile(path.join(dir, 'assembly', 'index.ts'), [
    'export * from "@solo-io/proxy-runtime/proxy";',
    'export function broken(): i32 {',
    '  let x: i32 = = 3;',
    '  return x;',
    '}',
    '',
  ].join('\n'));
  let caught: unknown;
  try {
    await buildFilter(dir, quiet);
  } catch (err) {
    caught = err;
  }
  assert.instance(caught, FilterBuildError);
  const message = (caught as Error).message;
  assert.ok(message.includes(dir) && message.includes('compilation failed'), message);
  assert.match(message, /assembly[/\\]index\.ts:3:16: error TS1109/);
  const diag = (caught as FilterBuildError).diagnostics[0];
  assert.is(diag?.line, 3);
  assert.is(diag?.file, path.join(dir, 'assembly', 'index.ts'));
  assert.not.ok(existsSync(path.join(dir, 'build')), 'nothing written');
});

test('verifyFilterModule reports what a host would reject', async () => {
  // A module whose only content is an env.abort import.
  const bytes = Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
    0x02, 0x0d, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x05, 0x61, 0x62, 0x6f, 0x72, 0x74, 0x00, 0x00,
  ]);
  const problems = (await verifyFilterModule(bytes)).join('\n');
  for (const word of ['_initialize', 'memory', 'malloc', 'proxy_abi_version_', 'env.abort']) {
    assert.ok(problems.includes(word), `reports ${word}`);
  }
});

test('findFilterDirs finds filter folders and skips build and node_modules', async () => {
  const root = path.join(tmpRoot, 'tree');
  for (const d of ['a', 'group/b', 'group/b/build/c', 'node_modules/d']) {
    await mkdir(path.join(root, d), { recursive: true });
    await writeFile(path.join(root, d, 'filter.json'), '{}');
  }
  assert.equal(await findFilterDirs(root), [path.join(root, 'a'), path.join(root, 'group/b')]);
});

test('common/ folders are never filters, and every one above a filter counts for its staleness', async () => {
  const root = path.join(tmpRoot, 'shared');
  for (const d of ['common', 'common/test/fixture', 'group/common', 'group/f']) await mkdir(path.join(root, d), { recursive: true });
  await writeFile(path.join(root, 'common/test/fixture/filter.json'), '{}');
  await writeFile(path.join(root, 'group/f/filter.json'), '{}');
  assert.equal(await findFilterDirs(root), [path.join(root, 'group/f')]);
  assert.equal(commonDirs(path.join(root, 'group/f')).slice(0, 2), [path.join(root, 'group/common'), path.join(root, 'common')]);
  assert.equal(commonDirs(path.join(repoRoot, 'filters/policy')), [path.join(repoRoot, 'filters/common')]);
});

// --- a minimal proxy-wasm host, just enough for add-header -----------------------------------------

interface HostRun {
  configured: number;
  maps: Map<string, string>[];
  metrics: Map<number, { name: string; value: bigint }>;
  logs: { level: number; message: string }[];
  memoryBytes: number;
}

async function runHost(
  module: WebAssembly.Module,
  opts: { level: number; config: string; requests: number; reconfigure?: number },
): Promise<HostRun> {
  let memory: WebAssembly.Memory | undefined;
  let malloc: ((size: number) => number) | undefined;
  const config = Buffer.from(opts.config);
  const logs: HostRun['logs'] = [];
  const maps = [0, 1, 2, 3].map(() => new Map<string, string>());
  const metrics: HostRun['metrics'] = new Map();
  let nextMetric = 4;
  const view = () => new DataView(memory!.buffer);
  const text = (ptr: number, len: number) => Buffer.from(memory!.buffer, ptr >>> 0, len >>> 0).toString('utf8');
  const returnBlob = (data: Uint8Array, ptrOut: number, lenOut: number) => {
    if (data.length === 0) {
      view().setUint32(ptrOut, 0, true);
      view().setUint32(lenOut, 0, true);
      return 0;
    }
    const addr = malloc!(data.length) >>> 0;
    new Uint8Array(memory!.buffer).set(data, addr);
    view().setUint32(ptrOut, addr, true);
    view().setUint32(lenOut, data.length, true);
    return 0;
  };
  const env: Record<string, (...args: never[]) => unknown> = {
    proxy_log: (level: number, ptr: number, len: number) => (logs.push({ level, message: text(ptr, len) }), 0),
    proxy_get_log_level: (out: number) => (view().setUint32(out, opts.level, true), 0),
    proxy_get_property: (ptr: number, len: number, ptrOut: number, lenOut: number) =>
      text(ptr, len) === 'plugin_root_id' ? returnBlob(Buffer.from('add_header'), ptrOut, lenOut) : 1,
    proxy_get_buffer_bytes: (type: number, start: number, max: number, ptrOut: number, lenOut: number) =>
      type === 7 ? returnBlob(config.subarray(start, start + max), ptrOut, lenOut) : 1,
    proxy_define_metric: (_type: number, ptr: number, len: number, idOut: number) => {
      const id = nextMetric;
      nextMetric += 4;
      metrics.set(id, { name: text(ptr, len), value: 0n });
      view().setUint32(idOut, id, true);
      return 0;
    },
    proxy_increment_metric: (id: number, delta: bigint) => {
      const m = metrics.get(id);
      if (!m) return 1;
      m.value += delta;
      return 0;
    },
    proxy_replace_header_map_value: (map: number, kp: number, kl: number, vp: number, vl: number) => {
      maps[map]!.set(text(kp, kl), text(vp, vl));
      return 0;
    },
    proxy_set_effective_context: () => 0,
  };
  const imports: WebAssembly.Imports = {
    env: {},
    wasi_unstable: {
      proc_exit: (code: number) => {
        throw new Error(`proc_exit(${code}); last logs: ${JSON.stringify(logs.slice(-3))}`);
      },
    },
  };
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.module !== 'env') continue;
    const fn = env[i.name];
    (imports.env as Record<string, unknown>)[i.name] = fn ?? (() => {
      throw new Error(`test host: unexpected import ${i.name}`);
    });
  }
  const instance = await WebAssembly.instantiate(module, imports);
  const e = instance.exports as Record<string, (...args: number[]) => number>;
  memory = instance.exports.memory as WebAssembly.Memory;
  malloc = e.malloc;
  e._initialize!();
  e.proxy_on_context_create!(1, 0);
  assert.is(e.proxy_on_vm_start!(1, 0), 1);
  const configured = e.proxy_on_configure!(1, config.length);
  for (let i = 0; i < (opts.reconfigure ?? 0); i++) e.proxy_on_configure!(1, config.length);
  for (let i = 0; i < opts.requests; i++) {
    const id = 2 + i;
    e.proxy_on_context_create!(id, 1);
    e.proxy_on_request_headers!(id, 4, 1);
    e.proxy_on_response_headers!(id, 2, 0);
    e.proxy_on_done!(id);
    e.proxy_on_log!(id);
    e.proxy_on_delete!(id);
  }
  return { configured, maps, metrics, logs, memoryBytes: memory.buffer.byteLength };
}

test.run();
