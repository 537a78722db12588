// The standalone proxy's config watch (`wasmesh proxy --config <file|dir>`): every way people edit
// files reloads — in place (same inode), replaced by rename, `sed -i`, a Kubernetes ConfigMap's
// symlink swap, files added and removed — bursts are debounced, and reloads never overlap.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, mkdirSync, unlinkSync, writeFileSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { watchConfigFile } from '../src/config/file-source.ts';

interface Ctx {
  dir: string;
  calls: number;
  stop?: () => void;
}

const test = suite<Ctx>('config watch', { dir: '', calls: 0 });
const FAST = { debounceMs: 20, pollMs: 200 };

test.before.each((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-watch-'));
  ctx.calls = 0;
  ctx.stop = undefined;
});
test.after.each((ctx) => {
  ctx.stop?.();
  rmSync(ctx.dir, { recursive: true, force: true });
});

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const settle = (ms = 400) => new Promise((r) => setTimeout(r, ms));

/** Watches `path`, counting reloads; waits until the watch is quiet before the test edits anything. */
async function watchCounting(ctx: Ctx, path: string): Promise<void> {
  ctx.stop = watchConfigFile(path, () => void ctx.calls++, FAST);
  await settle(100);
  ctx.calls = 0;
}

/** Overwrites a file through an fd opened for writing: same inode, as `echo >` or an editor that saves in place. */
function writeInPlace(file: string, text: string): void {
  const fd = openSync(file, 'r+');
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
}

test('a directory: a file written in place (same inode) reloads', async (ctx) => {
  const file = join(ctx.dir, 'mesh.yaml');
  writeFileSync(file, 'a: 1\n');
  const inode = statSync(file).ino;
  await watchCounting(ctx, ctx.dir);
  writeInPlace(file, 'a: 2\n');
  assert.is(statSync(file).ino, inode, 'the edit kept the inode');
  await waitFor('a reload', () => ctx.calls >= 1);
});

test('a directory: a file replaced by rename reloads, and so does sed -i', async (ctx) => {
  const file = join(ctx.dir, 'mesh.yaml');
  writeFileSync(file, 'a: 1\n');
  await watchCounting(ctx, ctx.dir);
  writeFileSync(join(ctx.dir, '.mesh.yaml.tmp'), 'a: 2\n');
  renameSync(join(ctx.dir, '.mesh.yaml.tmp'), file);
  await waitFor('a reload after the rename', () => ctx.calls >= 1);
  await settle();
  const before = ctx.calls;
  execFileSync('sed', ['-i', 's/a: 2/a: 3/', file]);
  assert.is(readFileSync(file, 'utf8'), 'a: 3\n');
  await waitFor('a reload after sed -i', () => ctx.calls > before);
});

test('a directory: adding and removing a file reloads; other files do not', async (ctx) => {
  writeFileSync(join(ctx.dir, 'a.yaml'), 'a: 1\n');
  await watchCounting(ctx, ctx.dir);
  writeFileSync(join(ctx.dir, 'b.json'), '{"b": 1}');
  await waitFor('a reload after adding a file', () => ctx.calls >= 1);
  await settle();
  const afterAdd = ctx.calls;
  unlinkSync(join(ctx.dir, 'b.json'));
  await waitFor('a reload after removing a file', () => ctx.calls > afterAdd);
  await settle();
  const afterRemove = ctx.calls;
  writeFileSync(join(ctx.dir, 'notes.txt'), 'not config');
  writeFileSync(join(ctx.dir, '.a.yaml.swp'), 'editor state');
  await settle(700); // past a poll or two
  assert.is(ctx.calls, afterRemove, 'files the proxy does not read change nothing');
});

test('a directory laid out as a Kubernetes ConfigMap volume: the ..data symlink swap reloads', async (ctx) => {
  // mesh.yaml -> ..data/mesh.yaml, ..data -> ..v1; an update writes ..v2 and renames a new
  // ..data link over the old one: the only events name ..data_tmp and ..data.
  mkdirSync(join(ctx.dir, '..v1'));
  writeFileSync(join(ctx.dir, '..v1', 'mesh.yaml'), 'a: 1\n');
  symlinkSync('..v1', join(ctx.dir, '..data'));
  symlinkSync(join('..data', 'mesh.yaml'), join(ctx.dir, 'mesh.yaml'));
  await watchCounting(ctx, ctx.dir);
  mkdirSync(join(ctx.dir, '..v2'));
  writeFileSync(join(ctx.dir, '..v2', 'mesh.yaml'), 'a: 2\n');
  symlinkSync('..v2', join(ctx.dir, '..data_tmp'));
  renameSync(join(ctx.dir, '..data_tmp'), join(ctx.dir, '..data'));
  assert.is(readFileSync(join(ctx.dir, 'mesh.yaml'), 'utf8'), 'a: 2\n');
  await waitFor('a reload after the swap', () => ctx.calls >= 1);
});

test('a single file: written in place and replaced by rename both reload', async (ctx) => {
  const file = join(ctx.dir, 'mesh.yaml');
  writeFileSync(file, 'a: 1\n');
  await watchCounting(ctx, file);
  writeInPlace(file, 'a: 2\n');
  await waitFor('a reload after the in-place write', () => ctx.calls >= 1);
  await settle();
  const before = ctx.calls;
  writeFileSync(join(ctx.dir, 'new.tmp'), 'a: 3\n');
  renameSync(join(ctx.dir, 'new.tmp'), file);
  await waitFor('a reload after the rename', () => ctx.calls > before);
});

test('a burst of writes is debounced, reloads never overlap, and the last write is what the last reload reads', async (ctx) => {
  const file = join(ctx.dir, 'mesh.yaml');
  writeFileSync(file, 'n: 0\n');
  let active = 0;
  let overlapped = false;
  const seen: string[] = [];
  ctx.stop = watchConfigFile(
    ctx.dir,
    async () => {
      active++;
      if (active > 1) overlapped = true;
      // A slow reload, so that writes land while it runs.
      await new Promise((r) => setTimeout(r, 60));
      seen.push(readFileSync(file, 'utf8'));
      active--;
    },
    FAST,
  );
  await settle(100);
  for (let n = 1; n <= 30; n++) {
    writeInPlace(file, `n: ${n}\n`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await waitFor('the last write to be read', () => seen.at(-1) === 'n: 30\n');
  await settle();
  assert.not.ok(overlapped, 'two reloads ran at once');
  assert.ok(seen.length <= 8, `30 writes in ~0.2 s gave ${seen.length} reloads`);
  assert.is(seen.at(-1), 'n: 30\n');
});

test('after stop, edits call nothing', async (ctx) => {
  const file = join(ctx.dir, 'mesh.yaml');
  writeFileSync(file, 'a: 1\n');
  await watchCounting(ctx, ctx.dir);
  ctx.stop!();
  writeInPlace(file, 'a: 2\n');
  await settle(600);
  assert.is(ctx.calls, 0);
});

test.run();
