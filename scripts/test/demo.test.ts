// Tests for `wasmesh demo`: with --exit-after-ready it starts the orchestrator and the Bookinfo-like
// mesh, waits for a request to go productpage -> reviews -> ratings through the sidecars (mTLS
// STRICT), prints the guide, stops everything and exits 0, leaving no process and no temporary dir.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');

function processesMatching(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
  } catch {
    return [];
  }
}

test('demo --exit-after-ready comes up, prints the guide and leaves nothing behind', async () => {
  const started = Date.now();
  const child = spawn(process.execPath, [wasmesh, 'demo', '--exit-after-ready'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, 90_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const output = `stdout:\n${stdout}\nstderr:\n${stderr}`;
  assert.is(code, 0, output);
  assert.ok(Date.now() - started < 90_000, output);
  assert.match(stdout, /wasmesh demo is up/);
  assert.match(stdout, /curl -H 'host: productpage' http:\/\/127\.0\.0\.1:\d+\/productpage/);
  assert.match(stdout, /\/stats\/prometheus/);
  assert.match(stdout, /try\/reviews-v3\.yaml/);
  assert.match(stdout, /wasmesh proxy-status/);
  // The sample answer went through reviews to ratings.
  assert.match(stdout, /sample answer: \{"service":"productpage"/);
  assert.match(stderr, /first request through the mesh end to end/);
  // A filter deployed through the orchestrator served that request; the guide rolls out its next version.
  assert.match(stderr, /served by x-demo-filter: add-header@1\.0\.0/);
  assert.match(stdout, /wasmesh filter rollout demo-header --to 1\.1\.0/);

  const tmp = /cat (\S+)\/orchestrator\/admin-token/.exec(stdout)?.[1];
  assert.ok(tmp, output);
  assert.not.ok(existsSync(tmp!), `${tmp} was left behind`);
  assert.equal(processesMatching(tmp!), [], 'processes of the demo are still running');
});

test.run();
