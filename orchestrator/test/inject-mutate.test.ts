import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InjectError, injectResource, STATUS_ANNOTATION } from '../src/inject/mutate.ts';
import { DEFAULT_ORCHESTRATOR, type InjectOptions } from '../src/inject/sidecar.ts';

const OPTS: InjectOptions = { orchestrator: DEFAULT_ORCHESTRATOR, image: 'wasmesh/proxy:test', tokenSecret: 'wasmesh-proxy-token' };

type Obj = Record<string, any>;

const podSpec = (containers: Obj[] = [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }], extra: Obj = {}): Obj => ({ containers, ...extra });

const deployment = (template: Obj, metadata: Obj = { name: 'web', namespace: 'shop' }): Obj => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata,
  spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template },
});

const template = (labels: Obj = { app: 'web', version: 'v1' }, spec = podSpec(), annotations?: Obj): Obj => ({
  metadata: { labels, ...(annotations ? { annotations } : {}) },
  spec,
});

function inject(doc: unknown, ns?: string) {
  return injectResource(doc, OPTS, ns ? { namespace: ns } : {});
}

/** The pod spec of an injected Deployment. */
function podOf(doc: unknown): Obj {
  return (doc as Obj).spec.template.spec;
}

function proxyOf(spec: Obj): Obj {
  const c = spec.containers.find((x: Obj) => x.name === 'wasmesh-proxy');
  assert.ok(c, 'a wasmesh-proxy container');
  return c;
}

function flag(container: Obj, name: string): string | undefined {
  const args = container.args as string[];
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

function thrown(fn: () => unknown): InjectError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, InjectError);
    return e as InjectError;
  }
  assert.unreachable('expected an InjectError');
  throw new Error('unreachable');
}

// ---------------------------------------------------------------------------------------------
// What a Deployment gets

test('a Deployment gets the init container, the sidecar, the volumes and the status annotation', () => {
  const before = deployment(template());
  const snapshot = JSON.stringify(before);
  const r = inject(before);
  assert.ok(r.changed);
  assert.is(JSON.stringify(before), snapshot, 'the input is not modified');
  const spec = podOf(r.object);
  assert.equal(spec.containers.map((c: Obj) => c.name), ['app', 'wasmesh-proxy']);
  assert.equal(spec.containers[0], { name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }, 'the app container is untouched');
  assert.equal(spec.initContainers.map((c: Obj) => c.name), ['wasmesh-init']);
  assert.equal(spec.volumes.map((v: Obj) => v.name), ['wasmesh-token', 'wasmesh-data']);
  assert.equal(spec.volumes[0].secret, { secretName: 'wasmesh-proxy-token', items: [{ key: 'token', path: 'token' }] });

  const proxy = proxyOf(spec);
  assert.equal(proxy.command, ['wasmesh']);
  assert.is(proxy.args[0], 'proxy');
  assert.is(flag(proxy, '--orchestrator'), DEFAULT_ORCHESTRATOR);
  assert.is(flag(proxy, '--workload'), 'web');
  assert.is(flag(proxy, '--namespace'), 'shop');
  assert.is(flag(proxy, '--service-account'), 'default');
  assert.is(flag(proxy, '--labels'), 'app=web,version=v1');
  assert.is(flag(proxy, '--app-port'), '8080');
  assert.is(flag(proxy, '--host'), '0.0.0.0');
  assert.is(flag(proxy, '--token-file'), '/var/run/wasmesh/token');
  assert.is(flag(proxy, '--register-address'), '$(INSTANCE_IP)');
  assert.is(flag(proxy, '--register-port'), 'http=15006');
  assert.is(proxy.securityContext.runAsUser, 1337);
  assert.equal(proxy.readinessProbe.httpGet, { path: '/ready', port: 15021 });
  assert.equal(proxy.ports.map((p: Obj) => p.containerPort), [15001, 15006, 15021]);
  assert.ok(proxy.ports.every((p: Obj) => p.name.length <= 15), 'port names fit Kubernetes\' 15 characters');
  assert.equal(proxy.env.map((e: Obj) => [e.name, e.valueFrom.fieldRef.fieldPath]), [
    ['POD_NAME', 'metadata.name'],
    ['POD_NAMESPACE', 'metadata.namespace'],
    ['INSTANCE_IP', 'status.podIP'],
    ['SERVICE_ACCOUNT', 'spec.serviceAccountName'],
  ]);
  assert.equal(proxy.resources.requests, { cpu: '100m', memory: '128Mi' });

  const init = spec.initContainers[0];
  assert.equal(init.command.slice(0, 2), ['sh', '-c']);
  assert.match(init.command[2], /iptables -t nat -A WASMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
  assert.equal(init.securityContext.capabilities.add, ['NET_ADMIN', 'NET_RAW']);
  assert.is(init.securityContext.runAsUser, 0);
  assert.is(init.securityContext.runAsNonRoot, false);

  const annotations = (r.object as Obj).spec.template.metadata.annotations;
  assert.equal(JSON.parse(annotations[STATUS_ANNOTATION]), { initContainers: ['wasmesh-init'], containers: ['wasmesh-proxy'], volumes: ['wasmesh-token', 'wasmesh-data'], image: 'wasmesh/proxy:test' });
  assert.is(annotations['kubectl.kubernetes.io/default-container'], 'app');
  assert.equal(r.templates, [{ path: '/spec/template', resource: 'Deployment shop/web', injected: true, workload: 'web', warnings: [] }]);
});

test('every workload kind is injected at its pod template; other kinds and API groups are not', () => {
  const t = template();
  const cases: Array<[Obj, (o: Obj) => Obj]> = [
    [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { app: 'web' } }, spec: podSpec() }, (o) => o.spec],
    [{ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 's' }, spec: { template: t } }, (o) => o.spec.template.spec],
    [{ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'd' }, spec: { template: t } }, (o) => o.spec.template.spec],
    [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'r' }, spec: { template: t } }, (o) => o.spec.template.spec],
    [{ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { template: t } }, (o) => o.spec.template.spec],
    [{ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: t } } } }, (o) => o.spec.jobTemplate.spec.template.spec],
  ];
  for (const [doc, spec] of cases) {
    const r = inject(doc);
    assert.ok(r.changed, doc.kind);
    assert.equal(spec(r.object as Obj).containers.map((c: Obj) => c.name), ['app', 'wasmesh-proxy'], doc.kind);
  }
  for (const doc of [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm' }, data: { a: 'b' } },
    { apiVersion: 'batch.volcano.sh/v1alpha1', kind: 'Job', metadata: { name: 'vj' }, spec: { tasks: [] } },
    'just a string',
    null,
  ]) {
    const r = inject(doc);
    assert.not.ok(r.changed);
    assert.is(r.object, doc, 'passed through as is');
  }
});

