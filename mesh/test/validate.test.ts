import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { fromObjects, parseDocuments, readDocumentFiles, type ConfigDocument } from '../src/documents.ts';
import { formatErrors, formatPath, validateDocuments, type ConfigError } from '../src/validate.ts';

const EXAMPLES = fileURLToPath(new URL('../../schemas/examples/', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Fixtures

const se = (name: string, ports: object[] = [{ number: 9080, name: 'http', protocol: 'HTTP' }], namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace },
  spec: { hosts: [`${name}.${namespace}.svc.cluster.local`], ports, resolution: 'STATIC', endpoints: [{ address: '10.0.0.1', labels: { version: 'v1' } }] },
});

const dr = (host: string, subsets: string[], name = host) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name },
  spec: { host, subsets: subsets.map((s) => ({ name: s, labels: { version: s } })) },
});

const vs = (http: object[], name = 'reviews', hosts = ['reviews']) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace: 'default' },
  spec: { hosts, http },
});

const plugin = (spec: object, name = 'p') => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name, namespace: 'default' },
  spec,
});

const dest = (host: string, subset?: string, weight?: number) => ({
  destination: { host, ...(subset ? { subset } : {}) },
  ...(weight !== undefined ? { weight } : {}),
});

/** A mesh.yaml whose third document is the VirtualService under test. */
function mesh(virtualService: object, ...more: object[]): ConfigDocument[] {
  return fromObjects([se('reviews'), dr('reviews', ['v1', 'v2', 'v3']), virtualService, ...more], 'mesh.yaml');
}

function errorsOf(docs: ConfigDocument[], mode?: 'standalone' | 'managed'): ConfigError[] {
  return [...validateDocuments(docs, mode ? { mode } : {}).errors];
}

function only(docs: ConfigDocument[], mode?: 'standalone' | 'managed'): ConfigError {
  const errors = errorsOf(docs, mode);
  assert.is(errors.length, 1, `expected one error, got:\n${formatErrors(errors)}`);
  return errors[0]!;
}

function has(errors: readonly ConfigError[], path: string, message: string | RegExp): void {
  const found = errors.some((e) => e.path === path && (typeof message === 'string' ? e.message === message : message.test(e.message)));
  assert.ok(found, `no error at ${path} matching ${String(message)} in:\n${formatErrors(errors)}`);
}

// ---------------------------------------------------------------------------------------------
// Valid input

test('the examples validate as one set', async () => {
  const { documents, errors } = await readDocumentFiles([EXAMPLES]);
  assert.equal(errors, []);
  const result = validateDocuments(documents);
  assert.equal(formatErrors(result.errors), '');
  assert.ok(result.ok);
  assert.ok(documents.length >= 10);
});

test('a well-formed mesh has no errors', () => {
  const docs = mesh(vs([{ route: [dest('reviews', 'v1', 90), dest('reviews', 'v2', 10)] }]));
  assert.equal(errorsOf(docs), []);
});

// ---------------------------------------------------------------------------------------------
// Error shape and formatting

test('an unsupported field is reported with document, path and name', () => {
  const e = only(mesh(vs([{ route: [dest('reviews')], corsPolicy: { allowOrigins: [{ exact: '*' }] } }])));
  assert.is(e.document, 'VirtualService default/reviews (mesh.yaml#3)');
  assert.is(e.path, '/spec/http/0/corsPolicy');
  assert.is(e.message, 'unsupported field "corsPolicy"');
  assert.equal(e.source, { file: 'mesh.yaml', index: 3 });
  assert.is(e.resource, 'VirtualService default/reviews');
  assert.is(formatErrors([e]), 'mesh.yaml#3 VirtualService default/reviews: spec.http[0].corsPolicy: unsupported field "corsPolicy"');
});

test('unsupported fields are rejected at every level, including metadata and the top level', () => {
  const bad = {
    ...se('reviews'),
    status: {},
    metadata: { name: 'reviews', uid: 'x' },
  };
  const errors = errorsOf(fromObjects([bad], 'se.yaml'));
  has(errors, '/status', 'unsupported field "status"');
  has(errors, '/metadata/uid', 'unsupported field "uid"');
});

