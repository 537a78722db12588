// Module metadata read from the bytes: the header (core module or component) and the producers
// section, on modules built by this repository's filter build (which writes the section) and on
// sections written by the test, well-formed and broken.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileModule } from '../src/module.ts';
import { ErrorCode, WasmeshWasmError } from '../src/errors.ts';
import { addProducers, customSections, encodeProducersSection, parseProducers, readModuleMetadata, readWasmHeader, type Producers } from '../src/producers.ts';
import { guestModule, wat2wasm } from './support/wat.ts';

const repo = new URL('../../', import.meta.url);
const BUILT = ['filters/examples/add-header/build/add-header.wasm', 'filters/policy/build/policy.wasm', 'filters/telemetry/build/telemetry.wasm', 'filters/fault/build/fault.wasm'];

const guest = (): Promise<Uint8Array> => wat2wasm(guestModule({ body: '' }));

/** A custom section holding `content` under `name`, framed by hand (to write broken ones). */
function rawCustom(name: string, content: number[]): Uint8Array {
  const nameBytes = [...new TextEncoder().encode(name)];
  const body = [nameBytes.length, ...nameBytes, ...content];
  if (body.length > 127) throw new Error('test sections stay under 128 bytes');
  return Uint8Array.from([0, body.length, ...body]);
}
const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => Uint8Array.from([...a, ...b]);
const str = (s: string): number[] => [s.length, ...new TextEncoder().encode(s)];

async function refusal(p: Promise<unknown>): Promise<WasmeshWasmError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, WasmeshWasmError);
    return err as WasmeshWasmError;
  }
  throw new Error('expected a refusal');
}

test('the filters this repository builds say AssemblyScript, asc and the proxy-wasm SDK', async () => {
  const sdkVersion = (JSON.parse(await readFile(new URL('node_modules/@solo-io/proxy-runtime/package.json', repo), 'utf8')) as { version: string }).version;
  const ascVersion = (JSON.parse(await readFile(new URL('node_modules/assemblyscript/package.json', repo), 'utf8')) as { version: string }).version;
  for (const file of BUILT) {
    const url = new URL(file, repo);
    assert.ok(existsSync(url), `${file} is built (npm test builds the filters first; or: node scripts/wasmesh.mjs filter build --all)`);
    const bytes = new Uint8Array(await readFile(url));
    const m = readModuleMetadata(bytes);
    assert.is(m.kind, 'core', file);
    assert.is(m.language, `AssemblyScript ${ascVersion}`, file);
    assert.is(m.processedBy, `asc ${ascVersion}`, file);
    assert.is(m.sdk, `@solo-io/proxy-runtime ${sdkVersion}`, file);
    assert.is(m.problems, undefined, file);
    // What a proxy loads carries the same metadata.
    const compiled = await compileModule(bytes, { name: file });
    assert.equal(compiled.metadata, m, file);
  }
});

test('a module without a producers section says nothing about its language', async () => {
  const m = readModuleMetadata(await guest());
  assert.equal(m, { kind: 'core', binaryVersion: 1 });
});

test('producers written and read back: every field, in order, several entries, UTF-8', async () => {
  const producers: Producers = {
    language: [{ name: 'Rust', version: '' }, { name: 'C11', version: '' }],
    'processed-by': [{ name: 'rustc', version: '1.79.0 (129f3b996 2024-06-10)' }, { name: 'wasm-opt', version: '116' }],
    sdk: [{ name: 'proxy-wasm-rust-sdk', version: '0.2.2' }],
    'x-vendor': [{ name: 'größe', version: 'ü' }],
  };
  const bytes = addProducers(await guest(), producers);
  const m = readModuleMetadata(bytes);
  assert.equal(m.producers, producers);
  assert.is(m.language, 'Rust, C11');
  assert.is(m.processedBy, 'rustc 1.79.0 (129f3b996 2024-06-10), wasm-opt 116');
  assert.is(m.sdk, 'proxy-wasm-rust-sdk 0.2.2');
  // Still the same module to the engine and the host.
  const compiled = await compileModule(bytes);
  assert.is(compiled.abiVersion, '0.2.1');
  assert.equal(compiled.metadata, m);
});