test('a List injects each of its items', () => {
  const list = { apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }, deployment(template())] };
  const r = inject(list);
  assert.ok(r.changed);
  assert.equal((r.object as Obj).items[0], list.items[0]);
  assert.equal(podOf((r.object as Obj).items[1]).containers.length, 2);
  assert.is(r.templates[0]!.path, '/items/1/spec/template');
});

// ---------------------------------------------------------------------------------------------
// Left alone

test('opt-out: sidecar.istio.io/inject or wasmesh.io/inject "false" on the template or the resource', () => {
  const variants: Obj[] = [
    deployment(template({ app: 'web' }, podSpec(), { 'sidecar.istio.io/inject': 'false' })),
    deployment(template({ app: 'web' }, podSpec(), { 'wasmesh.io/inject': 'False' })),
    deployment(template({ app: 'web', 'sidecar.istio.io/inject': 'false' })),
    deployment(template(), { name: 'web', annotations: { 'wasmesh.io/inject': 'false' } }),
  ];
  for (const doc of variants) {
    const r = inject(doc);
    assert.not.ok(r.changed, JSON.stringify(doc.spec.template.metadata));
    assert.is(r.object, doc);
    assert.match(r.templates[0]!.reason!, /is "false"/);
  }
  // The template's "true" wins over the resource's "false".
  const r = inject(deployment(template({ app: 'web' }, podSpec(), { 'sidecar.istio.io/inject': 'true' }), { name: 'web', annotations: { 'sidecar.istio.io/inject': 'false' } }));
  assert.ok(r.changed);
});

test('already injected (a wasmesh-proxy container): unchanged, so injecting twice is injecting once', () => {
  const once = inject(deployment(template())).object;
  const twice = inject(once);
  assert.not.ok(twice.changed);
  assert.is(twice.object, once);
  assert.match(twice.templates[0]!.reason!, /already injected/);
});

test('hostNetwork pods are skipped with a warning', () => {
  const r = inject(deployment(template({ app: 'agent' }, podSpec(undefined, { hostNetwork: true }))));
  assert.not.ok(r.changed);
  assert.match(r.templates[0]!.warnings[0]!, /hostNetwork/);
});

// ---------------------------------------------------------------------------------------------
// Names, labels, ports

