// RateLimitPolicy: validation (schema and the checks past it, with field paths), translation into the
// policy filter's pluginConfig (conforming to its schema) and into the rate-limit service's limits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { fromObjects, parseDocuments } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { rateLimitServiceConfig } from '../src/translate/ratelimit.ts';

const schema = JSON.parse(readFileSync(new URL('../../schemas/json/filters/policy.schema.json', import.meta.url), 'utf8')) as object;
const conforms = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

const MESH = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratelimit, namespace: wasmesh-system }
spec:
  hosts: [ratelimit.wasmesh-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8081, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: 18081 } }]
---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: reviews, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  local:
    - name: per-user
      descriptor: { header: x-user }
      maxTokens: 10
      tokensPerFill: 5
      fillInterval: 1s
  global:
    service: { host: ratelimit.wasmesh-system.svc.cluster.local, port: 8081 }
    timeout: 50ms
    failureMode: DENY
    limits:
      - name: per-client
        descriptors: [{ remoteAddress: {} }, { header: { name: X-User, key: user } }]
        requestsPerUnit: 100
        unit: MINUTE
      - name: all
        requestsPerUnit: 1000
        unit: SECOND
        shadowMode: true
      - name: api
        descriptors: [{ destination: {} }, { sourcePrincipal: {} }, { genericKey: { value: v1 } }]
        requestsPerUnit: 5
        unit: HOUR
`;

const workload = { name: 'reviews-v1', namespace: 'default', labels: { app: 'reviews' }, serviceAccount: 'reviews' };

function docs(text: string) {
  const parsed = parseDocuments(text, 'mesh.yaml');
  assert.equal(parsed.errors, []);
  return parsed.documents;
}

test('a valid RateLimitPolicy validates with its ServiceEntry', () => {
  const r = validateDocuments(docs(MESH));
  assert.ok(r.ok, formatErrors(r.errors));
});

test('the selected workload gets local buckets and the global check in the policy filter, and a cluster for the service', () => {
  const config = translateProxyConfig(docs(MESH), workload);
  const policy = config.inboundFilters.find((f) => f.name === 'wasmesh-policy');
  assert.ok(policy, 'the policy filter is bound without any AuthorizationPolicy');
  const pc = policy!.pluginConfig as Record<string, unknown>;
  assert.ok(conforms(pc), JSON.stringify(conforms.errors));
  assert.equal(pc.rateLimits, [{ name: 'default.reviews.per-user', descriptor: { header: 'x-user' }, maxTokens: 10, fillIntervalMs: 1000, tokensPerFill: 5 }]);
  const cluster = 'outbound|8081||ratelimit.wasmesh-system.svc.cluster.local';
  assert.equal(pc.globalRateLimit, {
    cluster,
    domain: 'wasmesh',
    timeoutMs: 50,
    failureMode: 'DENY',
    descriptors: [
      { entries: [{ key: 'wasmesh_limit', value: 'default.reviews.per-client' }, { key: 'remote_address', remoteAddress: true }, { key: 'user', header: 'x-user' }] },
      { entries: [{ key: 'wasmesh_limit', value: 'default.reviews.all' }] },
      { entries: [{ key: 'wasmesh_limit', value: 'default.reviews.api' }, { key: 'destination', destination: true }, { key: 'source_principal', sourcePrincipal: true }, { key: 'generic_key', value: 'v1' }] },
    ],
  });
  assert.ok(config.clusters[cluster], 'the service cluster exists');
  assert.equal(config.clusters[cluster]!.endpoints.map((e) => `${e.address}:${e.port}`), ['127.0.0.1:18081']);
  assert.is(config.clusters[cluster]!.protocol, 'grpc');
});

test('another workload is not selected: no policy filter', () => {
  const config = translateProxyConfig(docs(MESH), { ...workload, labels: { app: 'ratings' } });
  assert.is(config.inboundFilters.find((f) => f.name === 'wasmesh-policy'), undefined);
});

test('the service gets every limit as lyft/ratelimit descriptors: the limit name, then each entry, the limit on the last node', () => {
  assert.equal(rateLimitServiceConfig(docs(MESH)), {
    domains: {
      wasmesh: [
        {
          key: 'wasmesh_limit',
          value: 'default.reviews.per-client',
          descriptors: [{ key: 'remote_address', descriptors: [{ key: 'user', rateLimit: { requestsPerUnit: 100, unit: 'MINUTE', name: 'default.reviews.per-client' } }] }],
        },
        { key: 'wasmesh_limit', value: 'default.reviews.all', rateLimit: { requestsPerUnit: 1000, unit: 'SECOND', name: 'default.reviews.all' }, shadowMode: true },
        {
          key: 'wasmesh_limit',
          value: 'default.reviews.api',
          descriptors: [{ key: 'destination', descriptors: [{ key: 'source_principal', descriptors: [{ key: 'generic_key', value: 'v1', rateLimit: { requestsPerUnit: 5, unit: 'HOUR', name: 'default.reviews.api' } }] }] }],
        },
      ],
    },
  });
});

test('two policies on one workload must share the service; the shortest timeout and DENY win', () => {
  const base = { apiVersion: 'policy.wasmesh.io/v1alpha1', kind: 'RateLimitPolicy' };
  const se = docs(MESH)[0]!.value;
  const a = { ...base, metadata: { name: 'a' }, spec: { global: { service: { host: 'ratelimit.wasmesh-system.svc.cluster.local', port: 8081 }, timeout: '300ms', limits: [{ name: 'x', requestsPerUnit: 1, unit: 'SECOND' }] } } };
  const b = { ...base, metadata: { name: 'b' }, spec: { global: { service: { host: 'ratelimit.wasmesh-system.svc.cluster.local', port: 8081 }, timeout: '20ms', failureMode: 'DENY', limits: [{ name: 'y', requestsPerUnit: 1, unit: 'SECOND' }] } } };
  const g = (translateProxyConfig(fromObjects([se, a, b]), { ...workload, labels: {} }).inboundFilters.find((f) => f.name === 'wasmesh-policy')!.pluginConfig as { globalRateLimit: { timeoutMs: number; failureMode: string; descriptors: unknown[] } }).globalRateLimit;
  assert.is(g.timeoutMs, 20);
  assert.is(g.failureMode, 'DENY');
  assert.is(g.descriptors.length, 2);
  const c = { ...base, metadata: { name: 'c' }, spec: { global: { service: { host: 'other.example.com', port: 1 }, limits: [{ name: 'z', requestsPerUnit: 1, unit: 'SECOND' }] } } };
  assert.throws(() => translateProxyConfig(fromObjects([se, a, c]), { ...workload, labels: {} }), /must use one rate-limit service and domain/);
});

test('validation errors name the document and the field path', () => {
  const bad = `
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: bad }
spec:
  local:
    - { name: a, descriptor: { header: x, global: true }, maxTokens: 0, fillInterval: 25h }
    - { name: a, descriptor: { global: true }, maxTokens: 5, tokensPerFill: 6, fillInterval: 1s }
  global:
    service: { host: ratelimit, port: 8081 }
    timeout: 2m
    limits:
      - { name: x, unit: WEEK, requestsPerUnit: 1, descriptors: [{ remoteAddress: {}, destination: {} }, { header: { name: h } }, { header: { name: H } }] }
      - { name: x, unit: SECOND, requestsPerUnit: 1, descriptors: [{ genericKey: { key: wasmesh_limit, value: v } }] }
