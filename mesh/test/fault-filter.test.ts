import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseDocuments, type HTTPRoute, type VirtualService } from '../src/documents.ts';
import { FaultFilterError, faultFilterConfig, type FaultFilterConfig } from '../src/translate/fault-filter.ts';

const schema = JSON.parse(readFileSync(new URL('../../schemas/json/filters/fault.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

function vs(name: string, hosts: string[], http: HTTPRoute[], extra: { namespace?: string; gateways?: string[] } = {}): VirtualService {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, namespace: extra.namespace ?? 'default' },
    spec: { hosts, http, ...(extra.gateways ? { gateways: extra.gateways } : {}) },
  };
}

const to = (host: string, subset?: string) => [{ destination: { host, ...(subset ? { subset } : {}) } }];
const RATINGS = ['ratings.default.svc.cluster.local', 'ratings.default.svc', 'ratings.default', 'ratings'];

/** Translates and checks the result against the filter's schema. */
function translate(list: VirtualService[], options?: Parameters<typeof faultFilterConfig>[1]): FaultFilterConfig {
  const out = faultFilterConfig(list, options);
  assert.ok(validate(out), `schema: ${JSON.stringify(validate.errors)}`);
  return out;
}

test('Bookinfo ratings-test-abort: a header-restricted abort; the fault-free route after it is left out', () => {
  const out = translate([
    vs('ratings', ['ratings'], [
      { match: [{ headers: { 'end-user': { exact: 'jason' } } }], fault: { abort: { percentage: { value: 100 }, httpStatus: 500 } }, route: to('ratings', 'v1') },
      { route: to('ratings', 'v1') },
    ]),
  ]);
  assert.equal(out, {
    rules: [{ hosts: RATINGS, match: [{ headers: { 'end-user': { exact: 'jason' } } }], abort: { httpStatus: 500, percentage: 100 } }],
  });
});

test('Bookinfo ratings-test-delay: fixedDelay in milliseconds; delay and abort combine', () => {
  const out = translate([
    vs('ratings', ['ratings'], [
      {
        match: [{ headers: { 'End-User': { prefix: 'jas' } }, uri: { prefix: '/ratings' }, method: { exact: 'GET' } }],
        fault: { delay: { fixedDelay: '7s', percentage: { value: 50 } }, abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 12.5 } } },
        route: to('ratings'),
      },
    ]),
  ]);
  assert.equal(out.rules, [
    {
      hosts: RATINGS,
      match: [{ uri: { prefix: '/ratings' }, method: { exact: 'GET' }, headers: { 'end-user': { prefix: 'jas' } } }],
      delay: { fixedDelayMs: 7000, percentage: 50 },
      abort: { grpcStatus: 'UNAVAILABLE', percentage: 12.5 },
    },
  ]);
});

test('percentage left out applies to no request (Istio), written as 0; the rule still shadows later routes', () => {
  const out = translate([
    vs('ratings', ['ratings'], [
      { match: [{ uri: { exact: '/a' } }], fault: { abort: { httpStatus: 503 } }, route: to('ratings') },
      { fault: { delay: { fixedDelay: '100ms', percentage: {} } }, route: to('ratings') },
    ]),
  ]);
  assert.equal(out.rules, [
    { hosts: RATINGS, match: [{ uri: { exact: '/a' } }], abort: { httpStatus: 503, percentage: 0 } },
    { hosts: RATINGS, match: [], delay: { fixedDelayMs: 100, percentage: 0 } },
  ]);
});

test('an earlier route without fault shadows the faulty one; a catch-all route ends the list', () => {
  const out = translate([
    vs('reviews', ['reviews'], [
      { match: [{ uri: { prefix: '/health' } }, { headers: { 'x-no-chaos': {} } }], route: to('reviews') },
      { fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }, route: to('reviews') },
      // Unreachable after the catch-all: a regex here does not matter.
      { match: [{ uri: { regex: '/v[0-9]+' } }], fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: to('reviews') },
    ]),
  ]);
  const hosts = ['reviews.default.svc.cluster.local', 'reviews.default.svc', 'reviews.default', 'reviews'];
  assert.equal(out.rules, [
    { hosts, match: [{ uri: { prefix: '/health' } }, { headers: { 'x-no-chaos': {} } }] },
    { hosts, match: [], abort: { httpStatus: 418, percentage: 100 } },
  ]);
});

test('regex, authority, queryParams and port in a route that matters are refused with the field path', () => {
  const cases: Array<[HTTPRoute[], RegExp]> = [
    [[{ match: [{ uri: { regex: '/v[0-9]+' } }], fault: { abort: { httpStatus: 500 } } }], /VirtualService default\/ratings: spec\.http\[0\]\.match\[0\]\.uri\.regex: regex matches are not supported by the fault filter .*no RegExp.*use exact or prefix/],
    [[{ match: [{ headers: { 'x-v': { regex: 'a.*' } } }] }, { fault: { abort: { httpStatus: 500 } } }], /spec\.http\[0\]\.match\[0\]\.headers\.x-v\.regex: regex matches are not supported/],
    [[{ match: [{}, { queryParams: { a: { exact: '1' } } }], fault: { abort: { httpStatus: 500 } } }], /spec\.http\[0\]\.match\[1\]\.queryParams: the fault filter cannot match on queryParams/],
    [[{ match: [{ port: 9080 }], fault: { abort: { httpStatus: 500 } } }], /spec\.http\[0\]\.match\[0\]\.port: the fault filter cannot match on port/],
    [[{ fault: { delay: { fixedDelay: '1.0001s' } } }], /spec\.http\[0\]\.fault\.delay\.fixedDelay: duration "1.0001s" is finer than a millisecond/],
  ];
  for (const [http, expected] of cases) {
    assert.throws(() => faultFilterConfig([vs('ratings', ['ratings'], http)]), (err: Error) => err instanceof FaultFilterError && expected.test(err.message));
  }
  // The same regex in a VirtualService without faults is not the filter's business.
  assert.equal(faultFilterConfig([vs('x', ['x'], [{ match: [{ uri: { regex: '.*' } }], route: to('x') }])]), { rules: [] });
});

