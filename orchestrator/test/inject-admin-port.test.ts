// Injected sidecars keep their admin port inside the pod: kube-inject and the admission webhook give
// the listeners --host 0.0.0.0 (traffic arrives on the pod IP) but never the admin, and the kubelet
// probes the read-only status port. The last test runs the proxy with exactly the injected
// arguments (the control-plane flags swapped for a config file, the ports for free ones).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { run as kubeInject } from '../../scripts/cli/kube-inject.ts';
import { reviewAdmission } from '../src/inject/webhook.ts';
import { DEFAULT_ORCHESTRATOR, PROXY_CONTAINER, type InjectOptions } from '../src/inject/sidecar.ts';
import { applyPatch, type Operation } from './support/json-patch-apply.ts';
import { WASMESH } from './support/run-wasmesh.ts';

type Obj = Record<string, any>;

const OPTS: InjectOptions = { orchestrator: DEFAULT_ORCHESTRATOR, image: 'wasmesh/proxy:test', tokenSecret: 'wasmesh-proxy-token' };
const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{ containerPort: 8080 }, { name: 'tcp-db', containerPort: 5432 }]
`;

let dir: string;

test.before(async () => {
  dir = await mkdtemp(join(os.tmpdir(), 'wasmesh-inject-admin-'));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const flag = (args: string[], name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);

/** The injected proxy container's admin placement, as a user reading the YAML would check it. */
function assertAdminStaysInside(proxy: Obj): void {
  const args = proxy.args as string[];
  assert.is(flag(args, '--host'), '0.0.0.0', 'the listeners take traffic on the pod IP');
  const adminHost = flag(args, '--admin-host');
  assert.ok(adminHost === undefined || adminHost === '127.0.0.1', `admin must stay on loopback, got --admin-host ${adminHost}`);
  assert.not.ok(args.includes('--admin-writes'), 'no token-less writes in a pod');
  const admin = Number(flag(args, '--admin-port'));
  const status = Number(flag(args, '--status-port'));
  assert.is(proxy.readinessProbe.httpGet.port, status, 'the kubelet probes the status port');
  assert.is.not(status, admin);
  assert.not.ok((proxy.ports as Obj[]).some((p) => p.containerPort === admin), 'the admin port is not declared on the pod');
}

test('kube-inject: the sidecar binds its listeners to 0.0.0.0, never its admin port', async () => {
  const input = join(dir, 'web.yaml');
  await writeFile(input, DEPLOYMENT);
  let out = '';
  let err = '';
  const code = await kubeInject(['-f', input], { out: { write: (s: string) => ((out += s), true) }, err: { write: (s: string) => ((err += s), true) } });
  assert.is(code, 0, err);
  const [deployment] = parseAllDocuments(out).map((d) => (d as { toJS(): Obj }).toJS());
  const proxy = (deployment!.spec.template.spec.containers as Obj[]).find((c) => c.name === PROXY_CONTAINER)!;
  assertAdminStaysInside(proxy);
});

test('the admission webhook: the same arguments', () => {
  const sent = JSON.parse(readFileSync(new URL('./fixtures/admission/pod-one-container.json', import.meta.url), 'utf8')) as Obj;
  const answer = reviewAdmission(JSON.stringify(sent), OPTS);
  assert.is(answer.status, 200);
  const response = (answer.body as Obj).response as Obj;
  const patch = JSON.parse(Buffer.from(response.patch as string, 'base64').toString('utf8')) as Operation[];
  const pod = applyPatch(sent.request.object, patch) as Obj;
  const proxy = (pod.spec.containers as Obj[]).find((c) => c.name === PROXY_CONTAINER)!;
  assertAdminStaysInside(proxy);
});

/** 'connected' or the error code of a TCP connect. */
function connect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(3000, () => (s.destroy(), resolve('timeout')));
    s.once('connect', () => (s.destroy(), resolve('connected')));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('the injected arguments run: admin answers on 127.0.0.1 only, the status port on the pod address', async () => {
  const input = join(dir, 'web.yaml');
  await writeFile(input, DEPLOYMENT);
  let out = '';
  assert.is(await kubeInject(['-f', input], { out: { write: (s: string) => ((out += s), true) }, err: { write: () => true } }), 0);
  const [deployment] = parseAllDocuments(out).map((d) => (d as { toJS(): Obj }).toJS());
  const injected = ((deployment!.spec.template.spec.containers as Obj[]).find((c) => c.name === PROXY_CONTAINER)!.args as string[]).slice(1);
  // Managed-mode flags need an orchestrator: a config file stands in; the fixed ports become free ones.
  const drop = new Set(['--orchestrator', '--token-file', '--data-dir', '--register-address', '--register-port']);
  const zero = new Set(['--outbound-port', '--inbound-port', '--admin-port', '--status-port']);
  const args: string[] = [];
  for (let i = 0; i < injected.length; i++) {
    const name = injected[i]!;
    // A flag without a value (--iptables-capture) is followed by the next flag.
    const value = injected[i + 1] !== undefined && !injected[i + 1]!.startsWith('--') ? injected[++i]! : undefined;
    if (drop.has(name)) continue;
    if (value === undefined) args.push(name);
    else args.push(name, zero.has(name) ? '0' : value);
  }
  const config = join(dir, 'mesh.yaml');
  await writeFile(config, 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: shop }\nspec: { mtls: { mode: PERMISSIVE } }\n');
  const child = spawn(process.execPath, [WASMESH, 'proxy', '--config', config, '--access-log', 'off', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const listening = /admin ([\d.]+):(\d+), status ([\d.]+):(\d+)/;
    const deadline = Date.now() + 30_000;
    while (!listening.test(stderr) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const m = listening.exec(stderr);
    assert.ok(m, `the proxy did not start:\n${stderr}`);
    assert.is(m![1], '127.0.0.1');
    assert.is(m![3], '0.0.0.0');
    const [admin, status] = [Number(m![2]), Number(m![4])];
    assert.is(await connect('127.0.0.1', admin), 'connected');
    const external = Object.values(os.networkInterfaces()).flat().find((a) => a?.family === 'IPv4' && !a.internal)?.address;
    if (external) {
      assert.is(await connect(external, admin), 'ECONNREFUSED', `admin answers on ${external}`);
      const ready = await fetch(`http://${external}:${status}/ready`);
      assert.is(ready.status, 200, 'the kubelet reaches /ready on the pod address');
    } else {
      process.stderr.write('inject-admin-port: no non-loopback IPv4 address here; the from-outside checks are skipped\n');
    }
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(timer);
  }
});

test.run();
