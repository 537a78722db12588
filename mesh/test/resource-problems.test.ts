// Resources that pass their schemas but that the filters cannot evaluate: what validation reports,
// and how the snapshot builder takes them apart failing safe (for resources stored before).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../src/documents.ts';
import { failSafeDocuments, translationProblems } from '../src/translate/resource-problems.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';

const policy = (action: 'ALLOW' | 'DENY' | 'AUDIT', rules: unknown[]) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: `p-${action.toLowerCase()}`, namespace: 'default' },
  spec: { action, rules },
});
const good = { to: [{ operation: { methods: ['GET'] } }] };
const bad = { when: [{ key: 'request.body', values: ['x'] }] };

test('translationProblems names each field the filters cannot evaluate; other kinds and good documents have none', () => {
  assert.equal(translationProblems(policy('ALLOW', [good, bad])), [{ path: '/spec/rules/1/when/0/key', message: 'unsupported key "request.body"' }]);
  assert.equal(translationProblems(policy('ALLOW', [good])), []);
  assert.equal(translationProblems({ kind: 'ServiceEntry', spec: { hosts: ['x'] } }), []);
  assert.equal(translationProblems(null), []);
});

test('failSafeDocuments fails closed: an ALLOW rule that cannot be evaluated is left out, a DENY rule denies everything', () => {
  const docs = fromObjects([policy('ALLOW', [good, bad]), policy('DENY', [bad]), policy('AUDIT', [bad, good])]);
  const { documents, leftOut } = failSafeDocuments(docs);
  const rules = documents.map((d) => (d.value as { spec: { rules: unknown[] } }).spec.rules);
  assert.equal(rules, [[good], [{}], [good]]);
  assert.equal(leftOut.map((l) => [l.resource, l.path]), [
    ['AuthorizationPolicy default/p-allow', '/spec/rules/1/when/0/key'],
    ['AuthorizationPolicy default/p-deny', '/spec/rules/0/when/0/key'],
    ['AuthorizationPolicy default/p-audit', '/spec/rules/0/when/0/key'],
  ]);
  assert.match(leftOut[0]!.message, 'unsupported key "request.body": the rule is left out (a rule that cannot be evaluated allows nothing)');
  assert.match(leftOut[1]!.message, 'the rule matches every request instead (a DENY rule that cannot be evaluated denies all)');
  // The documents given are not modified; good ones are passed on as they are.
  assert.equal((docs[0]!.value as { spec: { rules: unknown[] } }).spec.rules, [good, bad]);
  const untouched = fromObjects([policy('ALLOW', [good])]);
  assert.is(failSafeDocuments(untouched).documents[0], untouched[0]);
});

test('failSafeDocuments keeps a VirtualService routing and drops its faults when the fault filter cannot carry them', () => {
  const vs = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'ratings', namespace: 'default' },
    spec: {
      hosts: ['ratings.default.svc.cluster.local'],
      http: [
        { match: [{ uri: { regex: '/v[0-9]' } }], route: [{ destination: { host: 'ratings.default.svc.cluster.local' } }] },
        { fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: [{ destination: { host: 'ratings.default.svc.cluster.local' } }] },
      ],
    },
  };
  const se = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'ratings', namespace: 'default' },
    spec: { hosts: ['ratings.default.svc.cluster.local'], ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1' }] },
  };
  const workload = { name: 'productpage', namespace: 'default', labels: {}, serviceAccount: 'productpage' };
  assert.throws(() => translateProxyConfig(fromObjects([se, vs]), workload), /regex matches are not supported/);
  const { documents, leftOut } = failSafeDocuments(fromObjects([se, vs]));
  assert.equal(leftOut.map((l) => l.path), ['/spec/http/0/match/0/uri/regex']);
  assert.match(leftOut[0]!.message, "the VirtualService's faults are left out (its routes still apply)");
  const config = translateProxyConfig(documents, workload, { telemetry: false });
  assert.is(config.virtualHosts.find((v) => v.domains.includes('ratings.default.svc.cluster.local'))!.routes.length, 2, 'both routes kept');
  assert.equal(config.outboundFilters, [], 'no fault filter');
});

test.run();
