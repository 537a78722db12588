// The loader's limits on hostile text (mesh/src/input-limits.ts): alias bombs, deep nesting, huge
// documents and texts, too many documents, and quadratic duplicate-key checks each end in an error
// naming the document and the limit, quickly, and never in a throw.
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { documentLimitErrors, fromObjects, parseDocuments, readDocumentFiles, type ParseResult } from '../src/documents.ts';
import { INPUT_LIMITS } from '../src/input-limits.ts';

/** A bound that only catches hangs (each input here is refused in milliseconds on an idle machine). */
const HANG_MS = 10_000;

function timed(text: string, file = 'f.yaml'): ParseResult {
  const started = performance.now();
  const result = parseDocuments(text, file);
  const ms = performance.now() - started;
  assert.ok(ms < HANG_MS, `parsing took ${Math.round(ms)} ms`);
  return result;
}

function billionLaughs(name = 'bomb', namespace = 'default'): string {
  const rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (const [prev, next] of [['a', 'b'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e', 'f'], ['f', 'g'], ['g', 'h'], ['h', 'i']]) {
    rows.push(`${next}: &${next} [${Array(9).fill(`*${prev}`).join(',')}]`);
  }
  return `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n  hosts: [x]\n  ${rows.join('\n  ')}\n`;
}

test('billion laughs: refused, naming the document and the line, saying that aliases were limited', () => {
  const { documents, errors } = timed(`kind: ServiceEntry\nmetadata: {name: fine}\n---\n${billionLaughs()}`);
  assert.equal(documents.map((d) => (d.value as { metadata: { name: string } }).metadata.name), ['fine'], 'the other document is still read');
  assert.is(errors.length, 1);
  assert.is(errors[0]!.document, 'VirtualService default/bomb (f.yaml#2)');
  assert.is(errors[0]!.resource, 'VirtualService default/bomb');
  assert.match(errors[0]!.message, /^YAML aliases were limited at line \d+: expanded, they would make the document larger than 1 MiB/);
});

test('aliases within the limits still work, and so do YAML 1.1 merge keys', () => {
  const { documents, errors } = timed('base: &base {app: web, tier: front}\nlabels: *base\nports: &p [80, 443]\nagain: *p\n...\n%YAML 1.1\n---\ndefaults: &d {x: 1}\nmerged: {<<: *d, z: 2}\n');
  assert.equal(errors, []);
  assert.equal(documents[0]!.value, { base: { app: 'web', tier: 'front' }, labels: { app: 'web', tier: 'front' }, ports: [80, 443], again: [80, 443] });
  assert.equal((documents[1]!.value as { merged: unknown }).merged, { x: 1, z: 2 });
});

test('an alias inside the node it refers to (a cyclic value) is refused', () => {
  const { documents, errors } = timed('kind: WasmPlugin\nmetadata: {name: loop}\nspec: &s\n  pluginConfig: {self: *s}\n');
  assert.equal(documents, []);
  assert.is(errors[0]!.document, 'WasmPlugin default/loop (f.yaml#1)');
  assert.match(errors[0]!.message, 'YAML aliases were limited at line 4: alias *s refers to a node that contains it');
});

test('more aliases than the limit, and aliases expanding past the depth limit, are refused', () => {
  const many = timed(`a: &a 1\nb: [${Array(INPUT_LIMITS.maxAliases + 1).fill('*a').join(', ')}]\n`);
  assert.match(many.errors[0]!.message, `YAML aliases were limited at line 2: a document may have at most ${INPUT_LIMITS.maxAliases} aliases`);
  // Each level is 40 deep; three aliases stacked make 120 levels from 63 characters of nesting.
  const deep40 = `${'['.repeat(40)}1${']'.repeat(40)}`;
  const stacked = timed(`a: &a ${deep40}\nb: &b [${'['.repeat(30)}*a${']'.repeat(30)}]\nc: [${'['.repeat(30)}*b${']'.repeat(30)}]\n`);
  assert.match(stacked.errors[0]!.message, /^YAML aliases were limited at line 2: expanded, alias \*a would nest the document deeper than 64 levels/);
});

test('deep nesting is refused at once, in flow and block YAML and in JSON, without reading the rest', () => {
  const flow = timed(`kind: X\nmetadata: {name: deep}\nspec: ${'['.repeat(3_000_000)}`);
  assert.is(flow.errors.length, 1);
  assert.is(flow.errors[0]!.document, 'X default/deep (f.yaml#1)');
  assert.match(flow.errors[0]!.message, /^nests deeper than 64 levels \(the limit\) at line 3; the rest of the text was not read$/);
  const block = timed(`${'- '.repeat(2_000_000)}x`);
  assert.match(block.errors[0]!.message, 'nests deeper than 64 levels');
  const json = timed('['.repeat(4_000_000), 'f.json');
  assert.equal(json.errors, [{ document: 'f.json', path: '', message: 'nests deeper than 64 levels (the limit) at line 1' }]);
  // Just past the limit, the error has the document's name.
  const justPast = timed(`kind: X\nmetadata:\n  name: d65\nspec: ${'['.repeat(65)}${']'.repeat(65)}\n`);
  assert.is(justPast.errors[0]!.document, 'X default/d65 (f.yaml#1)');
  assert.match(justPast.errors[0]!.message, 'nests deeper than 64 levels (the limit) at line 4');
  assert.equal(timed(`a: ${'['.repeat(60)}${']'.repeat(60)}\n`).errors, [], '60 levels are fine');
});

test('a document past the size limit is refused by name; a text past the text limit is not parsed at all', () => {
  const big = timed(`kind: X\nmetadata: {name: big}\nspec: "${'x'.repeat(1_100_000)}"\n---\nkind: Y\nmetadata: {name: small}\n`);
  assert.is(big.errors.length, 1);
  assert.is(big.errors[0]!.document, 'X default/big (f.yaml#1)');
  assert.match(big.errors[0]!.message, /larger than 1 MiB \(the limit\)|is 1\.\d+ MiB, more than the limit of 1 MiB/);
  const text = timed(`a: ${'x'.repeat(INPUT_LIMITS.maxTextBytes)}`);
  assert.equal(text.documents, []);
  assert.match(text.errors[0]!.message, /^8 MiB of text, more than the limit of 8 MiB: split it into several files$/);
});

test('more documents than the limit: the text is refused, quickly even when they are empty', () => {
  const empty = timed('---\n'.repeat(INPUT_LIMITS.maxDocuments * 20));
  assert.equal(empty.errors.at(-1), { document: 'f.yaml', path: '', message: `more than ${INPUT_LIMITS.maxDocuments} documents (the limit): split the text` });
  const listed = timed(JSON.stringify(Array.from({ length: INPUT_LIMITS.maxDocuments + 1 }, () => ({}))), 'f.json');
  assert.match(listed.errors[0]!.message, `${INPUT_LIMITS.maxDocuments + 1} documents, more than the limit of ${INPUT_LIMITS.maxDocuments}`);
});

test('duplicate keys are found in linear time, with their line (the yaml package compares every pair)', () => {
  const keys = Array.from({ length: 60_000 }, (_, i) => `k${i}: v`);
  keys.push('k17: again');
  const { errors } = timed(keys.join('\n'));
  assert.equal(errors.map((e) => e.message), ['invalid YAML at line 60001, column 1: Map keys must be unique']);
  assert.equal(timed('a: 1\n"1": x\n1: y\n').errors, [], 'the string "1" and the number 1 are different keys');
});

test('documents that came as objects (JSON bodies) are held to the same limits, cycles included', () => {
  let deep: unknown = 1;
  for (let i = 0; i < 70; i++) deep = [deep];
  const cyclic: Record<string, unknown> = { kind: 'X', metadata: { name: 'c' } };
  cyclic.spec = cyclic;
  const errors = documentLimitErrors(fromObjects([{ kind: 'X', metadata: { name: 'ok' }, spec: { a: 1 } }, { kind: 'X', metadata: { name: 'deep' }, spec: deep }, cyclic, { s: 'x'.repeat(1_100_000) }], 'apply'));
  assert.equal(
    errors.map((e) => [e.document, e.message]),
    [
      ['X default/deep (apply#2)', 'nests deeper than 64 levels (the limit)'],
      ['X default/c (apply#3)', 'nests deeper than 64 levels (the limit)'],
      ['apply#4', 'the document is larger than 1 MiB (the limit)'],
    ],
  );
  assert.match(errors[0]!.path, /^\/spec(\/0)+$/);
});

test('readDocumentFiles refuses a file past the text limit without reading it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-limits-'));
  try {
    const file = join(dir, 'huge.yaml');
    writeFileSync(file, '');
    truncateSync(file, 64 * 1024 * 1024 * 1024); // sparse: 64 GiB that a read would try to hold in memory
    const { documents, errors } = await readDocumentFiles([dir]);
    assert.equal(documents, []);
    assert.equal(errors, [{ document: file, path: '', message: '65536 MiB of text, more than the limit of 8 MiB: split it into several files' }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
