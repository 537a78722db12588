import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createServingCertificate, loadOrCreateServingCertificate } from '../src/inject/serving-cert.ts';
import { DEFAULT_ORCHESTRATOR, type InjectOptions } from '../src/inject/sidecar.ts';
import { startInjectWebhook, type RunningInjectWebhook } from '../src/inject/webhook.ts';
import { run } from '../../scripts/cli/inject-webhook.ts';
import { applyPatch, type Operation } from './support/json-patch-apply.ts';

const SERVICE_NAME = 'wasmesh-inject.wasmesh-system.svc';
const OPTS: InjectOptions = { orchestrator: DEFAULT_ORCHESTRATOR, image: 'wasmesh/proxy:test', tokenSecret: 'wasmesh-proxy-token' };

type Obj = Record<string, any>;

function fixture(name: string): Obj {
  return JSON.parse(readFileSync(new URL(`./fixtures/admission/${name}.json`, import.meta.url), 'utf8')) as Obj;
}

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

/** An HTTPS request that trusts only `ca` and checks the certificate against the Service name. */
function call(port: number, ca: string, method: string, path: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, ca, servername: SERVICE_NAME, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

let hook: RunningInjectWebhook;
let ca: string;

async function review(name: string): Promise<{ sent: Obj; response: Obj; patch: Operation[] | undefined; result: Obj }> {
  const sent = fixture(name);
  const reply = await call(hook.port, ca, 'POST', '/inject?timeout=10s', JSON.stringify(sent));
  assert.is(reply.status, 200, reply.body);
  const answer = JSON.parse(reply.body) as Obj;
  assert.is(answer.apiVersion, 'admission.k8s.io/v1');
  assert.is(answer.kind, 'AdmissionReview');
  const response = answer.response as Obj;
  assert.is(response.uid, sent.request.uid, 'the response echoes the request uid');
  assert.is(response.allowed, true, 'never blocks');
  let patch: Operation[] | undefined;
  if (response.patch !== undefined) {
    assert.is(response.patchType, 'JSONPatch');
    patch = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Operation[];
  }
  const result = patch ? applyPatch(sent.request.object, patch) : sent.request.object;
  return { sent, response, patch, result };
}

const names = (list: Obj[] | undefined) => (list ?? []).map((c) => c.name);

function flag(container: Obj, name: string): string | undefined {
  const i = (container.args as string[]).indexOf(name);
  return i < 0 ? undefined : container.args[i + 1];
}

test.before(async () => {
  const cert = await createServingCertificate([SERVICE_NAME]);
  ca = cert.caPem;
  hook = await startInjectWebhook({ host: '127.0.0.1', port: 0, cert: cert.certPem, key: cert.keyPem, inject: OPTS });
});

test.after(async () => {
  await hook.close();
});

test('a Pod with one container: the patch adds the sidecar, the init container, the volumes and the annotations', async () => {
  const { sent, patch, result } = await review('pod-one-container');
  const before = sent.request.object;
  // Appends, and the annotations map created since the pod had none.
  assert.ok(patch!.some((op) => op.op === 'add' && op.path === '/spec/containers/-'));
  assert.ok(patch!.some((op) => op.op === 'add' && op.path === '/spec/volumes/-'));
  assert.ok(patch!.some((op) => op.op === 'add' && op.path === '/spec/initContainers'));
  assert.ok(patch!.some((op) => op.op === 'add' && op.path === '/metadata/annotations'));
  assert.not.ok(patch!.some((op) => op.op !== 'add'), 'injection only adds');

  assert.equal(names(result.spec.containers), ['productpage', 'wasmesh-proxy']);
  assert.equal(result.spec.containers[0], before.spec.containers[0], 'the app container is untouched');
  assert.equal(names(result.spec.initContainers), ['wasmesh-init']);
  assert.equal(names(result.spec.volumes), ['kube-api-access-x7k2p', 'tmp', 'wasmesh-token', 'wasmesh-data']);
  assert.equal(result.metadata.labels, { ...before.metadata.labels, 'security.istio.io/tlsMode': 'istio' }, "Istio's sidecar label added, for clients' auto mTLS");
  assert.is(result.metadata.namespace, undefined, 'the object\'s metadata is not filled in');

  const proxy = result.spec.containers[1];
  assert.is(flag(proxy, '--workload'), 'productpage');
  assert.is(flag(proxy, '--namespace'), 'bookinfo', 'from the request');
  assert.is(flag(proxy, '--service-account'), 'bookinfo-productpage');
  assert.is(flag(proxy, '--labels'), 'app=productpage,version=v1', 'pod-template-hash is left out');
  assert.is(flag(proxy, '--app-port'), '9080');
  assert.is(flag(proxy, '--orchestrator'), DEFAULT_ORCHESTRATOR);
  assert.is(proxy.securityContext.runAsUser, 1337);

  const script: string = result.spec.initContainers[0].command[2];
  assert.match(script, /iptables -t nat -A WASMESH_INBOUND -p tcp --dport 9080 -j WASMESH_IN_REDIRECT/);
  assert.match(script, /iptables -t nat -A WASMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN/);
  assert.match(script, /iptables -t nat -A WASMESH_OUTPUT -j WASMESH_REDIRECT/);

  const status = JSON.parse(result.metadata.annotations['wasmesh.io/status']);
  assert.equal(status.containers, ['wasmesh-proxy']);
  assert.equal(status.initContainers, ['wasmesh-init']);
  assert.is(result.metadata.annotations['kubectl.kubernetes.io/default-container'], 'productpage');
});

test('a Deployment with two containers: both kept in order, the sidecar appended, annotations merged', async () => {
  const { sent, patch, result } = await review('deployment-two-containers');
  const before = sent.request.object;
  assert.ok(patch!.every((op) => op.path.startsWith('/spec/template/')), 'only the pod template changes');
  assert.ok(patch!.some((op) => op.path === '/spec/template/metadata/annotations/wasmesh.io~1status'), 'the annotation key is escaped');
  const spec = result.spec.template.spec;
  assert.equal(names(spec.containers), ['reviews', 'log-shipper', 'wasmesh-proxy']);
  assert.equal(spec.containers.slice(0, 2), before.spec.template.spec.containers);
  const proxy = spec.containers[2];
  assert.is(flag(proxy, '--workload'), 'reviews');
  assert.is(flag(proxy, '--labels'), 'app=reviews,version=v2');
  assert.is(flag(proxy, '--app-port'), '9080');
  assert.is(flag(proxy, '--register-port'), 'http=15006');
  const annotations = result.spec.template.metadata.annotations;
  assert.is(annotations['traffic.sidecar.istio.io/excludeOutboundIPRanges'], '169.254.169.254/32', 'existing annotations stay');
  assert.ok(annotations['wasmesh.io/status']);
  assert.match(spec.initContainers[0].command[2], /-A WASMESH_OUTPUT -d 169\.254\.169\.254\/32 -j RETURN/);
  assert.equal(result.metadata, before.metadata);
});

test('opt-out, already injected: allowed with no patch and no warning', async () => {
  for (const name of ['pod-opt-out', 'pod-already-injected']) {
    const { response } = await review(name);
    assert.is(response.patch, undefined, name);
    assert.is(response.patchType, undefined, name);
    assert.is(response.warnings, undefined, name);
  }
});

test('hostNetwork: allowed with no patch and a warning saying why', async () => {
  const { response } = await review('pod-host-network');
  assert.is(response.patch, undefined);
  assert.equal(response.warnings.length, 1);
  assert.match(response.warnings[0], /^wasmesh: Pod bookinfo\/node-exporter-<generated>: not injected: hostNetwork/);
});

test('a pod that cannot be injected is still allowed, unpatched, with a warning', async () => {
  const sent = fixture('pod-one-container');
  sent.request.object.metadata.annotations = { 'traffic.sidecar.istio.io/includeInboundPorts': 'http' };
  const reply = await call(hook.port, ca, 'POST', '/inject', JSON.stringify(sent));
  assert.is(reply.status, 200);
  const response = JSON.parse(reply.body).response;
  assert.equal(Object.keys(response).sort(), ['allowed', 'uid', 'warnings']);
  assert.is(response.allowed, true);
  assert.match(response.warnings[0], /traffic\.sidecar\.istio\.io\/includeInboundPorts: "http" is not a port number/);
});

test('bad requests get 400 naming what is wrong', async () => {
  const bad = async (body: string, path: string, message: RegExp) => {
    const reply = await call(hook.port, ca, 'POST', '/inject', body);
    assert.is(reply.status, 400, body);
    const err = JSON.parse(reply.body);
    assert.is(err.code, 'WASMESH_ORCH_BAD_REQUEST');
    assert.is(err.errors[0].path, path);
    assert.match(err.errors[0].message, message);
  };
  await bad('{"kind": "AdmissionReview", ', '', /not JSON/);
  await bad('[]', '', /must be a JSON object/);
  const v1beta1 = { ...fixture('pod-one-container'), apiVersion: 'admission.k8s.io/v1beta1' };
  await bad(JSON.stringify(v1beta1), '/apiVersion', /expected an AdmissionReview admission\.k8s\.io\/v1, got "AdmissionReview" "admission\.k8s\.io\/v1beta1".*admissionReviewVersions: \[v1\]/);
  await bad(JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }), '/kind', /expected an AdmissionReview/);
  await bad(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), '/request', /request is missing/);
  const noUid = fixture('pod-one-container');
  delete noUid.request.uid;
  await bad(JSON.stringify(noUid), '/request/uid', /request\.uid is missing/);
});

