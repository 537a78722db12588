import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseDocuments, type ConfigDocument } from '../../mesh/src/documents.ts';
import { SCHEMA_FILES, formatErrors, validateDocuments } from '../../mesh/src/validate.ts';

const JSON_DIR = new URL('../json/', import.meta.url);
const EXAMPLES_DIR = new URL('../examples/', import.meta.url);

type Schema = Record<string, unknown>;

const schemaFiles = readdirSync(JSON_DIR).filter((f) => f.endsWith('.schema.json')).sort();
const load = (file: string): Schema => JSON.parse(readFileSync(new URL(file, JSON_DIR), 'utf8')) as Schema;
const exampleFiles = readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.yaml')).sort();

function examples(file: string): ConfigDocument[] {
  const { documents, errors } = parseDocuments(readFileSync(new URL(file, EXAMPLES_DIR), 'utf8'), `schemas/examples/${file}`);
  assert.equal(errors, [], `${file} does not parse`);
  return [...documents];
}

/** Calls fn for every subschema, with its JSON pointer. */
function eachSchema(schema: unknown, path: string, fn: (s: Schema, path: string) => void): void {
  if (typeof schema !== 'object' || schema === null) return;
  if (Array.isArray(schema)) {
    schema.forEach((s, i) => eachSchema(s, `${path}/${i}`, fn));
    return;
  }
  const s = schema as Schema;
  fn(s, path);
  for (const key of ['properties', '$defs']) {
    const children = s[key] as Record<string, unknown> | undefined;
    for (const [name, child] of Object.entries(children ?? {})) eachSchema(child, `${path}/${key}/${name}`, fn);
  }
  for (const key of ['items', 'additionalProperties', 'propertyNames']) {
    if (typeof s[key] === 'object') eachSchema(s[key], `${path}/${key}`, fn);
  }
  if (Array.isArray(s.oneOf)) eachSchema(s.oneOf, `${path}/oneOf`, fn);
}

test('there is one schema per supported kind, and nothing else', () => {
  assert.equal(schemaFiles, Object.values(SCHEMA_FILES).sort());
});

for (const file of schemaFiles) {
  test(`${file} compiles (ajv, draft 2020-12, strict)`, () => {
    const schema = load(file);
    assert.is(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    assert.type(ajv.compile(schema), 'function');
  });

  test(`${file}: a full document, closed objects, described fields`, () => {
    const schema = load(file);
    const kind = schema.title as string;
    assert.equal(schema.required, ['apiVersion', 'kind', 'metadata', 'spec']);
    assert.equal((schema.properties as Record<string, Schema>).kind!.const, kind);
    assert.ok(typeof schema.description === 'string' && (schema.description as string).length > 20);
    const defs = (schema.$defs ?? {}) as Record<string, Schema>;
    eachSchema(schema, '', (s, path) => {
      // Every object with declared fields rejects the others.
      if (s.properties) assert.is(s.additionalProperties, false, `${file}${path}: additionalProperties must be false`);
      // Every field is described, directly or through the definition it refers to.
      for (const [name, prop] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) {
        const target = typeof prop.$ref === 'string' ? defs[prop.$ref.replace('#/$defs/', '')] : undefined;
        assert.ok(prop.description ?? target?.description, `${file}${path}/properties/${name} has no description`);
      }
    });
  });
}

test('the Istio enum values we support are spelled as in Istio', () => {
  const enumAt = (file: string, ...path: string[]): unknown => {
    let s: Schema = load(file);
    for (const p of path) s = (p.startsWith('#') ? (s.$defs as Record<string, Schema>)[p.slice(1)] : (s.properties as Record<string, Schema>)[p])!;
    return s.enum;
  };
  assert.equal(enumAt('wasm-plugin.schema.json', 'spec', 'phase'), ['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS']);
  assert.equal(enumAt('wasm-plugin.schema.json', 'spec', 'failStrategy'), ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']);
  assert.equal(enumAt('peer-authentication.schema.json', 'spec', 'mtls', 'mode'), ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']);
  assert.equal(enumAt('authorization-policy.schema.json', 'spec', 'action'), ['ALLOW', 'DENY', 'AUDIT']);
  assert.equal(enumAt('service-entry.schema.json', 'spec', 'resolution'), ['NONE', 'STATIC', 'DNS']);
  assert.equal(enumAt('destination-rule.schema.json', '#ClientTLSSettings', 'mode'), ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']);
});

for (const file of exampleFiles) {
  test(`example ${file}: every document validates against the schema of its kind`, () => {
    const docs = examples(file);
    assert.ok(docs.length > 0);
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    for (const doc of docs) {
      const value = doc.value as { kind: keyof typeof SCHEMA_FILES };
      const schema = load(SCHEMA_FILES[value.kind]);
      const validate = ajv.getSchema(schema.$id as string) ?? ajv.compile(schema);
      assert.ok(validate(value), `${file}#${doc.source.index}: ${JSON.stringify(validate.errors)}`);
    }
  });
}

test('the examples validate as one mesh (references, weights, urls) and cover every kind', () => {
  const docs = exampleFiles.flatMap(examples);
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  const kinds = new Set(docs.map((d) => (d.value as { kind: string }).kind));
  assert.equal([...kinds].sort(), Object.keys(SCHEMA_FILES).sort());
});

test.run();