test('weights that do not add up to 100 are reported on the last weight', () => {
  const e = only(mesh(vs([{ route: [dest('reviews', 'v1', 80), dest('reviews', 'v2', 10)] }])));
  assert.is(e.path, '/spec/http/0/route/1/weight');
  assert.is(formatErrors([e]), 'mesh.yaml#3 VirtualService default/reviews: spec.http[0].route[1].weight: weights add up to 90, not 100');
});

test('a missing weight counts as 0 in a split; a single destination may omit it but not set another value', () => {
  assert.is(only(mesh(vs([{ route: [dest('reviews', 'v1', 90), dest('reviews', 'v2')] }]))).message, 'weights add up to 90, not 100');
  assert.equal(errorsOf(mesh(vs([{ route: [dest('reviews', 'v1', 100), dest('reviews', 'v2')] }]))), []);
  assert.equal(errorsOf(mesh(vs([{ route: [dest('reviews', 'v1')] }]))), []);
  assert.equal(errorsOf(mesh(vs([{ route: [dest('reviews', 'v1', 100)] }]))), []);
  const e = only(mesh(vs([{ route: [dest('reviews', 'v1', 90)] }])));
  assert.is(e.path, '/spec/http/0/route/0/weight');
  assert.match(e.message, 'a single destination receives all traffic');
});

// ---------------------------------------------------------------------------------------------
// References

test('a destination host must be a ServiceEntry host or a fully qualified name', () => {
  const e = only(mesh(vs([{ route: [dest('reviewz')] }])));
  assert.is(e.path, '/spec/http/0/route/0/destination/host');
  assert.match(e.message, 'unknown host "reviewz"');
  assert.match(e.message, 'reviewz.default.svc.cluster.local');
  // Fully qualified names need no ServiceEntry; short names resolve in the VirtualService's namespace.
  assert.equal(errorsOf(mesh(vs([{ route: [dest('api.example.com')] }]))), []);
  assert.equal(errorsOf(mesh(vs([{ route: [dest('reviews.default.svc.cluster.local', 'v2')] }]))), []);
});

test('a destination subset must exist in a DestinationRule for that host', () => {
  const e = only(mesh(vs([{ route: [dest('reviews', 'v4')] }])));
  assert.is(e.path, '/spec/http/0/route/0/destination/subset');
  assert.is(e.message, 'subset "v4" is not defined in any DestinationRule for reviews.default.svc.cluster.local (defined: v1, v2, v3)');
  // A subset of another host's rule does not count.
  const docs = fromObjects([se('reviews'), se('ratings'), dr('ratings', ['v1']), vs([{ route: [dest('reviews', 'v1')] }])], 'mesh.yaml');
  const e2 = only(docs);
  assert.is(e2.message, 'subset "v1" is not defined in any DestinationRule for reviews.default.svc.cluster.local');
});

test('mirror destinations are checked like route destinations', () => {
  const e = only(mesh(vs([{ route: [dest('reviews')], mirror: { host: 'shadow' } }])));
  assert.is(e.path, '/spec/http/0/mirror/host');
});

test('a destination needs a port when its service has several, and the port must exist', () => {
  const twoPorts = [
    { number: 9080, name: 'http' },
    { number: 9443, name: 'grpc' },
  ];
  const docs = fromObjects([se('reviews', twoPorts), vs([{ route: [dest('reviews')] }])], 'mesh.yaml');
  const e = only(docs);
  assert.is(e.path, '/spec/http/0/route/0/destination');
  assert.is(e.message, 'port is required: reviews.default.svc.cluster.local has more than one port (9080, 9443)');
  const wrongPort = vs([{ route: [{ destination: { host: 'reviews', port: { number: 81 } } }] }]);
  const e2 = only(mesh(wrongPort));
  assert.is(e2.path, '/spec/http/0/route/0/destination/port/number');
  assert.match(e2.message, 'port 81 is not a port of reviews.default.svc.cluster.local');
});

test('a duplicate kind, namespace and name is an error on the later document', () => {
  const docs = fromObjects([se('reviews'), { ...se('reviews'), metadata: { name: 'reviews' } }], 'a.yaml');
  const e = only(docs);
  assert.is(e.document, 'ServiceEntry default/reviews (a.yaml#2)');
  assert.is(e.path, '');
  assert.is(e.message, 'duplicate: already defined in a.yaml#1');
  // Same name in another namespace, or of another kind, is fine.
  assert.equal(errorsOf(fromObjects([se('reviews'), se('reviews', undefined, 'prod'), dr('reviews', [])])), []);
});