test('workload name: app label, else app.kubernetes.io/name, else the resource name, else the pod name without its generated suffix', () => {
  const workload = (doc: Obj) => flag(proxyOf((doc.kind === 'Pod' ? (inject(doc).object as Obj).spec : podOf(inject(doc).object))), '--workload');
  assert.is(workload(deployment(template({ app: 'shop', 'app.kubernetes.io/name': 'other' }))), 'shop');
  assert.is(workload(deployment(template({ 'app.kubernetes.io/name': 'catalog' }))), 'catalog');
  assert.is(workload(deployment(template({ tier: 'front' }), { name: 'frontend' })), 'frontend');
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'cart-7d9f8b6c5-', labels: { 'pod-template-hash': '7d9f8b6c5' } }, spec: podSpec() };
  assert.is(workload(pod), 'cart');
  const labels = flag(proxyOf((inject(pod).object as Obj).spec), '--labels');
  assert.is(labels, 'app=cart', 'an app label is always passed; per-rollout labels are not');
});

test('the namespace comes from the resource, else the request, else the pod itself through the downward API', () => {
  const ns = (doc: Obj, ctx?: string) => flag(proxyOf(podOf(inject(doc, ctx).object)), '--namespace');
  assert.is(ns(deployment(template(), { name: 'web', namespace: 'a' }), 'b'), 'a');
  assert.is(ns(deployment(template(), { name: 'web' }), 'b'), 'b');
  assert.is(ns(deployment(template(), { name: 'web' })), '$(POD_NAMESPACE)');
});

test('several app containers: all kept in order, the sidecar last, the app port the first containerPort across them', () => {
  const containers = [
    { name: 'init-config', image: 'c:1' },
    { name: 'api', image: 'api:1', ports: [{ containerPort: 53, protocol: 'UDP' }, { name: 'grpc', containerPort: 9090 }] },
    { name: 'metrics', image: 'm:1', ports: [{ containerPort: 9102 }] },
  ];
  const r = inject(deployment(template({ app: 'api' }, podSpec(containers, { serviceAccountName: 'api-sa' }))));
  const spec = podOf(r.object);
  assert.equal(spec.containers.slice(0, 3), containers);
  assert.equal(spec.containers.map((c: Obj) => c.name), ['init-config', 'api', 'metrics', 'wasmesh-proxy']);
  const proxy = proxyOf(spec);
  assert.is(flag(proxy, '--app-port'), '9090', 'UDP ports are not the app port');
  assert.is(flag(proxy, '--register-port'), 'grpc=15006', 'registered under the port\'s name');
  assert.is(flag(proxy, '--service-account'), 'api-sa');
  assert.match(spec.initContainers[0].command[2], /--dport 9090 -j WASMESH_IN_REDIRECT/);
});

test('wasmesh.io/app-port overrides the containerPort; without any port, no inbound capture and no registration (warned)', () => {
  let spec = podOf(inject(deployment(template({ app: 'web' }, podSpec(), { 'wasmesh.io/app-port': '9000' }))).object);
  assert.is(flag(proxyOf(spec), '--app-port'), '9000');
  const r = inject(deployment(template({ app: 'worker' }, podSpec([{ name: 'worker', image: 'w:1' }]))));
  spec = podOf(r.object);
  assert.is(flag(proxyOf(spec), '--app-port'), undefined);
  assert.is(flag(proxyOf(spec), '--register-address'), undefined);
  const inbound = (spec.initContainers[0].command[2] as string).split('\n').filter((l) => l.includes('-A WASMESH_INBOUND'));
  assert.equal(inbound, ['iptables -t nat -A WASMESH_INBOUND -p tcp --dport 15001 -j WASMESH_IN_REDIRECT'], 'only the guard of the outbound port');
  assert.match(r.templates[0]!.warnings[0]!, /no containerPort/);
});

test('TCP ports (named tcp-*, tls-*, mongo-*, ... or with a TCP appProtocol) get the sidecar\'s inbound TCP path: captured, served, registered by name', () => {
  const containers = [
    { name: 'db', image: 'db:1', ports: [{ name: 'tcp-postgres', containerPort: 5432 }, { name: 'http-admin', containerPort: 8080 }, { name: 'cache', containerPort: 6379, appProtocol: 'redis' }] },
  ];
  const spec = podOf(inject(deployment(template({ app: 'db' }, podSpec(containers)))).object);
  const proxy = proxyOf(spec);
  const args = proxy.args as string[];
  assert.is(flag(proxy, '--app-port'), '8080', 'the HTTP port is the app port even when a TCP port comes first');
  const values = (name: string) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
  assert.equal(values('--tcp-inbound'), ['0=5432', '0=6379']);
  assert.equal(values('--register-port'), ['http-admin=15006', 'tcp-postgres=5432', 'cache=6379']);
  assert.ok(args.includes('--iptables-capture'));
  const rules = spec.initContainers[0].command[2] as string;
  for (const port of [8080, 5432, 6379]) assert.match(rules, new RegExp(`--dport ${port} -j WASMESH_IN_REDIRECT`));
  // A pod that serves only TCP: no --app-port, still registered and captured.
  const tcpOnly = podOf(inject(deployment(template({ app: 'mq' }, podSpec([{ name: 'mq', image: 'mq:1', ports: [{ name: 'tcp', containerPort: 5672 }] }])))).object);
  const mq = proxyOf(tcpOnly);
  assert.is(flag(mq, '--app-port'), undefined);
  assert.is(flag(mq, '--tcp-inbound'), '0=5672');
  assert.is(flag(mq, '--register-port'), 'tcp=5672');
  assert.is(flag(mq, '--register-address'), '$(INSTANCE_IP)');
  assert.match(tcpOnly.initContainers[0].command[2], /--dport 5672 -j WASMESH_IN_REDIRECT/);
  // TCP by appProtocol alone, without a name: registered as `tcp`.
  const unnamed = proxyOf(podOf(inject(deployment(template({ app: 'kv' }, podSpec([{ name: 'kv', image: 'kv:1', ports: [{ containerPort: 6380, appProtocol: 'tcp' }] }])))).object));
  assert.is(flag(unnamed, '--register-port'), 'tcp=6380');
});

