// Tests for `wasmesh run`: the command reaches its own sidecar through WASMESH_OUTBOUND (and sees
// HTTP_PROXY and PORT), its exit code is wasmesh run's, the sidecar is stopped afterwards, and a
// sidecar killed while the command runs is started again on the same ports.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../cli/run.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-run-test-'));
  // A mesh with one service "echo" whose endpoint is nothing: the sidecar answers for it itself.
  await writeFile(
    path.join(tmp, 'mesh.yaml'),
    ['apiVersion: networking.istio.io/v1', 'kind: ServiceEntry', 'metadata: { name: echo, namespace: default }', 'spec:', '  hosts: [echo]', '  location: MESH_INTERNAL', '  resolution: STATIC', '  ports: [{ number: 80, name: http, protocol: HTTP }]', '  endpoints: [{ address: 127.0.0.1, ports: { http: 1 } }]', ''].join('\n'),
  );
});
test.after(async () => {
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

function runWasmesh(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [wasmesh, ...args], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wasmesh ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, pid: child.pid! });
    });
  });
}

/** Processes whose command line contains `pattern` (none: []). */
function processesMatching(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
  } catch {
    return [];
  }
}

test('the command reaches its sidecar, its exit code propagates, the sidecar stops', async () => {
  // The app calls its sidecar's outbound listener: an unknown host gets the proxy's own 404 (no route).
  const script = [
    'const out = process.env.WASMESH_OUTBOUND;',
    'if (!out || process.env.HTTP_PROXY !== out || process.env.PORT !== "18999") process.exit(3);',
    'const http = require("node:http");',
    'const u = new URL(out);',
    'http.get({ host: u.hostname, port: u.port, path: "/", headers: { host: "nowhere.example" } }, (res) => {',
    '  res.resume();',
    '  console.log("status " + res.statusCode + " server " + res.headers.server);',
    '  process.exit(res.statusCode === 404 ? 7 : 4);',
    '}).on("error", (e) => { console.log(e.message); process.exit(5); });',
  ].join('\n');
  const marker = path.join(tmp, 'mesh.yaml');
  const r = await runWasmesh(['run', '--service', 'probe', '--port', '18999', '--config', marker, '--', process.execPath, '-e', script], 30_000);
  assert.is(r.code, 7, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(r.stdout, /status 404/);
  assert.match(r.stderr, /sidecar outbound 127\.0\.0\.1:\d+/);
  // The sidecar (a `wasmesh proxy --config <tmp>/mesh.yaml` child) is gone.
  assert.equal(processesMatching(marker), []);
});

test('usage errors exit 2', async () => {
  const r = await runWasmesh(['run', '--service', 'x', '--config', 'm.yaml', '--', 'true'], 15_000);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--port is required/);
  const noCommand = await runWasmesh(['run', '--service', 'x', '--port', '1', '--config', 'm.yaml'], 15_000);
  assert.is(noCommand.code, 2);
  assert.match(noCommand.stderr, /no command/);
});

/** GET / on a new connection: status and body, or status 0 when it fails. */
function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.setTimeout(3000, () => req.destroy());
  });
}

/** The `wasmesh proxy` child of process `pid`, if any. */
function sidecarOf(pid: number): number | undefined {
  let children: number[];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return undefined;
  }
  return children.find((c) => {
    try {
      return readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('proxy\0--workload');
    } catch {
      return false;
    }
  });
}

test('a sidecar killed while the app runs is started again on the same ports; the app keeps running', async () => {
  const appPort = await freePort();
  // The app answers with its pid, so the test sees it is the same process after the sidecar's restart.
  const app = 'require("node:http").createServer((q, s) => s.end("app " + process.pid)).listen(Number(process.env.PORT), "127.0.0.1")';
  const child = spawn(process.execPath, [wasmesh, 'run', '--service', 'restarts', '--port', String(appPort), '--config', path.join(tmp, 'mesh.yaml'), '--', process.execPath, '-e', app], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = async (what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await until('the sidecar', () => /inbound 127\.0\.0\.1:(\d+) -> app/.test(stderr), 30_000);
    const inbound = Number(/inbound 127\.0\.0\.1:(\d+) -> app/.exec(stderr)![1]);
    let first = { status: 0, body: '' };
    await until('the app through the sidecar', async () => (first = await get(inbound)).status === 200, 10_000);
    assert.match(first.body, /^app \d+$/);
    const sidecar = sidecarOf(child.pid!);
    assert.ok(sidecar, 'the sidecar is a child of wasmesh run');
    process.kill(sidecar!, 'SIGKILL');
    await until('the restart', () => /the sidecar \(pid \d+\) exited unexpectedly \(SIGKILL\); starting it again in \d+ ms/.test(stderr) && /the sidecar restarted \(pid \d+, restart 1\)/.test(stderr), 10_000);
    let again = { status: 0, body: '' };
    await until('the app through the new sidecar', async () => (again = await get(inbound)).status === 200, 30_000);
    assert.is(again.body, first.body, 'the same app process answers through the same inbound port');
    const restarted = sidecarOf(child.pid!);
    assert.ok(restarted !== undefined && restarted !== sidecar, 'a new sidecar process');
    child.kill('SIGTERM');
    await exited;
    assert.throws(() => process.kill(restarted!, 0), /ESRCH/, 'the restarted sidecar is stopped with the app');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test.run();