// ---------------------------------------------------------------------------------------------
// Values a schema cannot fully check

test('durations must match the pattern, have millisecond precision and fit a timer', () => {
  const errors = errorsOf(
    mesh(
      vs([
        { route: [dest('reviews')], timeout: '5sec' },
        { route: [dest('reviews')], timeout: '1.0005s' },
        { route: [dest('reviews')], timeout: '600h', retries: { attempts: 2, perTryTimeout: '1.5s' } },
      ]),
    ),
  );
  assert.is(errors.length, 3, formatErrors(errors));
  has(errors, '/spec/http/0/timeout', 'invalid duration "5sec": use a number and a unit (h, m, s or ms), like 1.5s or 100ms');
  has(errors, '/spec/http/1/timeout', /finer than a millisecond/);
  has(errors, '/spec/http/2/timeout', /too long/);
});

test('durations are checked in every kind that has them', () => {
  const rule = {
    ...dr('reviews', ['v1']),
    spec: {
      host: 'reviews',
      trafficPolicy: { connectionPool: { tcp: { connectTimeout: '0.0001s' } }, outlierDetection: { interval: '10 s' } },
      subsets: [{ name: 'v1', trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: 'c', ttl: '1d' } } } } }],
    },
  };
  const errors = errorsOf(fromObjects([se('reviews'), rule], 'dr.yaml'));
  has(errors, '/spec/trafficPolicy/connectionPool/tcp/connectTimeout', /finer than a millisecond/);
  has(errors, '/spec/trafficPolicy/outlierDetection/interval', /invalid duration "10 s"/);
  has(errors, '/spec/subsets/0/trafficPolicy/loadBalancer/consistentHash/httpCookie/ttl', /invalid duration "1d"/);
});

test('regexes must compile and stay in the RE2-compatible subset', () => {
  const match = (regex: string) => ({ match: [{ uri: { regex } }], route: [dest('reviews')] });
  const errors = errorsOf(
    mesh(
      vs([
        match('(?<=/api)/v1'),
        match('(?<!x)y'),
        match('(a)\\1'),
        match('(?<n>a)\\k<n>'),
        match('a(?=b)'),
        match('a('),
        match('(?i)abc'),
        match('^/api/v[0-9]+/(reviews|ratings)$'),
        { match: [{ headers: { 'x-id': { regex: '(?!0)[0-9]+' } }, queryParams: { q: { regex: '[' } } }], route: [dest('reviews')] },
      ]),
    ),
  );
  has(errors, '/spec/http/0/match/0/uri/regex', /^lookbehind .* not supported \(RE2 has no lookaround\)$/);
  has(errors, '/spec/http/1/match/0/uri/regex', /^lookbehind/);
  has(errors, '/spec/http/2/match/0/uri/regex', 'backreference \\1 is not supported (RE2 has no backreferences)');
  has(errors, '/spec/http/3/match/0/uri/regex', /^named backreference/);
  has(errors, '/spec/http/4/match/0/uri/regex', /^lookahead/);
  has(errors, '/spec/http/5/match/0/uri/regex', /^invalid regex: /);
  has(errors, '/spec/http/6/match/0/uri/regex', /inline flags like \(\?i\) are not supported/);
  has(errors, '/spec/http/8/match/0/headers/x-id/regex', /^lookahead/);
  has(errors, '/spec/http/8/match/0/queryParams/q/regex', /^invalid regex/);
  assert.is(errors.filter((e) => e.path.startsWith('/spec/http/7/')).length, 0);
  assert.is(errors.length, 9, formatErrors(errors));
});

test('a character class or escaped digit is not mistaken for a backreference or lookaround', () => {
  const ok = (regex: string) => ({ match: [{ uri: { regex } }], route: [dest('reviews')] });
  assert.equal(errorsOf(mesh(vs([ok('[\\1-9]+'), ok('\\(?=x\\)'), ok('[(?<=]'), ok('\\\\1')]))), []);
});

// ---------------------------------------------------------------------------------------------
// WasmPlugin urls

test('WasmPlugin urls: file:// is accepted, relative or absolute', () => {
  assert.equal(errorsOf(fromObjects([plugin({ url: 'file://./filter.wasm' }), plugin({ url: 'file:///opt/f.wasm' }, 'q')])), []);
});