`;
  const r = validateDocuments(docs(bad));
  const text = formatErrors(r.errors);
  const expect = [
    'mesh.yaml#1 line 7 RateLimitPolicy default/bad: spec.local[0].descriptor: must have exactly one of header, sourcePrincipal, pathPrefix, global',
    'spec.local[0].maxTokens: must be >= 1 (got 0)',
    'spec.global.limits[0].unit: must be one of SECOND, MINUTE, HOUR, DAY (got "WEEK")',
    'spec.global.limits[0].descriptors[0]: must have exactly one of remoteAddress, header, destination, sourcePrincipal, genericKey',
  ];
  for (const e of expect) assert.ok(text.includes(e), `missing: ${e}\n${text}`);
  // Past the schema (a valid shape with problems the schema cannot see):
  const shaped = bad.replace('header: x, global: true', 'header: x').replace('maxTokens: 0', 'maxTokens: 1').replace('unit: WEEK', 'unit: MINUTE').replace('{ remoteAddress: {}, destination: {} }', '{ remoteAddress: {} }');
  const text2 = formatErrors(validateDocuments(docs(shaped)).errors);
  const expect2 = [
    'spec.local[0].fillInterval: must be from 1ms to 24h (got 25h)',
    'spec.local[1].tokensPerFill: 6 is more than maxTokens (5)',
    'spec.local[1].name: limit "a" is already defined at spec.local[0]',
    'spec.global.timeout: must be from 1ms to 60s (got 2m)',
    'spec.global.limits[0].descriptors[2]: key "h" is already used by descriptors[1]',
    'spec.global.limits[1].name: limit "x" is already defined at spec.global.limits[0]',
    'spec.global.limits[1].descriptors[0]: the key "wasmesh_limit" is reserved',
    'spec.global.service.host: unknown host "ratelimit": no ServiceEntry declares "ratelimit.default.svc.cluster.local"',
  ];
  for (const e of expect2) assert.ok(text2.includes(e), `missing: ${e}\n${text2}`);
});

test('a service port the ServiceEntry does not have is an error', () => {
  const text = MESH.replace('port: 8081 }\n    timeout', 'port: 9999 }\n    timeout');
  const r = validateDocuments(docs(text));
  assert.match(formatErrors(r.errors), /spec\.global\.service\.port: port 9999 is not a port of ratelimit\.wasmesh-system\.svc\.cluster\.local \(ports: 8081\)/);
});

test.run();
