// A WasmPlugin names an uploaded module by digest or by name and version (module://<name>@<version>):
// the API refuses a reference to a module that was not uploaded, and snapshots resolve it to the digest.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { fromObjects } from '../../mesh/src/documents.ts';
import { validateDocuments } from '../../mesh/src/validate.ts';
import { managedDocuments } from '../src/snapshot/snapshot.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { goodModule } from './support/wasm.ts';

const plugin = (url: string) => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name: 'authz', namespace: 'default' },
  spec: { url, pluginName: 'authz' },
});

test('module:// urls validate in managed mode only, and must be well formed', () => {
  assert.ok(validateDocuments(fromObjects([plugin('module://authz@1.2.0')]), { mode: 'managed' }).ok);
  const standalone = validateDocuments(fromObjects([plugin('module://authz@1.2.0')]), { mode: 'standalone' });
  assert.not.ok(standalone.ok);
  assert.match(standalone.errors[0]!.message, 'need managed mode');
  const bad = validateDocuments(fromObjects([plugin('module://authz')]), { mode: 'managed' });
  assert.match(bad.errors[0]!.message, 'module://<name>@<version>');
});

test('the API accepts a WasmPlugin naming an uploaded name@version and refuses one that was not uploaded', async () => {
  const store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  const app = buildApp({ store, tokens });
  try {
    const headers = { authorization: `Bearer ${admin}` };
    const missing = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers, payload: plugin('module://authz@1.2.0') });
    assert.is(missing.statusCode, 400);
    assert.match(missing.body, 'module authz@1.2.0 has not been uploaded');
    const bytes = await goodModule();
    const upload = await app.inject({ method: 'POST', url: '/modules?name=authz&version=1.2.0', headers: { ...headers, 'content-type': 'application/wasm' }, payload: Buffer.from(bytes) });
    assert.is(upload.statusCode, 201, upload.body);
    const ok = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers, payload: plugin('module://authz@1.2.0') });
    assert.is(ok.statusCode, 201, ok.body);
    const [record] = await store.listModules('authz');
    const docs = managedDocuments(await store.list(), await store.listModules());
    const spec = (docs[0]!.value as { spec: { url: string; sha256: string } }).spec;
    assert.is(spec.url, `digest:sha256:${record!.sha256}`);
    assert.is(spec.sha256, record!.sha256);
  } finally {
    await app.close();
    await store.close();
  }
});

test.run();