test('WasmPlugin urls: oci, http(s) and scheme-less urls are rejected, saying what is supported', () => {
  const docs = fromObjects(
    [plugin({ url: 'oci://ghcr.io/acme/f:1' }, 'a'), plugin({ url: 'https://example.com/f.wasm' }, 'b'), plugin({ url: 'ghcr.io/acme/f:1' }, 'c')],
    'p.yaml',
  );
  const errors = errorsOf(docs);
  assert.is(errors.length, 3);
  for (const e of errors) {
    assert.is(e.path, '/spec/url');
    assert.match(e.message, 'only file:// urls');
    assert.match(e.message, 'digests');
  }
  assert.match(errors[0]!.message, /^oci:\/\/ urls are not supported/);
  assert.match(errors[1]!.message, /^https:\/\/ urls are not supported/);
  assert.match(errors[2]!.message, /has no scheme \(Istio reads that as oci:\/\/\)/);
});

test('WasmPlugin urls: orchestrator digests need managed mode and must agree with sha256', () => {
  const digest = 'a'.repeat(64);
  const docs = fromObjects([plugin({ url: `digest:sha256:${digest}`, sha256: digest })]);
  assert.match(only(docs).message, 'need managed mode');
  assert.equal(errorsOf(docs, 'managed'), []);
  const mismatch = fromObjects([plugin({ url: `digest:sha256:${digest}`, sha256: 'b'.repeat(64) })]);
  const e = only(mismatch, 'managed');
  assert.is(e.path, '/spec/sha256');
  assert.is(e.message, 'sha256 does not match the digest in url');
  assert.is(only(fromObjects([plugin({ url: 'digest:sha256:abc' })]), 'managed').message, 'invalid digest url: expected digest:sha256:<64 hexadecimal characters>');
  // Remote urls stay unsupported in managed mode too: nothing would fetch them.
  assert.match(only(fromObjects([plugin({ url: 'oci://x/y' })]), 'managed').message, 'only uploaded modules');
});

test('WasmPlugin urls: file:// in managed mode is refused at spec.url (and spec.canary.url), saying to upload', () => {
  const e = only(fromObjects([plugin({ url: 'file:///opt/f.wasm' })]), 'managed');
  assert.is(e.path, '/spec/url');
  assert.match(e.message, 'file:// modules cannot be served to managed proxies');
  assert.match(e.message, 'upload the module instead (`wasmesh filter deploy <module.wasm> --name NAME --version VERSION`) and use url module://NAME@VERSION');
  const canary = only(fromObjects([plugin({ url: 'module://f@1.0.0', canary: { url: 'file://next.wasm', weight: 5 } })]), 'managed');
  assert.is(canary.path, '/spec/canary/url');
  assert.equal(errorsOf(fromObjects([plugin({ url: 'file:///opt/f.wasm' })])), [], 'standalone proxies read files');
});

test('what the filters cannot evaluate is an error at the field: faults behind regex or authority matches, unknown when keys', () => {
  const vs = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'ratings' },
    spec: {
      hosts: ['ratings.example.com'],
      http: [
        { match: [{ authority: { exact: 'x' } }], route: [{ destination: { host: 'ratings.example.com' } }] },
        { match: [{ headers: { 'end-user': { regex: 'j.*' } } }], fault: { abort: { httpStatus: 500, percentage: { value: 5 } } }, route: [{ destination: { host: 'ratings.example.com' } }] },
        // After the last fault: not the fault filter's business.
        { match: [{ uri: { regex: '.*' } }], route: [{ destination: { host: 'ratings.example.com' } }] },
      ],
    },
  };
  const errors = errorsOf(fromObjects([vs]));
  assert.equal(errors.map((e) => e.path), ['/spec/http/0/match/0/authority', '/spec/http/1/match/0/headers/end-user/regex']);
  assert.match(errors[0]!.message, 'the fault filter cannot match on authority');
  assert.match(errors[1]!.message, 'regex matches are not supported by the fault filter');
  const ap = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/x'] } }] }, { when: [{ key: 'request.body', values: ['x'] }] }] },
  };
  const e = only(fromObjects([ap]));
  assert.is(e.path, '/spec/rules/1/when/0/key');
  assert.is(e.message, 'unsupported key "request.body"');
});

