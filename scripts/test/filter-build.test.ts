// `wasmesh filter build --keep-going`, what npm start's prestart runs: a filter folder that does not
// compile is a warning naming its folder and error, the others are built, and the exit status is 0;
// without the flag the same tree fails the build.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');

function run(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [wasmesh, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('--keep-going: a broken filter is a warning with its folder and error; the others build; exit 0', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'wasmesh-keep-going-'));
  try {
    const skipBuild = (src: string) => path.basename(src) !== 'build';
    await cp(path.join(repoRoot, 'filters/examples/add-header'), path.join(root, 'filters/examples/add-header'), { recursive: true, filter: skipBuild });
    await cp(path.join(repoRoot, 'filters/common'), path.join(root, 'filters/common'), { recursive: true, filter: skipBuild });
    await mkdir(path.join(root, 'filters/my-filter/assembly'), { recursive: true });
    await writeFile(path.join(root, 'filters/my-filter/filter.json'), JSON.stringify({ id: 'my-filter', name: 'my-filter', abi: '0.2.1', rootId: 'my_filter' }));
    await writeFile(path.join(root, 'filters/my-filter/assembly/index.ts'), 'export function f(): i32 {\n  return notDefined;\n}\n');

    const strict = await run(['filter', 'build', '--all', 'filters', '--quiet'], root);
    assert.is(strict.code, 1, strict.stderr);

    const r = await run(['filter', 'build', '--all', 'filters', '--quiet', '--keep-going'], root);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /wasmesh filter build: warning: filters\/my-filter was not built \(--keep-going\): compilation failed/);
    assert.match(r.stderr, "filters/my-filter/assembly/index.ts:2:10: error TS2304: Cannot find name 'notDefined'.");
    assert.match(r.stderr, 'warning: 1 filter not built: filters/my-filter');
    assert.ok(existsSync(path.join(root, 'filters/examples/add-header/build/add-header.wasm')), 'the good filter was built');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  // What npm start builds before the demo.
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts.prestart!, /filter build --all .*--keep-going/);
});

test.run();
