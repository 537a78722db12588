import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { run } from '../../scripts/cli/kube-inject.ts';

type Obj = Record<string, any>;

const SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: reviews # the one Service
  labels: {app: reviews}
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: reviews
`;

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: bookinfo
spec:
  replicas: 1
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels:
        app: reviews
        version: v1
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews   # keep this comment
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.2
        ports:
        - containerPort: 9080
`;

const CONFIG_MAP = `apiVersion: v1
kind: ConfigMap
metadata:
  name: reviews-config
data:
  # quoted on purpose
  enabled: "yes"
  timeout: '30s'
`;

const MULTI = `# bookinfo reviews\n${SERVICE}---\n${DEPLOYMENT}---\n${CONFIG_MAP}`;

let dir: string;

function sink() {
  let text = '';
  return { write: (s: string) => ((text += s), true), get text() { return text; } };
}

async function kubeInject(argv: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const out = sink();
  const err = sink();
  const code = await run(argv, { out, err, ...(stdin !== undefined ? { stdin: [Buffer.from(stdin)] } : {}) });
  return { code, out: out.text, err: err.text };
}

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function docs(text: string): Obj[] {
  const parsed = parseAllDocuments(text);
  assert.ok(Array.isArray(parsed));
  for (const d of parsed) assert.equal(d.errors, [], String(d.errors[0]));
  return parsed.map((d) => d.toJS() as Obj);
}

function containerNames(spec: Obj): string[] {
  return (spec.containers as Obj[]).map((c) => c.name);
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-kube-inject-'));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('Deployment + Service + ConfigMap: only the Deployment changes; the others come out byte for byte', async () => {
  const input = await file('bookinfo.yaml', MULTI);
  const r = await kubeInject(['-f', input]);
  assert.is(r.code, 0, r.err);
  assert.is(r.err, '');
  const [service, deployment, configMap] = docs(r.out);
  assert.equal(service, docs(SERVICE)[0]);
  assert.equal(configMap, docs(CONFIG_MAP)[0]);
  assert.ok(r.out.startsWith(`# bookinfo reviews\n${SERVICE}---\n`), 'the Service and the comment before it are unchanged');
  assert.ok(r.out.endsWith(`---\n${CONFIG_MAP}`), 'the ConfigMap is unchanged (quotes, comment)');

  const original = docs(DEPLOYMENT)[0]!;
  const spec = deployment!.spec.template.spec;
  assert.equal(containerNames(spec), ['reviews', 'wasmesh-proxy']);
  assert.equal(spec.containers[0], original.spec.template.spec.containers[0]);
  assert.equal(spec.initContainers.map((c: Obj) => c.name), ['wasmesh-init']);
  assert.equal(deployment!.metadata, original.metadata);
  assert.equal(deployment!.spec.selector, original.spec.selector);
  const args: string[] = spec.containers[1].args;
  assert.equal(args.slice(0, 3), ['proxy', '--orchestrator', 'wasmesh-orchestrator.wasmesh-system.svc:15010']);
  assert.is(args[args.indexOf('--workload') + 1], 'reviews');
  assert.is(args[args.indexOf('--namespace') + 1], 'bookinfo');
  assert.is(args[args.indexOf('--labels') + 1], 'app=reviews,version=v1');
  assert.match(spec.containers[1].image, /^wasmesh\/proxy:\d+\.\d+\.\d+/);
  assert.ok(deployment!.spec.template.metadata.annotations['wasmesh.io/status']);
  assert.match(r.out, /- name: reviews # keep this comment/, 'comments inside the changed document stay');
});

test('injecting twice gives what injecting once gave', async () => {
  const once = await kubeInject(['-f', await file('once.yaml', MULTI)]);
  const twice = await kubeInject(['-f', await file('twice.yaml', once.out)]);
  assert.is(twice.code, 0, twice.err);
  assert.is(twice.out, once.out);
});

