// Standalone config loading: a folder of documents given by a relative path, with a WasmPlugin whose
// file:// url is relative to its own file, resolves to the module beside the checkout's filters/.
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfigFile } from '../src/config/file-source.ts';

const productpage = { name: 'productpage', namespace: 'bookinfo', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'bookinfo-productpage' };

test('a relative folder path: relative module urls resolve against each document file', async () => {
  const loaded = await loadConfigFile('schemas/examples', productpage);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.error);
  if (!loaded.ok) return;
  const plugin = loaded.config.inboundFilters.find((b) => b.name === 'add-header');
  assert.ok(plugin, 'the example WasmPlugin selects productpage');
  assert.ok(plugin!.path!.endsWith('/filters/examples/add-header/build/add-header.wasm'), plugin!.path);
  assert.ok(existsSync(plugin!.path!) || !existsSync('filters/examples/add-header/build'), 'the path points at the built example');
});

test('bad input is an error naming the file, never a throw', async () => {
  const missing = await loadConfigFile('no/such/mesh.yaml', productpage);
  assert.not.ok(missing.ok);
  if (!missing.ok) assert.match(missing.error, 'no/such/mesh.yaml');
});

test.run();