test('WasmPlugin CPU budgets: whole numbers of fuel units from 1; a bad one names its field, and formatted errors read spec.cpuBudget', () => {
  assert.equal(errorsOf(fromObjects([plugin({ url: 'file://f.wasm', cpuBudget: 5_000_000, startupCpuBudget: 1e11 })])), []);
  const zero = only(fromObjects([plugin({ url: 'file://f.wasm', cpuBudget: 0 })], 'mesh.yaml'));
  assert.is(zero.path, '/spec/cpuBudget');
  assert.is(zero.message, 'must be >= 1 (got 0)');
  assert.match(formatErrors([zero]), 'WasmPlugin default/p: spec.cpuBudget: must be >= 1 (got 0)');
  const errors = errorsOf(fromObjects([plugin({ url: 'file://f.wasm', cpuBudget: 1.5, startupCpuBudget: '1e9' })]));
  has(errors, '/spec/cpuBudget', 'must be an integer (got 1.5)');
  has(errors, '/spec/startupCpuBudget', 'must be an integer (got "1e9")');
  // The runtime's fuel counter is set from a JS number: past 2^53 - 1 it would not count exactly.
  const huge = only(fromObjects([plugin({ url: 'file://f.wasm', startupCpuBudget: 2 ** 60 })]));
  assert.is(huge.path, '/spec/startupCpuBudget');
  assert.match(huge.message, /^must be <= 9007199254740991/);
});

test('WasmPlugin spec.vms: a pool of 1 to 16 VMs; a bad one names its field', () => {
  assert.equal(errorsOf(fromObjects([plugin({ url: 'file://f.wasm', vms: 1 }), plugin({ url: 'file://g.wasm', vms: 16 }, 'q')])), []);
  const zero = only(fromObjects([plugin({ url: 'file://f.wasm', vms: 0 })], 'mesh.yaml'));
  assert.is(zero.path, '/spec/vms');
  assert.match(formatErrors([zero]), 'WasmPlugin default/p: spec.vms: must be >= 1 (got 0)');
  const many = only(fromObjects([plugin({ url: 'file://f.wasm', vms: 17 })]));
  assert.is(many.path, '/spec/vms');
  assert.match(many.message, /^must be <= 16/);
  has(errorsOf(fromObjects([plugin({ url: 'file://f.wasm', vms: 2.5 })])), '/spec/vms', 'must be an integer (got 2.5)');
  has(errorsOf(fromObjects([plugin({ url: 'file://f.wasm', vms: '4' })])), '/spec/vms', 'must be an integer (got "4")');
});

// ---------------------------------------------------------------------------------------------
// Unsupported values and shapes

test('unsupported Istio values get a specific reason', () => {
  // type NETWORK is supported (the TCP proxy runs it); a canary on one is not, named by its path.
  assert.ok(validateDocuments(fromObjects([plugin({ url: 'file://f.wasm', type: 'NETWORK' })])).ok);
  const networkCanary = only(fromObjects([plugin({ url: 'file://f.wasm', type: 'NETWORK', canary: { url: 'file://g.wasm', weight: 10 } })]));
  assert.is(networkCanary.path, '/spec/canary');
  assert.match(networkCanary.message, 'canary is not supported for type NETWORK');
  const custom = only(
    fromObjects([{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'ext' }, spec: { action: 'CUSTOM' } }]),
  );
  assert.is(custom.path, '/spec/action');
  assert.match(custom.message, 'action CUSTOM is not supported');
});

test('other enum, type, required and range errors', () => {
  const errors = errorsOf(
    fromObjects([
      {
        apiVersion: 'networking.istio.io/v2',
        kind: 'ServiceEntry',
        metadata: { name: 'x' },
        spec: { hosts: 'x.example.com', ports: [{ number: 70000, name: 'http', protocol: 'UDP' }] },
      },
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: {}, spec: { mtls: { mode: 'ON' } } },
    ]),
  );
  has(errors, '/apiVersion', 'must be one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3 (got "networking.istio.io/v2")');
  has(errors, '/spec/hosts', 'must be an array (got "x.example.com")');
  has(errors, '/spec/ports/0/number', 'must be <= 65535 (got 70000)');
  has(errors, '/spec/ports/0/protocol', /^must be one of HTTP, HTTP2, GRPC, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS \(got "UDP"\)$/);
  has(errors, '/metadata', 'missing required field "name"');
  has(errors, '/spec/mtls/mode', /^must be one of UNSET, DISABLE, PERMISSIVE, STRICT/);
  const pa = errors.find((e) => e.path === '/metadata')!;
  assert.is(pa.document, 'PeerAuthentication (<inline>#2)');
});