test('the flags reach the sidecar: --orchestrator, --image, --token-secret', async () => {
  const r = await kubeInject(['-f', '-', '--orchestrator', '10.0.0.7:15010', '--image', 'registry.local/wasmesh:dev', '--token-secret', 'mesh-token'], DEPLOYMENT);
  assert.is(r.code, 0, r.err);
  const spec = docs(r.out)[0]!.spec.template.spec;
  const proxy = spec.containers[1];
  assert.is(proxy.image, 'registry.local/wasmesh:dev');
  assert.is(spec.initContainers[0].image, 'registry.local/wasmesh:dev');
  assert.is(proxy.args[proxy.args.indexOf('--orchestrator') + 1], '10.0.0.7:15010');
  assert.is(spec.volumes.find((v: Obj) => v.name === 'wasmesh-token').secret.secretName, 'mesh-token');
});

test('several files make one stream; -o writes the file and says how many templates were injected', async () => {
  const a = await file('a.yaml', DEPLOYMENT);
  const b = await file('b.yaml', `${SERVICE}---\n${DEPLOYMENT.replace('reviews-v1', 'reviews-v2').replace(/v1$/m, 'v2').replace("version: v1\n    spec", "version: v2\n    spec")}`);
  const optedOut = await file('c.yaml', DEPLOYMENT.replace('    metadata:\n      labels:', '    metadata:\n      annotations:\n        sidecar.istio.io/inject: "false"\n      labels:'));
  const output = join(dir, 'out.yaml');
  const r = await kubeInject(['-f', a, '-f', b, '-f', optedOut, '-o', output]);
  assert.is(r.code, 0, r.err);
  assert.is(r.out, '');
  assert.match(r.err, /2 of 3 pod templates injected, written to .*out\.yaml/);
  const text = await readFile(output, 'utf8');
  const all = docs(text);
  assert.equal(all.map((d) => `${d.kind}/${d.metadata.name}`), ['Deployment/reviews-v1', 'Service/reviews', 'Deployment/reviews-v2', 'Deployment/reviews-v1']);
  assert.equal(containerNames(all[2]!.spec.template.spec), ['reviews', 'wasmesh-proxy']);
  assert.equal(containerNames(all[3]!.spec.template.spec), ['reviews'], 'the opted-out Deployment is unchanged');
  assert.ok(text.endsWith(await readFile(optedOut, 'utf8')));
});

test('errors name the file and the document; nothing is printed', async () => {
  const broken = await file('broken.yaml', `${SERVICE}---\nkind: Deployment\nmetadata:\n  name: x\n  labels: [a\n`);
  let r = await kubeInject(['-f', broken]);
  assert.is(r.code, 1);
  assert.is(r.out, '');
  assert.match(r.err, /^wasmesh kube-inject: 1 error, nothing written:\n/);
  assert.match(r.err, new RegExp(`${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#2: invalid YAML`));

  const noTemplate = await file('no-template.yaml', `${SERVICE}---\n${CONFIG_MAP}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: empty\nspec:\n  replicas: 1\n`);
  r = await kubeInject(['-f', noTemplate]);
  assert.is(r.code, 1);
  assert.is(r.out, '');
  assert.match(r.err, /no-template\.yaml#3 \/spec\/template: Deployment empty has no spec\.template/);

  r = await kubeInject(['-f', join(dir, 'missing.yaml')]);
  assert.is(r.code, 1);
  assert.match(r.err, /cannot read .*missing\.yaml: no such file/);
});

test('usage errors exit 2 with the usage; --help exits 0', async () => {
  let r = await kubeInject([]);
  assert.is(r.code, 2);
  assert.match(r.err, /^wasmesh kube-inject: no input: name at least one file with -f/);
  assert.match(r.err, /usage: wasmesh kube-inject/);
  r = await kubeInject(['-f', 'x.yaml', '--orchestrator', 'nowhere']);
  assert.is(r.code, 2);
  assert.match(r.err, /--orchestrator must be HOST:PORT/);
  r = await kubeInject(['--help']);
  assert.is(r.code, 0);
  assert.match(r.out, /usage: wasmesh kube-inject/);
});

test.run();
