// Tests for `wasmesh run`: the command reaches its own sidecar through WASMESH_OUTBOUND (and sees
// HTTP_PROXY and PORT), its exit code is wasmesh run's, the sidecar is stopped afterwards, and a
// sidecar killed while the command runs is started again on the same ports.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { appEnvironment, freePort, sidecarArgs } from '../cli/run.ts';
import { PROXY_NODE_FLAGS } from '../cli/proxy-node-flags.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');
/** The `wasmesh` command users run (package.json bin): `run` supervises from a shell, not from Node. */
const wasmeshCommand = path.join(repoRoot, 'scripts/wasmesh');

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
    const child = spawn(wasmeshCommand, args, { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
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

test('--tcp-outbound: the command gets WASMESH_TCP_<port> and reaches the TCP service through its sidecar', async () => {
  // A TCP service whose endpoint is this test's echo server.
  const echo = net.createServer((s) => s.on('data', (d: Buffer) => s.end(`echo:${d}`)));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const file = path.join(tmp, 'tcp-mesh.yaml');
  await writeFile(
    file,
    ['apiVersion: networking.istio.io/v1', 'kind: ServiceEntry', 'metadata: { name: db, namespace: default }', 'spec:', '  hosts: [db.example.com]', '  location: MESH_EXTERNAL', '  resolution: STATIC', '  ports: [{ number: 5432, name: tcp, protocol: TCP }]', `  endpoints: [{ address: 127.0.0.1, ports: { tcp: ${echoPort} } }]`, ''].join('\n'),
  );
  const script = [
    'const [host, port] = (process.env.WASMESH_TCP_5432 || ":").split(":");',
    'const s = require("node:net").connect({ host, port: Number(port) }, () => s.write("ping"));',
    'let got = ""; s.on("data", (d) => (got += d)); s.on("close", () => { console.log(got); process.exit(got === "echo:ping" ? 7 : 4); });',
    's.on("error", (e) => { console.log(e.message); process.exit(5); });',
  ].join('\n');
  try {
    const r = await runWasmesh(['run', '--service', 'client', '--port', '18998', '--config', file, '--tcp-outbound', '5432', '--', process.execPath, '-e', script], 30_000);
    assert.is(r.code, 7, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  } finally {
    echo.close();
  }
  const bad = await runWasmesh(['run', '--service', 'x', '--port', '1', '--config', 'm.yaml', '--tcp-port', 'db', '--', 'true'], 15_000);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--tcp-port db: use NAME=APP_PORT/);
});

test('--tcp-port: the sidecar serves the app port on its own listener and registers it under the port name', async () => {
  const opts = { service: 'db', version: 'v1', namespace: 'default', appPort: 8080, command: ['x'], orchestrator: '127.0.0.1:15010', tcpPorts: [{ name: 'tcp-postgres', appPort: 5432 }], tcpOutbound: [6379] };
  const tcp = { inbound: [40001], outbound: new Map([[6379, 40002]]) };
  const args = sidecarArgs(opts, { outboundPort: 1, inboundPort: 2, adminPort: 3, tcp }, '/tmp/d');
  const pairs = (flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
  assert.equal(pairs('--tcp-inbound'), ['40001=5432']);
  assert.equal(pairs('--tcp-outbound'), ['6379=40002']);
  assert.equal(pairs('--register-port'), ['http=2', 'tcp-postgres=40001']);
  assert.is(appEnvironment(opts, 1, tcp).WASMESH_TCP_6379, '127.0.0.1:40002');
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

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The `wasmesh proxy` child of process `pid`, if any. */
function sidecarOf(pid: number): number | undefined {
  const children = childrenOf(pid);
  return children.find((c) => {
    try {
      return readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('proxy\0--workload');
    } catch {
      return false;
    }
  });
}

for (const [entry, command] of [['the wasmesh command (shell supervisor)', [wasmeshCommand]], ['scripts/wasmesh.mjs (Node supervisor, as the demo uses)', [process.execPath, wasmesh]]] as const) {
test(`${entry}: a sidecar killed while the app runs is started again on the same ports; the app keeps running`, async () => {
  const appPort = await freePort();
  // The app answers with its pid, so the test sees it is the same process after the sidecar's restart.
  const app = 'require("node:http").createServer((q, s) => s.end("app " + process.pid)).listen(Number(process.env.PORT), "127.0.0.1")';
  const child = spawn(command[0], [...command.slice(1), 'run', '--service', 'restarts', '--port', String(appPort), '--config', path.join(tmp, 'mesh.yaml'), '--', process.execPath, '-e', app], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
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
    assert.is(await exited, 143, 'wasmesh run ends as a SIGTERM ends a process');
    assert.throws(() => process.kill(restarted!, 0), /ESRCH/, 'the restarted sidecar is stopped with the app');
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      for (const pid of childrenOf(child.pid!)) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
    }
  }
});
}

test('the wasmesh command gives the app the stdin it was given (a background job of a shell would read /dev/null)', async () => {
  const child = spawn(wasmeshCommand, ['run', '--service', 'reader', '--port', String(await freePort()), '--config', path.join(tmp, 'mesh.yaml'), '--', 'sh', '-c', 'read line; echo "got $line"'], { cwd: tmp, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGTERM'), 30_000);
  child.stdin.end('from the terminal\n');
  const code = await exited;
  clearTimeout(timer);
  assert.is(code, 0, `stderr:\n${stderr}`);
  assert.match(stdout, /got from the terminal/);
});

test('what the wasmesh command keeps beside the app is a shell of a few MB; SIGTERM stops all and removes its temporary folder', async () => {
  const before = readdirSync(os.tmpdir());
  const appPort = await freePort();
  const app = 'require("node:http").createServer((q, s) => s.end("ok")).listen(Number(process.env.PORT), "127.0.0.1")';
  const child = spawn(wasmeshCommand, ['run', '--service', 'small', '--port', String(appPort), '--config', path.join(tmp, 'mesh.yaml'), '--', process.execPath, '-e', app], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 30_000;
    while (!/inbound 127\.0\.0\.1:(\d+) -> app/.test(stderr)) {
      if (Date.now() > deadline) throw new Error(`the sidecar did not come up\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const inbound = Number(/inbound 127\.0\.0\.1:(\d+) -> app/.exec(stderr)![1]);
    // The app starts once its sidecar is ready: until it listens, the sidecar answers 503.
    while ((await get(inbound)).status !== 200) {
      if (Date.now() > deadline) throw new Error(`the app did not answer through its sidecar\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);
    assert.ok(rssKb < 20 * 1024, `the supervisor's RSS is ${rssKb} kB`);
    // The sidecar runs with the small-heap V8 flags (the shell's copy and run.ts's are the same).
    const sidecarArgv = readFileSync(`/proc/${sidecarOf(child.pid!)}/cmdline`, 'utf8').split('\0');
    for (const flag of PROXY_NODE_FLAGS) assert.ok(sidecarArgv.includes(flag), `the sidecar runs with ${flag}: ${sidecarArgv.join(' ')}`);
    const own = () => readdirSync(os.tmpdir()).filter((f) => f.startsWith('wasmesh-run-small-') && !before.includes(f));
    assert.is(own().length, 1, 'wasmesh run made its temporary folder');
    child.kill('SIGTERM');
    assert.is(await exited, 143);
    assert.equal(own(), [], 'and removed it');
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      // Its children first: a killed shell leaves them running.
      for (const pid of childrenOf(child.pid!)) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
    }
  }
});

test.run();
