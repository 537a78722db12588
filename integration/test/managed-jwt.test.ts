// End-user authentication in managed mode, end to end: a real orchestrator (REST + gRPC on free
// loopback ports), a managed sidecar (Proxy + XdsClient, as `wasmesh proxy --orchestrator` wires
// them) in front of an app, a JWKS endpoint on loopback, and tokens minted in the test with `jose`.
// RequestAuthentication and AuthorizationPolicy go in through the REST API; the sidecar gets the
// authn and policy filters (served by digest by the orchestrator) and enforces them; a policy changed
// through the API takes effect on the running sidecar, without a restart.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { ISSUER, JwksServer, authnWasm, jwks, mint, signingKey, waitFor, type SigningKey } from '../../filters/authn/test/support.ts';
import { policyWasm } from '../../filters/policy/test/support.ts';

const quiet = { write: () => true };
const workload: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };

const s = {} as {
  root: string;
  orch: RunningOrchestrator;
  admin: string;
  app: TestServer;
  keys: JwksServer;
  key: SigningKey;
  client: XdsClient;
  proxy: Proxy | undefined;
  starts: number;
  logs: string[];
};
let setupError: unknown;

async function apiToken(dataDir: string, args: string[]): Promise<string> {
  const out: string[] = [];
  const code = await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet);
  if (code !== 0) throw new Error(`token create ${args.join(' ')} failed`);
  return out.join('').trim();
}

async function api(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${s.orch.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${s.admin}`, ...(body !== undefined ? { 'content-type': 'application/yaml' } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
  return { status: res.status, text: await res.text() };
}

const requestAuthentication = (jwksUri: string) => `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: default }
spec:
  selector: { matchLabels: { app: productpage } }
  jwtRules: [{ issuer: "${ISSUER}", jwksUri: "${jwksUri}" }]
`;

const requirePrincipals = (principals: string[]) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-jwt, namespace: default }
spec:
  selector: { matchLabels: { app: productpage } }
  action: ALLOW
  rules: [{ from: [{ source: { requestPrincipals: ${JSON.stringify(principals)} } }] }]
`;

const get = (token?: string) =>
  request(s.proxy!.inboundPort, { path: '/api/v1/products', headers: { host: 'productpage', ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) } });

test.before(async () => {
  try {
    await Promise.all([authnWasm(), policyWasm()]);
    s.root = await mkdtemp(join(tmpdir(), 'wasmesh-managed-jwt-'));
    const dataDir = join(s.root, 'orchestrator');
    s.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
    s.admin = await apiToken(dataDir, ['--role', 'admin']);
    s.app = await startHttp1('productpage-app');
    s.key = await signingKey('RS256', 'rsa-1');
    s.keys = await new JwksServer().start();
    s.keys.body = jwks(s.key);
    s.logs = [];
    s.starts = 0;
    const proxyToken = await apiToken(dataDir, ['--role', 'proxy', '--namespace', 'default', '--service-account', 'productpage']);
    s.client = new XdsClient({
      address: `127.0.0.1:${s.orch.grpcPort!}`,
      token: proxyToken,
      workload,
      dataDir: join(s.root, 'proxy'),
      backoff: { initialMs: 50, maxMs: 300 },
      apply: async (config: ProxyConfig) => {
        if (s.proxy) return s.proxy.applyConfig(config);
        s.starts++;
        s.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: s.app.port, accessLog: 'off' }, config);
      },
      log: (level, message) => void s.logs.push(`${level} ${message}`),
    });
    s.client.start();
    await waitFor('the first config', () => s.proxy !== undefined, 10_000);
  } catch (err) {
    setupError = err;
  }
});

test.before.each(() => {
  if (setupError) throw new Error(`setup failed: ${setupError instanceof Error ? (setupError.stack ?? setupError.message) : String(setupError)}`);
});

test.after(async () => {
  await s.client?.stop();
  await s.proxy?.stop(0);
  await s.orch?.close();
  await s.app?.close();
  await s.keys?.stop().catch(() => {});
  if (s.root) await rm(s.root, { recursive: true, force: true });
});

test('RequestAuthentication and AuthorizationPolicy applied through REST: no token 403, a forged token 401, a valid token 200', async () => {
  assert.is((await get()).status, 200, 'before any policy, requests pass');
  const applied = await api('POST', '/apply', `${requestAuthentication(`http://127.0.0.1:${s.keys.port}/jwks.json`)}---\n${requirePrincipals([`${ISSUER}/*`])}`);
  assert.is(applied.status, 200, applied.text);
  await waitFor('the sidecar to get the authn and policy filters', () => (s.proxy?.config.inboundFilters ?? []).some((b) => b.name === 'wasmesh-authn'), 5000);

  const none = await get();
  assert.is(none.status, 403, 'no token: authentication passes, the policy wants a principal');
  assert.is(none.body, 'RBAC: access denied');

  const forged = await get(await mint(await signingKey('RS256', 'rsa-1')));
  assert.is(forged.status, 401);
  assert.is(forged.body, 'Jwt verification fails');
  assert.match(String(forged.headers['www-authenticate']), /^Bearer realm="http:\/\/productpage\/api\/v1\/products", error="invalid_token"$/);

  const expired = await get(await mint(s.key, { expIn: -3600 }));
  assert.is(expired.status, 401);
  assert.is(expired.body, 'Jwt is expired');

  const ok = await get(await mint(s.key, { sub: 'alice' }));
  assert.is(ok.status, 200, ok.body);
  assert.is(JSON.parse(ok.body).upstream, 'productpage-app');
  assert.ok(s.keys.fetches >= 1, 'the managed sidecar fetched the key set');
});

test('a policy changed through REST applies to the running sidecar, without a restart', async () => {
  const alice = await mint(s.key, { sub: 'alice' });
  const bob = await mint(s.key, { sub: 'bob' });
  assert.is((await get(alice)).status, 200);
  const changed = await api('POST', '/apply', requirePrincipals([`${ISSUER}/bob`]));
  assert.is(changed.status, 200, changed.text);
  await waitFor('alice to be refused', async () => (await get(alice)).status === 403, 5000);
  assert.is((await get(bob)).status, 200);

  // Deleting both lifts them: no token passes again, and a forged token is no longer looked at.
  assert.is((await api('DELETE', '/apis/authorizationpolicies/default/require-jwt')).status, 200);
  assert.is((await api('DELETE', '/apis/requestauthentications/default/jwt')).status, 200);
  await waitFor('no token to pass', async () => (await get()).status === 200, 5000);
  assert.is((await get('not-a-token')).status, 200, 'no RequestAuthentication: the header is not read');
  assert.is(s.starts, 1, 'one proxy throughout: every change was applied to the running one');
});

test.run();