test('GET /healthz is ok; other paths 404, other methods 405', async () => {
  const health = await call(hook.port, ca, 'GET', '/healthz');
  assert.is(health.status, 200);
  assert.is(health.body, 'ok\n');
  assert.is((await call(hook.port, ca, 'GET', '/mutate')).status, 404);
  const get = await call(hook.port, ca, 'GET', '/inject');
  assert.is(get.status, 405);
  assert.is(get.headers.allow, 'POST');
});

test('the made certificate is kept: a restart reuses it, a new name reissues the leaf under the same CA', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-webhook-cert-'));
  try {
    const first = await loadOrCreateServingCertificate(join(dir, 'certs'), [SERVICE_NAME]);
    assert.is(first.action, 'created');
    const again = await loadOrCreateServingCertificate(join(dir, 'certs'), [SERVICE_NAME]);
    assert.is(again.action, 'reused');
    assert.is(again.certPem, first.certPem);
    const more = await loadOrCreateServingCertificate(join(dir, 'certs'), [SERVICE_NAME, '127.0.0.1']);
    assert.is(more.action, 'reissued');
    assert.is(more.caPem, first.caPem, 'the caBundle stays valid');
    assert.is.not(more.certPem, first.certPem);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// The command

function sink() {
  let text = '';
  return { write: (s: string) => ((text += s), true), get text() { return text; } };
}

test('wasmesh inject-webhook --print-config: a MutatingWebhookConfiguration with the made CA as caBundle', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-webhook-cli-'));
  try {
    const out = sink();
    const err = sink();
    assert.is(await run(['--print-config', '--cert-dir', dir], { out, err }), 0, err.text);
    const config = parseYaml(out.text) as Obj;
    assert.is(config.kind, 'MutatingWebhookConfiguration');
    assert.is(config.apiVersion, 'admissionregistration.k8s.io/v1');
    const hookConfig = config.webhooks[0];
    assert.equal(hookConfig.clientConfig.service, { name: 'wasmesh-inject', namespace: 'wasmesh-system', path: '/inject', port: 443 });
    assert.is(Buffer.from(hookConfig.clientConfig.caBundle, 'base64').toString(), readFileSync(join(dir, 'ca-cert.pem'), 'utf8'));
    assert.equal(hookConfig.namespaceSelector, { matchLabels: { 'wasmesh-injection': 'enabled' } });
    assert.is(hookConfig.failurePolicy, 'Ignore');
    assert.is(hookConfig.sideEffects, 'None');
    assert.equal(hookConfig.admissionReviewVersions, ['v1']);
    assert.equal(hookConfig.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('wasmesh inject-webhook serves until stopped, with the certificate for --dns-name and the caBundle printed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-webhook-cli-'));
  const stop = new AbortController();
  const out = sink();
  const err = sink();
  const running = run(['--listen', '127.0.0.1:0', '--cert-dir', dir, '--dns-name', SERVICE_NAME, '--image', 'registry.local/wasmesh:dev'], { out, err, signal: stop.signal });
  try {
    for (let i = 0; i < 200 && !out.text.includes('caBundle:'); i++) await new Promise((r) => setTimeout(r, 25));
    const port = Number(/serving https:\/\/127\.0\.0\.1:(\d+)\/inject/.exec(out.text)?.[1]);
    assert.ok(port > 0, out.text + err.text);
    const caBundle = Buffer.from(/caBundle: (\S+)/.exec(out.text)![1]!, 'base64').toString();
    assert.match(out.text, new RegExp(`CA bundle: ${join(dir, 'ca-cert.pem').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const reply = await call(port, caBundle, 'POST', '/inject', JSON.stringify(fixture('pod-one-container')));
    const response = JSON.parse(reply.body).response;
    const patch = JSON.parse(Buffer.from(response.patch, 'base64').toString()) as Operation[];
    const pod = applyPatch(fixture('pod-one-container').request.object, patch) as Obj;
    assert.is(pod.spec.containers[1].image, 'registry.local/wasmesh:dev');
    assert.match(err.text, /inject: CREATE Pod bookinfo\/productpage-v1-6b746f74dc-: injected \(workload productpage/);
  } finally {
    stop.abort();
    assert.is(await running, 0);
    await rm(dir, { recursive: true, force: true });
  }
});

test('wasmesh inject-webhook usage errors exit 2', async () => {
  for (const argv of [['--cert', 'x.pem'], ['--listen', 'nope'], ['--orchestrator', 'no-port'], ['extra']]) {
    const out = sink();
    const err = sink();
    assert.is(await run(argv, { out, err }), 2, argv.join(' '));
    assert.match(err.text, /^wasmesh inject-webhook: /);
  }
  const out = sink();
  assert.is(await run(['--help'], { out, err: sink() }), 0);
  assert.match(out.text, /usage: wasmesh inject-webhook/);
});

test.run();