test('no faults anywhere, or only gateway VirtualServices: no rules', () => {
  assert.equal(translate([]), { rules: [] });
  assert.equal(translate([vs('a', ['a'], [{ route: to('a') }])]), { rules: [] });
  assert.equal(translate([vs('g', ['a'], [{ fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('a') }], { gateways: ['ingress'] })]), { rules: [] });
  const mesh = translate([vs('g', ['a'], [{ fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('a') }], { gateways: ['ingress', 'mesh'] })]);
  assert.is(mesh.rules.length, 1);
});

test('hosts: the most specific VirtualService owns a host, whatever the order; wildcards stay as written', () => {
  const wildcard = vs('all', ['*.example.com'], [{ fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('x.example.com') }]);
  const exact = vs('api', ['api.example.com'], [{ match: [{ uri: { prefix: '/v1' } }], route: to('api.example.com') }]);
  const out = translate([wildcard, exact]);
  assert.equal(out.rules, [
    // api.example.com belongs to its own VirtualService, which injects nothing: one fault-free rule.
    { hosts: ['api.example.com'], match: [] },
    { hosts: ['*.example.com'], match: [], abort: { httpStatus: 503, percentage: 100 } },
  ]);
  // A host named twice: the first VirtualService in the given order owns it.
  const first = vs('first', ['ratings'], [{ route: to('ratings') }]);
  const second = vs('second', ['ratings'], [{ fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('ratings') }]);
  assert.equal(translate([first, second]), { rules: [] });
  assert.is(translate([second, first]).rules.length, 1);
});

test('several hosts of one VirtualService share its rules; bare names only in the workload namespace', () => {
  const two = vs('two', ['ratings', 'details.prod.svc.cluster.local'], [
    { match: [{ method: { exact: 'POST' } }], fault: { delay: { fixedDelay: '2s', percentage: { value: 100 } } }, route: to('ratings') },
  ]);
  const out = translate([two], { namespace: 'default' });
  assert.equal(out.rules, [
    {
      hosts: [...RATINGS, 'details.prod.svc.cluster.local', 'details.prod.svc', 'details.prod'],
      match: [{ method: { exact: 'POST' } }],
      delay: { fixedDelayMs: 2000, percentage: 100 },
    },
  ]);
  const fromProd = translate([two], { namespace: 'prod' });
  assert.equal(fromProd.rules[0]!.hosts, ['ratings.default.svc.cluster.local', 'ratings.default.svc', 'ratings.default', 'details.prod.svc.cluster.local', 'details.prod.svc', 'details.prod', 'details']);
});

test('sourceLabels: matches for other workloads are dropped, and so is a route left without matches', () => {
  const doc = vs('ratings', ['ratings'], [
    { match: [{ sourceLabels: { app: 'reviews' } }], fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: to('ratings') },
    { match: [{ sourceLabels: { app: 'productpage' }, uri: { prefix: '/p' } }, { headers: { 'x-test': { exact: '1' } } }], fault: { delay: { fixedDelay: '1s', percentage: { value: 100 } } }, route: to('ratings') },
  ]);
  assert.equal(translate([doc], { labels: { app: 'productpage' } }).rules, [
    { hosts: RATINGS, match: [{ uri: { prefix: '/p' } }, { headers: { 'x-test': { exact: '1' } } }], delay: { fixedDelayMs: 1000, percentage: 100 } },
  ]);
  assert.equal(translate([doc], { labels: { app: 'reviews' } }).rules, [
    { hosts: RATINGS, match: [], abort: { httpStatus: 500, percentage: 100 } },
  ]);
});

test('the result is plain data: no sharing with the input, no sharing between rules', () => {
  const doc = vs('r', ['ratings', 'reviews'], [{ match: [{ headers: { a: { exact: '1' } } }], fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: to('r') }]);
  const out = faultFilterConfig([doc]);
  out.rules[0]!.match[0]!.headers!.a!.exact = 'changed';
  assert.is(doc.spec.http![0]!.match![0]!.headers!.a!.exact, '1');
  assert.equal(JSON.parse(JSON.stringify(out)), out);
});

test('the fault filter example: virtual-service.yaml translates to the first two rules of config.json', () => {
  const dir = new URL('../../filters/fault/example/', import.meta.url);
  const { documents, errors } = parseDocuments(readFileSync(new URL('virtual-service.yaml', dir), 'utf8'), 'virtual-service.yaml');
  assert.equal(errors, []);
  const example = JSON.parse(readFileSync(new URL('config.json', dir), 'utf8')) as FaultFilterConfig;
  assert.ok(validate(example), `schema: ${JSON.stringify(validate.errors)}`);
  assert.equal(translate(documents.map((d) => d.value as VirtualService)).rules, example.rules.slice(0, 2));
});

test.run();
