// jco's transpile of a component kept on disk by sha256: a second load reads it instead of running
// jco (and is faster), files are 0600 in a 0700 dir, a corrupted entry is ignored, removed and
// rebuilt, and the directory stays within its bound (least recently used out first).
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { clearTranspileMemory, ComponentFilter, transpileComponent } from '../src/component-filter/component-filter.ts';
import { TranspileCache } from '../src/component-filter/transpile-cache.ts';
import { jsAddHeaderComponent } from '../../wasm/test/support/component.ts';

let dir = '';
let bytes: Uint8Array = new Uint8Array();
const enc = new TextEncoder();

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-jco-cache-'));
  bytes = (await jsAddHeaderComponent()).bytes;
});

test.after(async () => {
  clearTranspileMemory();
  await rm(dir, { recursive: true, force: true });
});

test('the second load reads the disk cache, not jco, and is faster; the entry is 0600 in a 0700 dir', async () => {
  const cacheDir = join(dir, 'a', 'component-cache');
  const errors: string[] = [];
  const cache = new TranspileCache(cacheDir, { onError: (m) => errors.push(m) });
  clearTranspileMemory();
  const first = await transpileComponent(bytes, 'add-header.js', cache);
  assert.is(first.fromDisk, false);
  assert.is(cache.writes, 1);
  const files = await readdir(cacheDir);
  assert.is(files.length, 1);
  assert.ok(files[0].startsWith(first.sha256), files[0]);
  assert.is((await stat(join(cacheDir, files[0]))).mode & 0o777, 0o600);
  assert.is((await stat(cacheDir)).mode & 0o777, 0o700);

  clearTranspileMemory();
  const second = await transpileComponent(bytes, 'add-header.js', cache);
  assert.is(second.fromDisk, true);
  assert.is(cache.hits, 1);
  assert.ok(second.ms < first.ms, `from disk ${second.ms.toFixed(0)} ms, jco ${first.ms.toFixed(0)} ms`);
  assert.is(second.js, first.js);
  assert.equal(Object.keys(second.cores), Object.keys(first.cores));
  // What came from the disk runs.
  clearTranspileMemory();
  const filter = await ComponentFilter.load(bytes, enc.encode('{"request":{"x-a":"1"}}'), 'add-header.js', { cache });
  const r = filter.onRequestHeaders({ streamId: 1n, properties: [], shared: [] }, [], true);
  assert.equal(r.headers.set.map(([n]) => n), ['x-a']);
  assert.equal(errors, []);
});

test('a corrupted entry is ignored, removed and rebuilt by jco', async () => {
  const cacheDir = join(dir, 'b');
  const errors: string[] = [];
  const cache = new TranspileCache(cacheDir, { onError: (m) => errors.push(m) });
  clearTranspileMemory();
  const first = await transpileComponent(bytes, 'add-header.js', cache);
  const file = cache.fileFor(first.sha256);
  const data = await readFile(file);
  // One byte of the core module flipped, near the end.
  data[data.length - 100] ^= 0xff;
  await writeFile(file, data);

  clearTranspileMemory();
  const again = await transpileComponent(bytes, 'add-header.js', cache);
  assert.is(again.fromDisk, false, 'not served from the corrupted entry');
  assert.is(cache.rejected, 1);
  assert.match(errors[0], /is ignored and rebuilt: payload does not match its sha256/);
  assert.is(cache.writes, 2, 'rewritten');
  clearTranspileMemory();
  assert.is((await transpileComponent(bytes, 'add-header.js', cache)).fromDisk, true, 'the rebuilt entry is sound');
});

test('a truncated or foreign entry is refused and removed', async () => {
  const errors: string[] = [];
  const cache = new TranspileCache(join(dir, 'd'), { onError: (m) => errors.push(m) });
  const sha = 'ab'.repeat(32);
  await cache.write(sha, { js: 'export const x = 1;', cores: { 'filter.core.wasm': new Uint8Array(500).fill(7) }, imports: [] });
  const file = cache.fileFor(sha);
  const whole = await readFile(file);
  await writeFile(file, whole.subarray(0, whole.length - 100));
  assert.is(await cache.read(sha), undefined);
  assert.match(errors[0], /payload is \d+ bytes, expected 519/);
  assert.equal(await readdir(join(dir, 'd')), [], 'removed');
  await writeFile(file, 'something else\n');
  assert.is(await cache.read(sha), undefined);
  assert.match(errors[1], /not a wasmesh jco cache file/);
});

test('the directory stays within its bound: the least recently used entries go first', async () => {
  const cacheDir = join(dir, 'c');
  const cache = new TranspileCache(cacheDir, { maxBytes: 3000 });
  const entry = (n: number) => ({ js: `export const n = ${n};`, cores: { 'filter.core.wasm': new Uint8Array(1000).fill(n) }, imports: [] });
  const sha = (n: number) => String(n).repeat(64).slice(0, 64);
  await cache.write(sha(1), entry(1));
  await new Promise((r) => setTimeout(r, 20));
  await cache.write(sha(2), entry(2));
  await new Promise((r) => setTimeout(r, 20));
  // Reading 1 makes it the most recently used: 2 is the one to go.
  assert.ok(await cache.read(sha(1)));
  await new Promise((r) => setTimeout(r, 20));
  await cache.write(sha(3), entry(3));
  const left = (await readdir(cacheDir)).map((f) => f.slice(0, 1)).sort();
  assert.equal(left, ['1', '3']);
  assert.is((await cache.read(sha(2))), undefined);
  assert.is((await cache.read(sha(3)))?.js, 'export const n = 3;');
});

test.run();
