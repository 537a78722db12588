// The filter world (schemas/wit/filter.wit) through jco's WIT tooling: it parses, a component made
// for it (jco's dummy implementation) prints back a world that passes the orchestrator's check, and
// the check names the export a component lacks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import { checkFilterWorld, loadFilterWorld, parseWit } from '../src/modules/wit.ts';

let WIT = '';

interface JcoWit {
  componentEmbed(opts: { witSource: string; world?: string; dummy?: boolean }): Promise<Uint8Array>;
  componentNew(binary: Uint8Array, adapters?: unknown[]): Promise<Uint8Array>;
  componentWit(binary: Uint8Array): Promise<string>;
}
let jco: JcoWit;

/** The world as jco prints it from a component built for it (a dummy core module, then componentNew). */
async function printedWorld(wit: string, world = 'http-filter'): Promise<string> {
  const core = await jco.componentEmbed({ witSource: wit, world, dummy: true });
  return jco.componentWit(await jco.componentNew(core, []));
}

let printed = '';

test.before(async () => {
  WIT = await readFile(new URL('../../schemas/wit/filter.wit', import.meta.url), 'utf8');
  jco = (await import('@bytecodealliance/jco')) as unknown as JcoWit;
  printed = await printedWorld(WIT);
});

test('filter.wit parses with jco, and a component made for it implements the filter world', () => {
  assert.match(printed, /export wasmesh:filter\/handler@0\.1\.0;/);
  assert.equal(checkFilterWorld(printed), []);
});

test('the world and the handler functions the contract promises, as filter.wit defines them', () => {
  const fw = loadFilterWorld();
  assert.is(fw.package, 'wasmesh:filter@0.1.0');
  assert.is(fw.world, 'wasmesh:filter/http-filter@0.1.0');
  assert.equal(fw.exports, ['wasmesh:filter/handler@0.1.0']);
  assert.equal(fw.functions.get('wasmesh:filter/handler@0.1.0'), [
    'configure', 'on-request-headers', 'on-request-body', 'on-request-trailers',
    'on-response-headers', 'on-response-body', 'on-response-trailers', 'on-stream-done',
  ]);
  // A component for the world imports only the types interface (it has no functions): nothing to bind.
  assert.equal(parseWit(printed)[0].worlds.get('root'), { imports: ['wasmesh:filter/types@0.1.0'], exports: ['wasmesh:filter/handler@0.1.0'] });
});

test('jco refuses a broken filter world, naming the problem (the parse above is real)', async () => {
  const broken = WIT.replace('on-stream-done: func(stream-id: u64) -> effects;', 'on-stream-done: func(stream-id: u64) -> effectz;');
  assert.is.not(broken, WIT);
  try {
    await printedWorld(broken);
    assert.unreachable('jco accepted an undefined type');
  } catch (err) {
    const message = String((err as { payload?: unknown }).payload ?? (err as Error).message);
    assert.match(message, /effectz/);
  }
});

test('a component for another version of the filter world is told which version is served', async () => {
  const other = WIT.replace('package wasmesh:filter@0.1.0;', 'package wasmesh:filter@0.2.0;');
  assert.equal(checkFilterWorld(await printedWorld(other)), [
    'missing export wasmesh:filter/handler@0.1.0: the component exports wasmesh:filter/handler@0.2.0, a version of the filter world this orchestrator does not serve',
  ]);
});

test('parseWit: packages, nested package blocks, inline imports and exports, errors', () => {
  const text = `
package root:component;

world root {
  import log: func(message: string);
  import wasi:cli/environment@0.2.3;
  export run: func() -> u32;
  export x:y/z@1.0.0;
}
package x:y@1.0.0 {
  interface z {
    record r { a: u32 }
    f: func(r: r) -> r;
    %type: func();
  }
}
`;
  const [root, xy] = parseWit(text);
  assert.is(root.id, 'root:component');
  assert.equal(root.worlds.get('root'), { imports: ['log', 'wasi:cli/environment@0.2.3'], exports: ['run', 'x:y/z@1.0.0'] });
  assert.is(xy.id, 'x:y@1.0.0');
  assert.equal(xy.interfaces.get('z'), ['f', 'type']);
  assert.equal(checkFilterWorld(text), ['missing export wasmesh:filter/handler@0.1.0 (the component exports run, x:y/z@1.0.0)']);
  assert.throws(() => parseWit('package a:b;\nworld w {\n'), /unbalanced "\{"/);
  assert.throws(() => parseWit('world w { export f: func(); }'), /no `package ns:name;` line/);
});

test.run();
