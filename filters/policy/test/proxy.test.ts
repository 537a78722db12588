// The policy filter in a running proxy, on the inbound side in front of an app.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Proxy } from '../../../proxy-host/src/proxy.ts';
import { filterBinding, proxyConfig } from '../../../proxy-host/test/support/config.ts';
import { startProxy } from '../../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { policyWasm } from './support.ts';

let app: TestServer;
let proxy: Proxy;

const pluginConfig = {
  policies: [
    { name: 'deny-admin', namespace: 'default', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] },
    { name: 'allow-reads', namespace: 'default', action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET', 'HEAD'] } }], when: [{ key: 'source.ip', values: ['127.0.0.0/8', '::1'] }] }] },
  ],
  rateLimits: [{ name: 'per-user', descriptor: { header: 'x-user' }, maxTokens: 2, fillIntervalMs: 60000 }],
};

test.before(async () => {
  const { wasmPath } = await policyWasm();
  app = await startHttp1('app');
  proxy = await startProxy(
    proxyConfig({ inboundFilters: [filterBinding('policy', wasmPath, { rootId: 'policy', pluginConfig })] }),
    app.port,
  );
});

test.after(async () => {
  await proxy?.stop(100);
  await app?.close();
});

test('an allowed request reaches the app', async () => {
  const before = app.received.length;
  const r = await request(proxy.inboundPort, { path: '/productpage', headers: { host: 'productpage' } });
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body).url, '/productpage');
  assert.is(app.received.length, before + 1);
});

test('a denied request gets 403 "RBAC: access denied" and the app never sees it', async () => {
  const before = app.received.length;
  for (const path of ['/admin', '//admin/x']) {
    const r = await request(proxy.inboundPort, { path, headers: { host: 'productpage' } });
    assert.is(r.status, 403, path);
    assert.is(r.body, 'RBAC: access denied');
  }
  const post = await request(proxy.inboundPort, { method: 'POST', path: '/productpage', headers: { host: 'productpage' }, body: 'x' });
  assert.is(post.status, 403, 'no ALLOW policy matches a POST');
  assert.is(app.received.length, before);
});

test('the rate limit answers 429 in the proxy too, and the decisions show in the admin stats', async () => {
  const headers = { host: 'productpage', 'x-user': 'alice' };
  assert.is((await request(proxy.inboundPort, { headers })).status, 200);
  assert.is((await request(proxy.inboundPort, { headers })).status, 200);
  const over = await request(proxy.inboundPort, { headers });
  assert.is(over.status, 429);
  assert.is(over.headers['x-ratelimit-limit'], '2');
  assert.ok(Number(over.headers['retry-after']) > 0);
  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.match(stats.body, /policy_authz_decisions_total\{decision="deny",policy="default.deny-admin"\} 2/);
  assert.match(stats.body, /policy_ratelimit_total\{bucket="per-user",result="over"\} 1/);
});

test.run();
