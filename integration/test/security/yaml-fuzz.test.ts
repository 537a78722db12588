// Bounded fuzzing of the config loader (mesh/src/documents.ts), which the REST API, `wasmesh
// apply/validate` and `wasmesh proxy --config` all use: mutated example YAML, random values written
// as YAML and JSON, and hostile seeds (alias bombs, deep nesting, many documents). Every input must
// give documents or errors that name a document and say what is wrong, within a time bound, and
// never a throw; validation of whatever was parsed must not throw either.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { stringify } from 'yaml';
import { parseDocuments } from '../../../mesh/src/documents.ts';
import { validateDocuments } from '../../../mesh/src/validate.ts';
import { fuzz, type Random } from './support/fuzz.ts';
import { billionLaughs, examples, mutateText, mutateValue, nested, randomValue } from './support/mutate.ts';

/** Per input: only catches hangs (the slowest inputs here parse in well under a second on an idle machine). */
const PER_INPUT_MS = 15_000;

const { texts, documents } = examples();

const HOSTILE: Array<(r: Random) => string> = [
  () => billionLaughs(),
  (r) => billionLaughs().slice(0, 200 + r.int(400)),
  (r) => `a: &a [${Array(1 + r.int(200)).fill('x').join(',')}]\nb: [${Array(1 + r.int(150)).fill('*a').join(',')}]\n`,
  (r) => `${'['.repeat(10 + r.int(5000))}`,
  (r) => `${'- '.repeat(10 + r.int(5000))}x`,
  (r) => `${'{a: '.repeat(10 + r.int(2000))}1`,
  (r) => Array.from({ length: 10 + r.int(400) }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n'),
  (r) => '---\n'.repeat(1 + r.int(12_000)),
  (r) => `&a [*a, ${r.int(9)}]`,
  (r) => `%YAML 1.1\n---\nbase: &b {x: ${r.int(9)}}\nm: {<<: [*b, *b], d: !!binary aGk=, s: !!set {a, b}, o: !!omap [{a: 1}], t: 2001-12-14}\n`,
  (r) => JSON.stringify(nested(r.int(200))),
  (r) => `{"kind": "List", "items": ${JSON.stringify(Array.from({ length: r.int(50) }, () => randomValue(r)))}}`,
];

function input(r: Random): string {
  switch (r.int(5)) {
    case 0:
    case 1:
      return mutateText(r, r.pick(texts));
    case 2: {
      const doc = mutateValue(r, r.pick(documents));
      return r.chance(0.5) ? stringify(doc, { aliasDuplicateObjects: false }) : JSON.stringify(doc);
    }
    case 3:
      return r.chance(0.5) ? stringify(randomValue(r)) : mutateText(r, JSON.stringify(randomValue(r)));
    default:
      return r.pick(HOSTILE)(r);
  }
}

test('random and mutated YAML: documents or errors that name the document, quickly, never a throw', async () => {
  const run = await fuzz('yaml loader', { seed: 0x14_0c, cases: 500, budgetMs: 20_000, minCases: 100 }, (r, _i, note) => {
    const text = input(r);
    note(JSON.stringify(text));
    const started = performance.now();
    const parsed = parseDocuments(text, 'fuzz.yaml');
    const ms = performance.now() - started;
    assert.ok(ms < PER_INPUT_MS, `parsing took ${Math.round(ms)} ms`);
    for (const e of parsed.errors) {
      assert.ok(e.document.length > 0 && e.message.length > 0, `an error without a document or a message: ${JSON.stringify(e)}`);
      assert.ok(e.document.startsWith('fuzz.yaml') || / \(fuzz\.yaml#\d+\)$/.test(e.document), `the error does not name the file: ${e.document}`);
    }
    const validation = validateDocuments(parsed.documents, { mode: 'standalone' });
    for (const e of validation.errors) assert.ok(e.message.length > 0, 'a validation error without a message');
  });
  assert.ok(run.ran >= 100, `only ${run.ran} cases ran`);
});

test.run();
