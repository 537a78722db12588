// TLSSecret through the REST API: only an admin token writes one; every read (get, list, watch, the
// answers of writes, the console's YAML) shows fingerprints and the certificate's public facts,
// never the PEM, whoever asks; validation names the field (a key that does not match, an unknown
// credential in a Gateway, a secret still named by a Gateway); the SQLite file is 0600.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';

function selfSigned(dir: string, cn: string): { cert: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${cn}.key`), '-out', join(dir, `${cn}.pem`), '-days', '2', '-subj', `/CN=${cn}`], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${cn}.pem`), 'utf8'), key: readFileSync(join(dir, `${cn}.key`), 'utf8') };
}

const dir = mkdtempSync(join(tmpdir(), 'wasmesh-tls-secrets-'));
const a = selfSigned(dir, 'a.example.com');
const b = selfSigned(dir, 'b.example.com');
const store = new SqliteStore({ dataDir: join(dir, 'data') });
const tokens = TokenStore.inMemory();
const admin = tokens.create('admin');
const viewer = tokens.create('viewer');
const editor = tokens.create('editor', { namespace: 'edge' });
const app = buildApp({ store, tokens, rolloutLog: () => {} });
const auth = (token: string) => ({ authorization: `Bearer ${token}` });

const secret = (spec: object, name = 'shop-cert') => ({ apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name, namespace: 'edge' }, spec });
const gateway = (credentialName: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Gateway',
  metadata: { name: 'shop', namespace: 'edge' },
  spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 8443, name: 'https', protocol: 'HTTPS' }, hosts: ['shop.example.com'], tls: { mode: 'SIMPLE', credentialName } }] },
});

test.after(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('an editor (even of the namespace) and a viewer cannot write a TLSSecret; nothing is written', async () => {
  for (const token of [editor, viewer]) {
    const post = await app.inject({ method: 'POST', url: '/apis/tlssecrets', headers: auth(token), payload: secret(a) });
    assert.is(post.statusCode, 403, post.body);
    const put = await app.inject({ method: 'PUT', url: '/apis/tlssecrets/edge/shop-cert', headers: auth(token), payload: secret(a) });
    assert.is(put.statusCode, 403, put.body);
    const apply = await app.inject({ method: 'POST', url: '/apply', headers: auth(token), payload: [secret(a)] });
    assert.is(apply.statusCode, 403, apply.body);
  }
  const editorApply = await app.inject({ method: 'POST', url: '/apply', headers: auth(editor), payload: [secret(a)] });
  assert.match(editorApply.body, /cannot write a TLSSecret: secrets are written with an admin token only/);
  assert.equal(await store.list('TLSSecret'), []);
});

test('an admin writes one; the answer is redacted (fingerprints, certificate facts)', async () => {
  const res = await app.inject({ method: 'POST', url: '/apis/tlssecrets', headers: auth(admin), payload: secret(a) });
  assert.is(res.statusCode, 201, res.body);
  assert.not.match(res.body, /BEGIN/);
  const body = res.json<{ spec: object; status: { fingerprints: Record<string, string>; certificate: { subject: string } } }>();
  assert.equal(body.spec, {});
  assert.match(body.status.fingerprints.key!, /^sha256:[0-9a-f]{64}$/);
  assert.match(body.status.certificate.subject, /a\.example\.com/);
  // The store keeps the PEM (translation needs it).
  assert.is((await store.get('TLSSecret', 'edge', 'shop-cert'))!.spec.key, a.key);
});

test('no read shows the key or certificate PEM: get, list, the console YAML, to admin, viewer and editor', async () => {
  for (const token of [admin, viewer, editor]) {
    for (const url of ['/apis/tlssecrets/edge/shop-cert', '/apis/tlssecrets?namespace=edge', '/apis/TLSSecret?namespace=edge', '/console/api/yaml/tlssecrets?namespace=edge']) {
      const res = await app.inject({ method: 'GET', url, headers: auth(token) });
      assert.is(res.statusCode, 200, `${url}: ${res.body}`);
      assert.not.match(res.body, /BEGIN|PRIVATE KEY/, url);
      assert.match(res.body, /sha256:[0-9a-f]{64}/, url);
    }
  }
});

test('the watch stream is redacted too', async () => {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const text = await new Promise<string>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/apis/tlssecrets?watch=true', headers: auth(viewer) }, (res) => {
      let data = '';
      res.on('data', (c: Buffer) => {
        data += c.toString();
        if (data.includes(': synced')) {
          req.destroy();
          resolve(data);
        }
      });
    });
    req.on('error', (err) => (err.message.includes('aborted') ? undefined : reject(err)));
    setTimeout(() => reject(new Error('no synced marker')), 5000).unref();
  });
  assert.match(text, /event: ADDED/);
  assert.not.match(text, /BEGIN/);
});

test('validation names the field: a key of another certificate, a missing key; nothing changes', async () => {
  const mismatch = await app.inject({ method: 'PUT', url: '/apis/tlssecrets/edge/shop-cert', headers: auth(admin), payload: secret({ cert: a.cert, key: b.key }) });
  assert.is(mismatch.statusCode, 400);
  assert.match(mismatch.body, /"path":"\/spec\/key".*does not match the certificate/);
  assert.not.match(mismatch.body, /PRIVATE KEY/);
  const half = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: [secret({ cert: a.cert }, 'half')] });
  assert.is(half.statusCode, 400);
  assert.match(half.body, /"path":"\/spec\/key"/);
  assert.is((await store.get('TLSSecret', 'edge', 'shop-cert'))!.spec.key, a.key);
});

test('a Gateway naming an unknown credential is refused at its path; a secret a Gateway names cannot be deleted', async () => {
  const unknown = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: [gateway('nope')] });
  assert.is(unknown.statusCode, 400);
  assert.match(unknown.body, /"path":"\/spec\/servers\/0\/tls\/credentialName".*unknown credential \\"nope\\"/);
  const ok = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: [gateway('shop-cert')] });
  assert.is(ok.statusCode, 200, ok.body);
  const del = await app.inject({ method: 'DELETE', url: '/apis/tlssecrets/edge/shop-cert', headers: auth(admin) });
  assert.is(del.statusCode, 400, del.body);
  assert.match(del.body, /unknown credential/);
  const byEditor = await app.inject({ method: 'DELETE', url: '/apis/tlssecrets/edge/shop-cert', headers: auth(editor) });
  assert.is(byEditor.statusCode, 403);
});

test('the SQLite store file is readable by its owner only', () => {
  assert.is(statSync(store.path).mode & 0o777, 0o600);
});

test.run();
