// `wasmesh proxy --config` (a real process) with a WasmPlugin whose module is a JavaScript component:
// it serves with the component in its chain, and keeps jco's transpile in <data-dir>/component-cache
// (0700, the entry 0600), which a restart reads instead of running jco again.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WASMESH } from '../../orchestrator/test/support/run-wasmesh.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { jsEverythingComponent } from '../../wasm/test/support/component.ts';
import { freePort } from '../cli/run.ts';

let root = '';
let app: TestServer;
const children: ChildProcess[] = [];

test.before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-proxy-component-'));
  await writeFile(path.join(root, 'everything.wasm'), (await jsEverythingComponent()).bytes);
  app = await startHttp1('app');
});

test.after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await app?.close();
  await rm(root, { recursive: true, force: true });
});

/** Starts the proxy; resolves with its inbound port and how long it took to listen, once it does. */
async function startProxy(dataDir: string): Promise<{ child: ChildProcess; inbound: number; ms: number; output: () => string }> {
  const [inbound, outbound, admin] = [await freePort(), await freePort(), await freePort()];
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [WASMESH, 'proxy', '--config', path.join(root, 'mesh.yaml'), '--workload', 'web', '--inbound-port', String(inbound), '--outbound-port', String(outbound), '--admin-port', String(admin), '--app-port', String(app.port), '--data-dir', dataDir, '--no-telemetry', '--access-log', 'off'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the proxy did not listen within 60 s:\n${out}`)), 60_000);
    const check = () => {
      if (/listening/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the proxy exited with ${code}:\n${out}`));
    });
  });
  return { child, inbound, ms: Date.now() - started, output: () => out };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

test('a standalone proxy serves a component filter and keeps its transpile in <data-dir>/component-cache', async () => {
  await writeFile(
    path.join(root, 'mesh.yaml'),
    [
      'apiVersion: extensions.istio.io/v1alpha1',
      'kind: WasmPlugin',
      'metadata: { name: js, namespace: default }',
      'spec:',
      '  selector: { matchLabels: { app: web } }',
      '  url: file://everything.wasm',
      '  pluginConfig: { request: { x-js: "yes" } }',
      '',
    ].join('\n'),
  );
  const dataDir = path.join(root, 'data');
  const first = await startProxy(dataDir);
  const r = await request(first.inbound, { path: '/', headers: { host: 'web' } });
  assert.is(r.status, 200, first.output());
  assert.is((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-js'], 'yes');
  const cacheDir = path.join(dataDir, 'component-cache');
  assert.is((await stat(cacheDir)).mode & 0o777, 0o700);
  const entries = (await readdir(cacheDir)).filter((f) => f.endsWith('.jco'));
  assert.is(entries.length, 1);
  assert.is((await stat(path.join(cacheDir, entries[0]))).mode & 0o777, 0o600);
  const written = await stat(path.join(cacheDir, entries[0]));
  await stop(first.child);

  // A restart reads the entry and serves the same: the file is touched as used, not written again
  // (a write is a new file renamed into place: another inode).
  const second = await startProxy(dataDir);
  assert.is((await request(second.inbound, { path: '/', headers: { host: 'web' } })).status, 200);
  assert.equal((await readdir(cacheDir)).filter((f) => f.endsWith('.jco')), entries, 'the same entry');
  const read = await stat(path.join(cacheDir, entries[0]));
  assert.is(read.ino, written.ino, 'not rewritten');
  assert.ok(read.mtimeMs > written.mtimeMs, 'touched as recently used');
  await stop(second.child);
});

test.run();