test('exactly-one-of rules name the alternatives', () => {
  const errors = errorsOf(
    mesh(
      vs([
        { match: [{ uri: { exact: '/a', prefix: '/b' } }], route: [dest('reviews')] },
        { match: [{ uri: {} }], route: [dest('reviews')] },
        { name: 'none' },
        { redirect: { uri: '/x' }, directResponse: { status: 200 } },
        { route: [dest('reviews')], fault: { abort: { percentage: { value: 1 } } } },
      ]),
    ),
  );
  has(errors, '/spec/http/0/match/0/uri', 'must have exactly one of exact, prefix, regex');
  has(errors, '/spec/http/1/match/0/uri', 'must have exactly one of exact, prefix, regex');
  has(errors, '/spec/http/2', 'must have exactly one of route, redirect, directResponse');
  has(errors, '/spec/http/3', 'must have only one of route, redirect, directResponse (found redirect and directResponse)');
  has(errors, '/spec/http/4/fault/abort', 'must have exactly one of httpStatus, grpcStatus');
  // Branch errors ("must have required property") are folded into the one message.
  assert.not.ok(errors.some((e) => /required/.test(e.message)), formatErrors(errors));
});

test('rewrite cannot be combined with redirect', () => {
  const e = only(mesh(vs([{ redirect: { uri: '/x' }, rewrite: { uri: '/y' } }])));
  assert.is(e.path, '/spec/http/0/rewrite');
  assert.is(e.message, 'rewrite cannot be combined with redirect');
});

test('map keys are checked: PeerAuthentication portLevelMtls takes port numbers', () => {
  const pa = {
    apiVersion: 'security.istio.io/v1beta1',
    kind: 'PeerAuthentication',
    metadata: { name: 'pa', namespace: 'prod' },
    spec: { selector: { matchLabels: { app: 'x' } }, portLevelMtls: { '8080': { mode: 'DISABLE' }, http: { mode: 'STRICT' } } },
  };
  const e = only(fromObjects([pa], 'pa.yaml'));
  assert.is(e.path, '/spec/portLevelMtls/http');
  assert.is(formatErrors([e]), 'pa.yaml#1 PeerAuthentication prod/pa: spec.portLevelMtls.http: invalid key "http": must be a port number');
});

test('documents that are not resources of a supported kind', () => {
  const errors = errorsOf(fromObjects(['text', [1], { kind: 'EnvoyFilter', metadata: { name: 'g' } }, { metadata: { name: 'x' } }], 'odd.yaml'));
  assert.is(errors.length, 4);
  assert.equal(
    errors.map((e) => [e.document, e.path]),
    [
      ['odd.yaml#1', ''],
      ['odd.yaml#2', ''],
      ['EnvoyFilter default/g (odd.yaml#3)', '/kind'],
      ['odd.yaml#4', ''],
    ],
  );
  assert.match(errors[0]!.message, 'must be an object');
  assert.match(errors[2]!.message, 'unsupported kind "EnvoyFilter": supported kinds are ServiceEntry,');
  assert.is(errors[3]!.message, 'missing required field "kind"');
});

// ---------------------------------------------------------------------------------------------
// Purity and completeness

test('validation never modifies its input and gives the same answer twice', () => {
  const raw = [
    se('reviews'),
    dr('reviews', ['v1']),
    vs([{ route: [dest('reviews', 'v1', 50), dest('reviews', 'v9', 20)], timeout: '1.00001s', corsPolicy: {} }]),
    plugin({ url: 'oci://x', type: 'NETWORK', pluginConfig: { a: [1, { b: 2 }] } }),
  ];
  const before = structuredClone(raw);
  const docs = fromObjects(deepFreeze(raw), 'mesh.yaml');
  const first = validateDocuments(docs);
  const second = validateDocuments(docs);
  assert.equal(raw, before);
  assert.equal(first, second);
  assert.not.ok(first.ok);
});

