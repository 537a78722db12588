// Components uploaded to the orchestrator: real JavaScript components built in the test by
// componentize-js (cached under the OS temp dir: the first run takes about half a minute), one
// implementing the filter world of schemas/wit/filter.wit (add-header in JavaScript) and one
// exporting something else.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { ModuleRecord } from '../src/store/types.ts';
import { buildComponent, jsAddHeaderComponent } from '../../wasm/test/support/component.ts';

const GREETER = {
  source: 'export function greet(name) { return "hello " + name; }\n',
  wit: 'package test:greeter@1.0.0;\n\nworld greeter {\n  export greet: func(name: string) -> string;\n}\n',
  world: 'greeter',
};

const built = {} as { filter: { bytes: Uint8Array }; greeter: { bytes: Uint8Array } };

interface Ctx {
  app: FastifyInstance;
  store: MemoryStore;
  admin: string;
}
interface Errors {
  errors: { document: string; path: string; message: string }[];
}

const components = suite<Ctx>('components', {} as Ctx);
// Built once for the file (10-17 s each the first time, then from the cache).
components.before(async () => {
  built.filter = await jsAddHeaderComponent();
  built.greeter = await buildComponent(GREETER);
});
components.before.each(async (ctx) => {
  ctx.store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  ctx.admin = tokens.create('admin');
  ctx.app = buildApp({ store: ctx.store, tokens });
  await ctx.app.ready();
});
components.after.each(async (ctx) => {
  await ctx.app.close();
  await ctx.store.close();
});

const upload = (ctx: Ctx, bytes: Uint8Array, name: string, version = '1.0.0') =>
  ctx.app.inject({
    method: 'POST',
    url: `/modules?name=${name}&version=${version}`,
    headers: { authorization: `Bearer ${ctx.admin}`, 'content-type': 'application/wasm' },
    payload: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  });

components('a component that does not implement the filter world is refused, the missing export named', async (ctx) => {
  const res = await upload(ctx, built.greeter.bytes, 'greeter');
  assert.is(res.statusCode, 400, res.body);
  const [e] = res.json<Errors>().errors;
  assert.is(e.document, 'module greeter@1.0.0');
  assert.match(e.message, /^rejected \(WASMESH_ORCH_COMPONENT_NOT_A_FILTER\): greeter@1\.0\.0: the component does not implement wasmesh:filter\/http-filter@0\.1\.0/);
  assert.match(e.message, /missing export wasmesh:filter\/handler@0\.1\.0 \(the component exports greet\)/);
  assert.equal(await ctx.store.listModules(), [], 'nothing stored');
});

components('a JavaScript filter component is accepted; what made it and its world are stored', async (ctx) => {
  const res = await upload(ctx, built.filter.bytes, 'js-filter');
  assert.is(res.statusCode, 201, res.body);
  const rec = res.json<ModuleRecord>();
  const m = rec.metadata!;
  assert.is(m.kind, 'component');
  assert.is(m.binaryVersion, 0x0d);
  const componentizeJs = (JSON.parse(await readFile(new URL('../../node_modules/@bytecodealliance/componentize-js/package.json', import.meta.url), 'utf8')) as { version: string }).version;
  assert.is(m.language, 'JavaScript');
  assert.match(m.processedBy ?? '', new RegExp(`(^|, )ComponentizeJS ${componentizeJs.replace(/\./g, '\\.')}(,|$)`));
  // The engine inside (StarlingMonkey) is C++ and Rust, kept apart from what the filter is written in.
  assert.ok(m.innerProducers?.language?.some((l) => l.name === 'Rust'), JSON.stringify(m.innerProducers));
  assert.equal(m.world, { imports: ['wasmesh:filter/types@0.1.0'], exports: ['wasmesh:filter/handler@0.1.0'] });
  const listed = await ctx.app.inject({ method: 'GET', url: '/modules?name=js-filter', headers: { authorization: `Bearer ${ctx.admin}` } });
  assert.equal(listed.json<{ items: ModuleRecord[] }>().items[0].metadata, m);
});

components('a damaged component is refused with the reason jco gives', async (ctx) => {
  const cut = built.filter.bytes.slice(0, 4096);
  const res = await upload(ctx, cut, 'cut');
  assert.is(res.statusCode, 400, res.body);
  assert.match(res.json<Errors>().errors[0].message, /^rejected \(WASMESH_ORCH_BAD_COMPONENT\): cut@1\.0\.0: not a valid WebAssembly component: \S/);
});

components.run();