test('adding producers merges with a section already there and keeps one section', async () => {
  const first = addProducers(await guest(), { language: [{ name: 'C', version: '' }], 'processed-by': [{ name: 'clang', version: '18' }] });
  const second = addProducers(first, { 'processed-by': [{ name: 'clang', version: '99' }, { name: 'wasm-opt', version: '116' }], sdk: [{ name: 'wasi-sdk', version: '22' }] });
  assert.is(customSections(second).filter((s) => s.name === 'producers').length, 1);
  assert.equal(readModuleMetadata(second).producers, {
    language: [{ name: 'C', version: '' }],
    'processed-by': [{ name: 'clang', version: '18' }, { name: 'wasm-opt', version: '116' }],
    sdk: [{ name: 'wasi-sdk', version: '22' }],
  });
});

test('a malformed producers section is reported, naming the problem, and the module still loads', async () => {
  const base = await guest();
  const cases: Array<[number[], RegExp]> = [
    // one field, its name runs past the end
    [[1, 20, 0x6c], /field 0 name at byte 1: 20 bytes long but only 1 remain/],
    // one field "language" with two values, only one present
    [[1, ...str('language'), 2, ...str('AssemblyScript'), ...str('0.28')], /field "language" value 1 name length at byte \d+: truncated/],
    // the same field twice
    [[2, ...str('sdk'), 0, ...str('sdk'), 0], /field "sdk" appears twice/],
    // a name that is not UTF-8
    [[1, 2, 0xc3, 0x28, 0], /field 0 name at byte 1 is not valid UTF-8/],
    // bytes left over
    [[0, 7], /1 bytes after the last field/],
  ];
  for (const [content, expected] of cases) {
    const bytes = concat(base, rawCustom('producers', content));
    const m = readModuleMetadata(bytes);
    assert.is(m.producers, undefined);
    assert.is(m.problems?.length, 1, String(content));
    assert.match(m.problems![0], /^producers section at byte \d+ is malformed: /);
    assert.match(m.problems![0], expected);
    assert.equal((await compileModule(bytes)).metadata.problems, m.problems);
  }
  const twice = concat(concat(base, encodeProducersSection({ language: [{ name: 'A', version: '' }] })), encodeProducersSection({ language: [{ name: 'B', version: '' }] }));
  const m = readModuleMetadata(twice);
  assert.is(m.language, 'A');
  assert.equal(m.problems, ['2 producers sections (the tool conventions allow one); the first is shown']);
});

test('parseProducers reads exactly the tool conventions encoding', () => {
  const content = Uint8Array.from([1, ...str('language'), 1, ...str('JavaScript'), ...str('ES2024')]);
  assert.equal(parseProducers(content), { language: [{ name: 'JavaScript', version: 'ES2024' }] });
});

test('the header tells core modules from components, and names what it does not know', async () => {
  assert.equal(readWasmHeader(await guest()), { kind: 'core', version: 1, layer: 0 });
  // The smallest component: the header alone (component model binary version 0x0d, layer 1).
  const component = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
  assert.equal(readWasmHeader(component), { kind: 'component', version: 0x0d, layer: 1 });
  assert.equal(readModuleMetadata(concat(component, encodeProducersSection({ language: [{ name: 'JavaScript', version: '' }] }))), {
    kind: 'component', binaryVersion: 0x0d, producers: { language: [{ name: 'JavaScript', version: '' }] }, language: 'JavaScript',
  });
  const bad = (bytes: number[]): string => {
    try {
      readWasmHeader(Uint8Array.from(bytes));
    } catch (err) {
      assert.is((err as WasmeshWasmError).code, ErrorCode.NotWasm);
      return (err as Error).message;
    }
    throw new Error('expected an error');
  };
  assert.match(bad([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x02, 0x00]), /unknown WebAssembly layer 2/);
  assert.match(bad([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00]), /unsupported core module version 2/);
  assert.match(bad([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]), /does not start with \\0asm/);
  assert.match(bad([0x00, 0x61, 0x73]), /does not start with \\0asm/);
});

test('the proxy-wasm host refuses a component by name, before compiling it', async () => {
  const component = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
  const err = await refusal(compileModule(component, { name: 'c.wasm' }));
  assert.is(err.code, ErrorCode.Component);
  assert.match(err.message, /^c\.wasm: is a WebAssembly component \(component model\), not a core module/);
});

test('broken section framing is an error, not metadata', () => {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  assert.throws(() => readModuleMetadata(Uint8Array.from([...header, 0, 50, 1, 2])), /section 0 at byte 8 runs past the end/);
  assert.throws(() => readModuleMetadata(Uint8Array.from([...header, 0, 3, 9, 0x61, 0x62])), /its name runs past the section/);
});

test.run();
