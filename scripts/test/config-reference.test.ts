// Tests for scripts/gen-config-reference.ts: the committed docs/config-reference.md is what the schemas
// generate (so a schema change without regenerating fails here), it covers every kind, filter and top-level
// field, nested paths and enums are rendered, `--check` reports a stale file, and recursive $refs stop.

import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONFIG_REFERENCE_FILE, checkConfigReference, fieldRows, markdownText, renderConfigReference, type JsonSchema,
} from '../gen-config-reference.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const schemaDir = path.join(repoRoot, 'schemas/json');
const filterSchemaDir = path.join(schemaDir, 'filters');
const regenerate = 'node --import tsx scripts/gen-config-reference.ts';

const schemaFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.schema.json')).sort().map((f) => path.join(dir, f));
const loadSchema = (file: string): JsonSchema => JSON.parse(readFileSync(file, 'utf8')) as JsonSchema;

let committed = '';
let generated = '';

/** The text of `### heading` up to the next section heading. */
function section(heading: string): string {
  const start = generated.indexOf(`\n### ${heading}\n`);
  assert.ok(start >= 0, `no section "### ${heading}"`);
  const end = generated.slice(start + 1).search(/\n##+ /);
  return end < 0 ? generated.slice(start) : generated.slice(start, start + 1 + end);
}

/** The table row of `fieldPath` in `text`. */
function row(text: string, fieldPath: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`| \`${fieldPath}\` |`));
  assert.ok(line, `no row for ${fieldPath}`);
  return line!;
}

test.before(async () => {
  generated = await renderConfigReference();
  try {
    committed = readFileSync(CONFIG_REFERENCE_FILE, 'utf8');
  } catch {
    committed = '';
  }
});

test('docs/config-reference.md is up to date with schemas/', () => {
  // assert.ok rather than assert.is: the message says what to do; the diff would be the whole file.
  assert.ok(committed === generated, `docs/config-reference.md is out of date or missing; run: ${regenerate}`);
});

test('the output is deterministic', async () => {
  assert.is(await renderConfigReference(), generated);
});

