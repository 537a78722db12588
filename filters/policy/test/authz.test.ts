// Authorization decisions of the policy filter, through the real wasm runtime (FilterHarness).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MTLS_PEER, allow, decide, deny, load, policyWasm, send, status } from './support.ts';

test.before(async () => {
  await policyWasm();
});

test('no policies: allowed, counted as allow/none', async () => {
  const h = await load({});
  const r = await send(h);
  assert.is(status(r), 200);
  assert.ok(r.request, 'the request went upstream');
  const m = h.metricsSnapshot().find((s) => s.name === 'policy_authz_decisions_total' && s.labels.decision === 'allow');
  assert.equal(m?.labels, { decision: 'allow', policy: 'none' });
  assert.is(m?.value, 1);
  await h.close();
});

test('ALLOW with no rules (spec: {}) denies everything; rules: [{}] allows everything', async () => {
  assert.is(await decide([allow()]), 403);
  assert.is(await decide([allow([{}])]), 200);
});

test('a denied request gets 403 "RBAC: access denied" with the matched policy in the details', async () => {
  const h = await load({ policies: [deny([{ to: [{ operation: { paths: ['/admin*'] } }] }], 'deny-admin')] });
  const r = await send(h, { path: '/admin/users' });
  assert.is(r.localResponse?.status, 403);
  assert.is(r.localResponse?.body, 'RBAC: access denied');
  assert.is(r.localResponse?.details, 'rbac_access_denied_matched_policy[default.deny-admin]');
  assert.is(r.request, undefined, 'nothing went upstream');
  assert.is(status(await send(h, { path: '/productpage' })), 200);
  const snap = h.metricsSnapshot().filter((s) => s.name === 'policy_authz_decisions_total');
  const value = (decision: string, policy: string) => snap.find((s) => s.labels.decision === decision && s.labels.policy === policy)?.value;
  assert.is(value('deny', 'default.deny-admin'), 1);
  assert.is(value('allow', 'none'), 1);
  await h.close();
});

test('ALLOW policies exist but none matches: denied with [none]', async () => {
  const h = await load({ policies: [allow([{ to: [{ operation: { methods: ['GET'] } }] }])] });
  const r = await send(h, { method: 'POST' });
  assert.is(r.localResponse?.details, 'rbac_access_denied_matched_policy[none]');
  assert.is(status(await send(h, { method: 'GET' })), 200);
  const snap = h.metricsSnapshot().filter((s) => s.name === 'policy_authz_decisions_total');
  assert.is(snap.find((s) => s.labels.decision === 'deny' && s.labels.policy === 'none')?.value, 1);
  assert.is(snap.find((s) => s.labels.decision === 'allow' && s.labels.policy === 'default.allow-it')?.value, 1);
  await h.close();
});