test('bad input loses nothing: every problem of every document is reported, valid documents get none', () => {
  const docs = mesh(
    vs([
      { route: [dest('reviews', 'v1', 80), dest('reviews', 'v4', 10)], timeout: '2 seconds', corsPolicy: {} },
      { route: [dest('missing')], mirrorPercentage: { value: 150 } },
    ]),
    plugin({ url: 'https://x/y.wasm', phase: 'LATE' }),
  );
  const errors = errorsOf(docs);
  // Schema errors: corsPolicy, timeout pattern, mirrorPercentage, phase; url comes with the semantic checks,
  // which need a schema-valid document, so the WasmPlugin reports its phase only.
  has(errors, '/spec/http/0/corsPolicy', 'unsupported field "corsPolicy"');
  has(errors, '/spec/http/0/timeout', /invalid duration "2 seconds"/);
  has(errors, '/spec/http/1/mirrorPercentage/value', 'must be <= 100 (got 150)');
  has(errors, '/spec/phase', /^must be one of UNSPECIFIED_PHASE, AUTHN, AUTHZ, STATS/);
  assert.ok(errors.every((e) => e.source!.index >= 3), 'the ServiceEntry and DestinationRule are valid');
  // Fixing the schema errors reveals the reference errors, all at once.
  const fixed = mesh(
    vs([
      { route: [dest('reviews', 'v1', 80), dest('reviews', 'v4', 10)], timeout: '2s' },
      { route: [dest('missing')], mirrorPercentage: { value: 50 } },
    ]),
    plugin({ url: 'https://x/y.wasm', phase: 'STATS' }),
  );
  const next = errorsOf(fixed);
  assert.equal(
    next.map((e) => e.path),
    ['/spec/http/0/route/1/weight', '/spec/http/0/route/1/destination/subset', '/spec/http/1/route/0/destination/host', '/spec/url'],
  );
});

// ---------------------------------------------------------------------------------------------
// Documents

test('parseDocuments: multi-document YAML, empty documents skipped, sources numbered', () => {
  const { documents, errors } = parseDocuments('---\na: 1\n---\n# nothing\n---\nb: 2\n', 'm.yaml');
  assert.equal(errors, []);
  assert.equal(
    documents.map((d) => [d.source.index, d.value]),
    [
      [1, { a: 1 }],
      [2, { b: 2 }],
    ],
  );
  assert.is(documents[1]!.source.line, 6);
});

test('parseDocuments: JSON objects, JSON arrays and kind: List are flattened into documents', () => {
  assert.equal(parseDocuments('{"kind":"X"}', 'a.json').documents.map((d) => d.value), [{ kind: 'X' }]);
  assert.equal(parseDocuments('[{"a":1},\n\t{"b":2}]', 'a.json').documents.map((d) => [d.source.index, d.value]), [
    [1, { a: 1 }],
    [2, { b: 2 }],
  ]);
  const list = parseDocuments('apiVersion: v1\nkind: List\nitems:\n  - a: 1\n  - b: 2\n---\nc: 3\n', 'l.yaml');
  assert.equal(list.documents.map((d) => [d.source.index, d.source.line, d.value]), [
    [1, 4, { a: 1 }],
    [2, 5, { b: 2 }],
    [3, 7, { c: 3 }],
  ]);
});

test('parseDocuments: syntax errors carry the document and position, other documents survive', () => {
  const { documents, errors } = parseDocuments('a: 1\n---\nb: [1\n---\nc: 3\n---\nd: 1\nd: 2\n', 'bad.yaml');
  assert.equal(documents.map((d) => d.value), [{ a: 1 }, { c: 3 }]);
  assert.equal(documents.map((d) => d.source.index), [1, 3]);
  assert.is(errors.length, 2);
  assert.is(errors[0]!.document, 'bad.yaml#2');
  assert.match(errors[0]!.message, /^invalid YAML at line \d+, column \d+: /);
  assert.is(errors[1]!.document, 'bad.yaml#4');
  assert.match(errors[1]!.message, 'unique');
});

test('readDocumentFiles reports unreadable files', async () => {
  const { errors } = await readDocumentFiles(['/nonexistent/wasmesh.yaml']);
  assert.equal(errors, [{ document: '/nonexistent/wasmesh.yaml', path: '', message: 'cannot read: ENOENT' }]);
});

test('formatPath renders JSON pointers the way people read them', () => {
  assert.is(formatPath(''), '');
  assert.is(formatPath('/spec/http/0/route/1/weight'), 'spec.http[0].route[1].weight');
  assert.is(formatPath('/spec/http/0/match/0/headers/x-user/exact'), 'spec.http[0].match[0].headers["x-user"].exact');
  assert.is(formatPath('/metadata/labels/app.kubernetes.io~1name'), 'metadata.labels["app.kubernetes.io/name"]');
});

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

test.run();