test('every kind appears with its apiVersions, its example and every top-level field', () => {
  const files = schemaFiles(schemaDir);
  assert.ok(files.length >= 7, 'the seven kinds at least');
  for (const file of files) {
    const schema = loadSchema(file);
    const kind = schema.properties!.kind as JsonSchema;
    const text = section(kind.const as string);
    assert.ok(generated.includes(`- [${kind.const as string}](#${(kind.const as string).toLowerCase()})`), `${kind.const} in the contents`);
    for (const version of (schema.properties!.apiVersion as JsonSchema).enum as string[]) {
      assert.ok(text.includes(`\`${version}\``), `${kind.const}: apiVersion ${version}`);
    }
    for (const name of Object.keys(schema.properties!)) row(text, name);
    const spec = schema.properties!.spec as JsonSchema;
    for (const name of Object.keys(spec.properties ?? {})) row(text, `spec.${name}`);
  }
  for (const kind of ['ServiceEntry', 'WorkloadEntry', 'VirtualService', 'DestinationRule', 'WasmPlugin', 'PeerAuthentication', 'AuthorizationPolicy']) {
    assert.match(section(kind), /Example \(from `schemas\/examples\/[a-z-]+\.yaml`\):\n\n```yaml\napiVersion: /, `${kind} has an example`);
    assert.match(section(kind), new RegExp(`\nkind: ${kind}\n`), `${kind}'s example is of that kind`);
  }
});

test('every built-in filter appears with every top-level field', () => {
  const files = schemaFiles(filterSchemaDir);
  assert.ok(files.length >= 3, 'fault, policy, telemetry at least');
  for (const file of files) {
    const name = path.basename(file, '.schema.json');
    const text = section(`${name} filter`);
    assert.ok(generated.includes(`- [${name} filter](#${name}-filter)`), `${name} in the contents`);
    for (const field of Object.keys(loadSchema(file).properties ?? {})) row(text, field);
  }
  assert.match(section('fault filter'), /Example \(from `filters\/fault\/example\/config\.json`\):\n\n```json\n\{/);
});

test('nested paths go through arrays, refs and maps, with their descriptions', () => {
  const vs = section('VirtualService');
  const host = row(vs, 'spec.http[].route[].destination.host');
  assert.ok(host.includes('Host of a ServiceEntry (short names are completed with the VirtualService namespace) or a fully qualified name.'), host);
  assert.ok(host.includes('| `string` | yes |'), host);
  assert.ok(host.includes('maxLength 253'), 'constraints of the referenced Host definition');
  const weight = row(vs, 'spec.http[].route[].weight');
  assert.ok(weight.includes('| `integer` | no |') && weight.includes('minimum 0, maximum 100'), weight);
  assert.ok(row(vs, 'spec.http').includes('| `object[]` |'));
  assert.ok(row(vs, 'spec.http').includes('items: exactly one of `route`, `redirect`, `directResponse`'));
  assert.ok(row(vs, 'spec.http[].match[].headers').includes('| `map<string, object>` |'));
  row(vs, 'spec.http[].match[].headers.<key>.exact');
  assert.ok(row(vs, 'metadata.labels').includes('| `map<string, string>` |'));
  assert.ok(row(vs, 'spec.hosts').includes('| `string[]` | yes |'));

  const policy = section('policy filter');
  assert.ok(row(policy, 'policies').includes('| `object[] \\| null` |'), 'a type list is a union');
  const fault = section('fault filter');
  const grpc = row(fault, 'rules[].abort.grpcStatus');
  assert.ok(grpc.includes('\\| "UNAUTHENTICATED" \\| integer` |'), 'oneOf: enum | integer');
  assert.ok(grpc.includes('integer: minimum 0, maximum 16'), grpc);
  const telemetry = section('telemetry filter');
  assert.ok(row(telemetry, 'metrics').includes('| no | `true` |'), 'the default is shown');
});

test('enum values are listed in the type', () => {
  const schema = loadSchema(path.join(schemaDir, 'wasm-plugin.schema.json'));
  const phase = (schema.properties!.spec as JsonSchema).properties!.phase as JsonSchema;
  const line = row(section('WasmPlugin'), 'spec.phase');
  assert.ok((phase.enum ?? []).length > 0);
  for (const value of phase.enum as string[]) assert.ok(line.includes(`"${value}"`), `${value} in ${line}`);
  assert.ok(line.includes(markdownText(phase.description!)), 'and the description');
  assert.ok(row(section('PeerAuthentication'), 'spec.mtls.mode').includes('"STRICT"'));
});

test('recursive refs are shown once, with a pointer to where they are expanded', () => {
  const schema: JsonSchema = {
    type: 'object',
    properties: {
      tree: { $ref: '#/definitions/Node', description: 'The root.' },
      list: { type: 'array', items: { $ref: '#/definitions/Node' } },
    },
    definitions: {
      Node: {
        type: 'object',
        description: 'A node.',
        required: ['name'],
        properties: {
          name: { type: 'string', enum: ['a', 'b'] },
          children: { type: 'array', items: { $ref: '#/definitions/Node' } },
          byName: { type: 'object', additionalProperties: { $ref: '#/definitions/Node' } },
        },
      },
    },
  };
  const rows = fieldRows(schema, path.join(repoRoot, 'virtual.schema.json'));
  assert.equal(rows.map((r) => r.path), [
    'tree', 'tree.name', 'tree.children', 'tree.byName',
    'list', 'list[].name', 'list[].children', 'list[].byName',
  ]);
  const byPath = new Map(rows.map((r) => [r.path, r]));
  assert.is(byPath.get('tree')!.description, 'The root.');
  assert.is(byPath.get('tree.name')!.type, '"a" | "b"');
  assert.is(byPath.get('tree.name')!.required, true);
  assert.is(byPath.get('tree.children')!.type, 'object[]');
  assert.match(byPath.get('tree.children')!.description, /Recursive: its fields are those of `tree`\./);
  assert.is(byPath.get('tree.byName')!.type, 'map<string, object>');
  assert.match(byPath.get('list[].children')!.description, /Recursive: its fields are those of `list\[\]`\./);
});

test('--check exits 0 when up to date, and names a stale file', async () => {
  const run = promisify(execFile);
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/gen-config-reference.ts', '--check'], { cwd: repoRoot })
    .catch((error: { stdout: string; stderr: string; code: number }) => {
      assert.unreachable(`--check exited ${error.code}: ${error.stderr}`);
      throw error;
    });
  assert.is(stdout, '');
  assert.is(stderr, '');

  const dir = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-config-reference-'));
  try {
    const stale = path.join(dir, 'config-reference.md');
    await writeFile(stale, generated.replace('spec.http[].route[].weight', 'spec.http[].route[].wait'));
    const message = await checkConfigReference(stale);
    assert.ok(message !== null && message.includes('config-reference.md') && message.includes('out of date'), String(message));
    assert.ok(message!.includes(regenerate), 'says how to fix it');
    assert.match(String(await checkConfigReference(path.join(dir, 'missing.md'))), /missing\.md is missing/);
    await writeFile(stale, generated);
    assert.is(await checkConfigReference(stale), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