test('Istio order: DENY wins over a matching ALLOW; AUDIT only logs and counts', async () => {
  const everything = [{}];
  assert.is(await decide([allow(everything), deny(everything)]), 403);
  const h = await load({ policies: [{ name: 'watch', namespace: 'default', action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/productpage'] } }] }] }] });
  const r = await send(h);
  assert.is(status(r), 200, 'an AUDIT match alone does not deny');
  assert.ok(r.logs.some((l) => l.message.includes('AUDIT policy default.watch matched GET /productpage')), JSON.stringify(r.logs));
  const snap = h.metricsSnapshot().filter((s) => s.name === 'policy_authz_decisions_total');
  assert.is(snap.find((s) => s.labels.decision === 'audit')?.value, 1);
  await h.close();
  // AUDIT with ALLOW: ALLOW still decides.
  assert.is(await decide([{ name: 'a', action: 'AUDIT', rules: everything }, allow([{ to: [{ operation: { paths: ['/other'] } }] }])]), 403);
  // DENY without rules never matches.
  assert.is(await decide([deny()]), 200);
});

test('principals: from the peer certificate, written without spiffe://; wildcards; plaintext has none', async () => {
  const from = (source: object) => [allow([{ from: [{ source }] }])];
  assert.is(await decide(from({ principals: ['cluster.local/ns/default/sa/productpage'] })), 200);
  assert.is(await decide(from({ principals: ['cluster.local/ns/default/sa/reviews'] })), 403);
  assert.is(await decide(from({ principals: ['cluster.local/ns/default/*'] })), 200, 'prefix');
  assert.is(await decide(from({ principals: ['*/sa/productpage'] })), 200, 'suffix');
  assert.is(await decide(from({ principals: ['*'] })), 200, 'presence');
  const plaintext = { streamInfo: { sourceAddress: '10.1.2.3:5555', destinationAddress: '127.0.0.1:9080' } };
  assert.is(await decide(from({ principals: ['*'] }), plaintext), 403, 'no peer identity: presence fails');
  assert.is(await decide([deny([{ from: [{ source: { notPrincipals: ['*'] } }] }])], plaintext), 403, 'notPrincipals ["*"] denies plaintext');
  assert.is(await decide([deny([{ from: [{ source: { notPrincipals: ['*'] } }] }])]), 200, '... and lets mTLS through');
  assert.is(await decide(from({ notPrincipals: ['cluster.local/ns/default/sa/productpage'] })), 403);
});

test('namespaces come from /ns/<ns>/ of the principal', async () => {
  const from = (source: object) => [allow([{ from: [{ source }] }])];
  assert.is(await decide(from({ namespaces: ['default'] })), 200);
  assert.is(await decide(from({ namespaces: ['prod'] })), 403);
  assert.is(await decide(from({ notNamespaces: ['prod'] })), 200);
  assert.is(await decide(from({ notNamespaces: ['def*'] })), 403);
  const other = { streamInfo: { ...MTLS_PEER, peerPrincipal: 'spiffe://cluster.local/ns/prod/sa/x' } };
  assert.is(await decide(from({ namespaces: ['prod'] }), other), 200);
});

test('ipBlocks: IPv4 and IPv6 CIDRs and single addresses, not-forms', async () => {
  const from = (source: object) => [allow([{ from: [{ source }] }])];
  assert.is(await decide(from({ ipBlocks: ['10.0.0.0/8'] })), 200);
  assert.is(await decide(from({ ipBlocks: ['10.1.2.3'] })), 200);
  assert.is(await decide(from({ ipBlocks: ['10.1.2.4', '192.168.0.0/16'] })), 403);
  assert.is(await decide(from({ ipBlocks: ['10.1.2.0/31'] })), 403);
  assert.is(await decide(from({ ipBlocks: ['10.1.2.2/31'] })), 200);
  assert.is(await decide(from({ ipBlocks: ['0.0.0.0/0'] })), 200);
  assert.is(await decide(from({ notIpBlocks: ['10.0.0.0/8'] })), 403);
  assert.is(await decide(from({ ipBlocks: ['2001:db8::/32'] })), 403, 'an IPv4 peer is not in an IPv6 block');
  const v6 = (sourceAddress: string) => ({ streamInfo: { ...MTLS_PEER, sourceAddress } });
  assert.is(await decide(from({ ipBlocks: ['2001:db8::/32'] }), v6('[2001:db8:0:1::5]:5555')), 200);
  assert.is(await decide(from({ ipBlocks: ['2001:db8::/32'] }), v6('[2001:db9::5]:5555')), 403);
  assert.is(await decide(from({ ipBlocks: ['::1'] }), v6('::1:5555')), 200, 'unbracketed ip:port as Node reports it');
  assert.is(await decide(from({ ipBlocks: ['fe80::/10'] }), v6('[fe80::1%eth0]:5555')), 200, 'zone dropped');
  assert.is(await decide(from({ ipBlocks: ['127.0.0.0/8'] }), v6('::ffff:127.0.0.1:5555')), 200, 'IPv4-mapped is IPv4');
  assert.is(await decide(from({ ipBlocks: ['::ffff:10.0.0.0/104'] })), 200, 'a mapped block is an IPv4 block');
  assert.is(await decide(from({ ipBlocks: ['2001:db8:0:0:0:0:0:5/128'] }), v6('[2001:db8::5]:1')), 200, 'full form');
  assert.is(await decide(from({ remoteIpBlocks: ['10.0.0.0/8'] })), 200, 'remoteIpBlocks: the peer (no trusted XFF hops)');
  assert.is(await decide(from({ ipBlocks: ['10.0.0.0/8'] }), { streamInfo: { peerPrincipal: MTLS_PEER.peerPrincipal } }), 403, 'no source address');
});

test('operations: methods, paths, hosts, ports with exact/prefix/suffix/presence and not-forms', async () => {
  const to = (operation: object) => [allow([{ to: [{ operation }] }])];
  assert.is(await decide(to({ methods: ['GET', 'HEAD'] })), 200);
  assert.is(await decide(to({ methods: ['POST'] })), 403);
  assert.is(await decide(to({ notMethods: ['POST'] })), 200);
  assert.is(await decide(to({ paths: ['/productpage'] })), 200, 'exact');
  assert.is(await decide(to({ paths: ['/product'] })), 403);
  assert.is(await decide(to({ paths: ['/prod*'] })), 200, 'prefix');
  assert.is(await decide(to({ paths: ['*page'] })), 200, 'suffix');
  assert.is(await decide(to({ paths: ['*'] })), 200, 'presence');
  assert.is(await decide(to({ paths: ['/productpage'] }), { path: '/productpage?u=1' }), 200, 'query ignored');
  assert.is(await decide(to({ notPaths: ['/api/*'] }), { path: '/api/v1' }), 403);
  assert.is(await decide(to({ hosts: ['reviews.default.svc.cluster.local'] })), 200, 'host without the port');
  assert.is(await decide(to({ hosts: ['REVIEWS.default.svc.cluster.local:9080'] })), 200, 'case-insensitive, with port');
  assert.is(await decide(to({ hosts: ['*.svc.cluster.local'] })), 200);
  assert.is(await decide(to({ hosts: ['ratings*'] })), 403);
  assert.is(await decide(to({ notHosts: ['reviews*'] })), 403);
  assert.is(await decide(to({ ports: ['9080'] })), 200, 'destination.port');
  assert.is(await decide(to({ ports: ['8080'] })), 403);
  assert.is(await decide(to({ notPorts: ['9080'] })), 403);
  // Fields of one operation are ANDed; operations (and sources) are ORed.
  assert.is(await decide(to({ methods: ['GET'], paths: ['/other'] })), 403);
  assert.is(await decide([allow([{ to: [{ operation: { paths: ['/other'] } }, { operation: { methods: ['GET'] } }] }])]), 200);
  // from, to and when of one rule are ANDed; rules are ORed.
  assert.is(await decide([allow([{ from: [{ source: { namespaces: ['prod'] } }], to: [{ operation: { methods: ['GET'] } }] }])]), 403);
  assert.is(await decide([allow([{ from: [{ source: { namespaces: ['prod'] } }] }, { to: [{ operation: { methods: ['GET'] } }] }])]), 200);
});

test('paths are matched normalized: //, /./, /../ and %-escaped unreserved characters cannot dodge a DENY', async () => {
  const denyAdmin = [deny([{ to: [{ operation: { paths: ['/admin*'] } }] }])];
  for (const path of ['/admin', '//admin', '/./admin', '/public/../admin', '/%61dmin', '/admin?x=1', '/a/b/../../admin/x']) {
    assert.is(await decide(denyAdmin, { path }), 403, path);
  }
  assert.is(await decide(denyAdmin, { path: '/public/admin' }), 200);
  assert.is(await decide(denyAdmin, { path: '/%2Fadmin' }), 200, 'reserved escapes are not decoded');
});

test('when: request.headers, source.*, destination.port, values and notValues', async () => {
  const when = (...w: object[]) => [allow([{ when: w }])];
  const headers = { 'x-user': 'alice', 'x-env': 'staging' };
  assert.is(await decide(when({ key: 'request.headers[x-user]', values: ['alice', 'bob'] }), { headers }), 200);
  assert.is(await decide(when({ key: 'request.headers[X-User]', values: ['al*'] }), { headers }), 200, 'header name case-insensitive');
  assert.is(await decide(when({ key: 'request.headers[x-user]', values: ['bob'] }), { headers }), 403);
  assert.is(await decide(when({ key: 'request.headers[x-user]', values: ['*'] })), 403, 'absent header: presence fails');
  assert.is(await decide(when({ key: 'request.headers[x-user]', notValues: ['*'] })), 200, 'absent header: notValues holds');
  assert.is(await decide(when({ key: 'request.headers[x-env]', values: ['*'], notValues: ['prod*'] }), { headers }), 200);
  assert.is(await decide(when({ key: 'request.headers[x-env]', notValues: ['*ing'] }), { headers }), 403);
  assert.is(await decide(when({ key: 'request.headers[x-user]', values: ['alice'] }, { key: 'request.headers[x-env]', values: ['prod'] }), { headers }), 403, 'conditions ANDed');
  assert.is(await decide(when({ key: 'source.ip', values: ['10.1.0.0/16'] })), 200);
  assert.is(await decide(when({ key: 'source.ip', notValues: ['10.1.0.0/16'] })), 403);
  assert.is(await decide(when({ key: 'source.namespace', values: ['default'] })), 200);
  assert.is(await decide(when({ key: 'source.principal', values: ['cluster.local/ns/default/sa/productpage'] })), 200);
  assert.is(await decide(when({ key: 'source.principal', values: ['spiffe://cluster.local/ns/default/sa/productpage'] })), 403, 'principals have no spiffe://');
  assert.is(await decide(when({ key: 'destination.port', values: ['9080'] })), 200);
  assert.is(await decide(when({ key: 'destination.port', values: ['80'] })), 403);
  assert.is(await decide(when({ key: 'destination.ip', values: ['127.0.0.1'] })), 200);
});

test('request.auth.claims never match without a verified JWT payload, and match when the authn filter left one', async () => {
  const policies = [allow([{ when: [{ key: 'request.auth.claims[iss]', values: ['https://issuer.example'] }] }])];
  assert.is(await decide(policies), 403);
  assert.is(await decide(policies, {}, { properties: { 'wasmesh.jwt_payload': '{"iss":"https://issuer.example"}' } }), 200);
  assert.is(await decide([allow([{ when: [{ key: 'request.auth.claims[iss]', notValues: ['*'] }] }])]), 200, 'no claim: notValues holds');
  assert.is(await decide([allow([{ from: [{ source: { requestPrincipals: ['*'] } }] }])]), 403, 'no request principal without JWT');
  assert.is(await decide([deny([{ from: [{ source: { notRequestPrincipals: ['*'] } }] }])]), 403, 'so notRequestPrincipals ["*"] denies');
});

test('the Bookinfo examples: deny ratings to one principal, allow GET from the namespace', async () => {
  const policies = [
    { name: 'deny-ratings', namespace: 'default', action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'] } }], to: [{ operation: { paths: ['/ratings*'] } }] }] },
    { name: 'allow-get', namespace: 'default', rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'] } }] }] },
  ];
  const h = await load({ policies });
  const denied = await send(h, { path: '/ratings/1' });
  assert.is(denied.localResponse?.details, 'rbac_access_denied_matched_policy[default.deny-ratings]');
  assert.is(status(await send(h, { path: '/reviews/1' })), 200);
  assert.is(status(await send(h, { method: 'DELETE', path: '/reviews/1' })), 403);
  const reviews = { ...MTLS_PEER, peerPrincipal: 'spiffe://cluster.local/ns/default/sa/reviews' };
  assert.is(status(await send(h, { path: '/ratings/1', streamInfo: reviews })), 200);
  await h.close();
});

test('a gRPC request is denied with grpc-status PERMISSION_DENIED', async () => {
  const h = await load({ policies: [allow()] });
  const r = await send(h, { method: 'POST', path: '/pkg.Svc/Get', headers: { 'content-type': 'application/grpc' } });
  assert.is(r.localResponse?.status, 403);
  assert.is(r.localResponse?.grpcStatus, 7);
  await h.close();
});

test('odd request input never traps the VM', async () => {
  const h = await load({
    policies: [
      deny([{ to: [{ operation: { paths: ['/x*'], hosts: ['*.evil'] } }], when: [{ key: 'request.headers[x-a]', values: ['*'] }] }]),
      allow([{ from: [{ source: { ipBlocks: ['::/0', '0.0.0.0/0'], principals: ['*'] } }], to: [{ operation: { ports: ['9080'] } }] }]),
    ],
  });
  const weird = [
    { path: '', host: '' },
    { path: '%', host: ':' },
    { path: '/%zz/%', host: '[::1' },
    { path: '/' + '../'.repeat(200), host: 'a'.repeat(10000) },
    { path: '/\u00e9\u{1F600}', headers: { 'x-a': '\u00ff\u00fe' } },
  ];
  const infos = [
    { sourceAddress: '', destinationAddress: '', peerPrincipal: '' },
    { sourceAddress: 'garbage', destinationAddress: 'x:y', peerPrincipal: 'spiffe://' },
    { sourceAddress: '[::1', destinationAddress: '1.2.3.4:99999999999', peerPrincipal: '/ns/' },
    { sourceAddress: '1.2.3.4.5:1', peerPrincipal: 'spiffe://td/ns/' },
    { sourceAddress: '::::::1:1' },
    {},
  ];
  for (const req of weird) {
    for (const streamInfo of infos) {
      const r = await send(h, { ...req, streamInfo });
      assert.ok([200, 403].includes(status(r)), `${JSON.stringify(req)} ${JSON.stringify(streamInfo)}: ${status(r)}`);
    }
  }
  assert.is(h.plugin.state, 'running');
  await h.close();
});

test.run();