test('Istio traffic annotations shape the init container\'s rules; traffic.wasmesh.io/ wins over Istio\'s', () => {
  const annotations = {
    'traffic.sidecar.istio.io/includeInboundPorts': '*',
    'traffic.sidecar.istio.io/excludeInboundPorts': '22',
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/8,169.254.169.254',
    'traffic.sidecar.istio.io/excludeOutboundPorts': '5432',
    'traffic.sidecar.istio.io/includeOutboundPorts': '3306',
    'traffic.wasmesh.io/excludeOutboundPorts': '6379',
  };
  const script: string = podOf(inject(deployment(template({ app: 'web' }, podSpec(), annotations))).object).initContainers[0].command[2];
  assert.match(script, /-A WASMESH_INBOUND -p tcp --dport 22 -j RETURN/);
  assert.match(script, /-A WASMESH_INBOUND -p tcp -j WASMESH_IN_REDIRECT/);
  assert.match(script, /-A WASMESH_OUTPUT -d 10\.0\.0\.0\/8 -j RETURN/);
  assert.match(script, /-A WASMESH_OUTPUT -d 169\.254\.169\.254\/32 -j RETURN/);
  assert.match(script, /-A WASMESH_OUTPUT -p tcp --dport 3306 -j WASMESH_REDIRECT/);
  assert.match(script, /-A WASMESH_OUTPUT -p tcp --dport 6379 -j RETURN/);
  assert.not.match(script, /--dport 5432/);
});

// ---------------------------------------------------------------------------------------------
// Errors

test('malformed workloads and annotations are errors that say where', () => {
  let e = thrown(() => inject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 1 } }));
  assert.is(e.path, '/spec/template');
  assert.match(e.message, /Deployment web has no spec\.template/);
  e = thrown(() => inject({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { jobTemplate: {} } }));
  assert.is(e.path, '/spec/jobTemplate/spec');
  e = thrown(() => inject(deployment(template({ app: 'web' }, podSpec([])))));
  assert.is(e.path, '/spec/template/spec/containers');
  e = thrown(() => inject(deployment(template({ app: 'web' }, podSpec(), { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' }))));
  assert.is(e.path, '/spec/template/metadata/annotations/traffic.sidecar.istio.io~1excludeOutboundIPRanges');
  assert.match(e.message, /prefix length/);
  e = thrown(() => inject(deployment(template({ app: 'web' }, podSpec(), { 'traffic.sidecar.istio.io/excludeInboundPorts': '80,http' }))));
  assert.match(e.message, /"http" is not a port number/);
  e = thrown(() => inject(deployment(template({ app: 'web' }, podSpec(undefined, { volumes: [{ name: 'wasmesh-data', emptyDir: {} }] })))));
  assert.is(e.path, '/spec/template/spec/volumes/0/name');
});

test("injected pods carry Istio's sidecar label (clients' auto mTLS sends them mTLS); a pod's own value is kept", () => {
  const labels = (doc: unknown): Obj => (doc as Obj).spec.template.metadata.labels;
  const injected = inject(deployment(template()));
  assert.equal(labels(injected.object), { app: 'web', version: 'v1', 'security.istio.io/tlsMode': 'istio' });
  const own = inject(deployment(template({ app: 'web', 'security.istio.io/tlsMode': 'disabled' })));
  assert.is(labels(own.object)['security.istio.io/tlsMode'], 'disabled');
  assert.is(flag(proxyOf(podOf(own.object)), '--labels'), 'app=web,security.istio.io/tlsMode=disabled', 'and reaches the registered endpoint through the proxy');
  const optedOut = inject(deployment(template({ app: 'web', 'sidecar.istio.io/inject': 'false' })));
  assert.is(labels(optedOut.object)['security.istio.io/tlsMode'], undefined, 'no sidecar, no label');
});

test.run();
