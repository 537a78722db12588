// Configuration errors: on_configure returns false and the log line names the field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ErrorCode, WasmeshWasmError } from '../../../wasm/src/errors.ts';
import { parseDocuments, type AuthorizationPolicy } from '../../../mesh/src/documents.ts';
import { policyFilterConfig } from '../../../mesh/src/translate/policy-filter.ts';
import { allow, load, policyWasm, send, status } from './support.ts';

const schema = JSON.parse(readFileSync(new URL('../../../schemas/json/filters/policy.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

test.before(async () => {
  await policyWasm();
});

async function rejected(configuration: object | string): Promise<string> {
  try {
    const h = await load(configuration as object);
    await h.close();
  } catch (err) {
    assert.instance(err, WasmeshWasmError);
    assert.is((err as WasmeshWasmError).code, ErrorCode.ConfigureFailed);
    return (err as Error).message;
  }
  assert.unreachable(`accepted: ${JSON.stringify(configuration)}`);
  return '';
}

const source = (s: object) => ({ policies: [allow([{ from: [{ source: s }] }])] });

const CASES: Array<[string, object | string, string]> = [
  ['bad CIDR prefix', source({ ipBlocks: ['10.0.0.0/8', '10.0.0.0/33'] }), 'policy: policies[0].rules[0].from[0].source.ipBlocks[1]: "10.0.0.0/33" is not a valid CIDR'],
  ['bad IPv4', source({ notIpBlocks: ['10.0.0.256'] }), 'policies[0].rules[0].from[0].source.notIpBlocks[0]: "10.0.0.256" is not a valid CIDR'],
  ['bad IPv6', source({ ipBlocks: ['2001:db8:::1'] }), 'source.ipBlocks[0]: "2001:db8:::1" is not a valid CIDR'],
  ['IPv6 prefix too long', source({ ipBlocks: ['::/129'] }), 'source.ipBlocks[0]: "::/129" is not a valid CIDR'],
  ['unknown source field', source({ principal: ['x'] }), 'policies[0].rules[0].from[0].source: unknown field "principal"'],
  ['not a list', source({ principals: 'x' }), 'source.principals: must be an array, not a string'],
  ['empty pattern', source({ principals: [''] }), 'source.principals[0]: must not be empty'],
  ['bad port', { policies: [allow([{ to: [{ operation: { ports: ['80', 'http'] } }] }])] }, 'policies[0].rules[0].to[0].operation.ports[1]: "http" is not a port number'],
  ['port out of range', { policies: [allow([{ to: [{ operation: { notPorts: ['65536'] } }] }])] }, 'operation.notPorts[0]: "65536" is not a port number'],
  ['bad action', { policies: [{ name: 'x', action: 'CUSTOM' }] }, 'policies[0].action: "CUSTOM" is not one of ALLOW, DENY, AUDIT'],
  ['missing name', { policies: [{ action: 'DENY' }] }, 'policies[0].name: is required'],
  ['duplicate policy', { policies: [allow([{}]), allow([{}])] }, 'policies[1]: policy "default.allow-it" is listed twice'],
  ['unknown when key', { policies: [allow([{ when: [{ key: 'request.body', values: ['x'] }] }])] }, 'policies[0].rules[0].when[0].key: unsupported key "request.body"'],
  ['malformed header key', { policies: [allow([{ when: [{ key: 'request.headers[x', values: ['x'] }] }])] }, 'when[0].key: "request.headers[x" is malformed'],
  ['when without values', { policies: [allow([{ when: [{ key: 'source.ip' }] }])] }, 'policies[0].rules[0].when[0]: needs values or notValues'],
  ['bad when CIDR', { policies: [allow([{ when: [{ key: 'source.ip', notValues: ['x'] }] }])] }, 'when[0].notValues[0]: "x" is not a valid CIDR'],
  ['unknown top-level key', { policy: [] }, 'policy: unknown field "policy" (expected one of policies, rateLimits, globalRateLimit)'],
  ['from without source', { policies: [allow([{ from: [{}] }])] }, 'policies[0].rules[0].from[0].source: is required'],
  ['rule not an object', { policies: [allow(['x' as unknown as object])] }, 'policies[0].rules[0]: must be an object, not a string'],
  ['bucket without descriptor', { rateLimits: [{ name: 'b', maxTokens: 1, fillIntervalMs: 1000 }] }, 'rateLimits[0].descriptor: is required'],
  ['two descriptors', { rateLimits: [{ name: 'b', descriptor: { global: true, header: 'x' }, maxTokens: 1, fillIntervalMs: 1000 }] }, 'rateLimits[0].descriptor: must have exactly one of'],
  ['fractional tokens', { rateLimits: [{ name: 'b', descriptor: { global: true }, maxTokens: 1.5, fillIntervalMs: 1000 }] }, 'rateLimits[0].maxTokens: must be an integer from 1 to 1000000000, not 1.5'],
  ['zero interval', { rateLimits: [{ name: 'b', descriptor: { global: true }, maxTokens: 1, fillIntervalMs: 0 }] }, 'rateLimits[0].fillIntervalMs: must be an integer from 1 to 86400000, not 0'],
  ['missing maxTokens', { rateLimits: [{ name: 'b', descriptor: { global: true }, fillIntervalMs: 10 }] }, 'rateLimits[0].maxTokens: is required'],
  ['global false', { rateLimits: [{ name: 'b', descriptor: { global: false }, maxTokens: 1, fillIntervalMs: 10 }] }, 'rateLimits[0].descriptor.global: must be true'],
  ['relative path prefix', { rateLimits: [{ name: 'b', descriptor: { pathPrefix: 'api' }, maxTokens: 1, fillIntervalMs: 10 }] }, "rateLimits[0].descriptor.pathPrefix: must start with '/'"],
  ['duplicate bucket', { rateLimits: [{ name: 'b', descriptor: { global: true }, maxTokens: 1, fillIntervalMs: 10 }, { name: 'b', descriptor: { global: true }, maxTokens: 1, fillIntervalMs: 10 }] }, 'rateLimits[1].name: bucket "b" is listed twice'],
  ['JSON syntax', '{"policies": [', 'policy: invalid JSON at line 1, column 15: unexpected end of the configuration'],
  ['JSON trailing text', '{} x', 'invalid JSON at line 1, column 4: unexpected text after the configuration'],
  ['not an object', '[]', 'policy: must be an object, not an array'],
  ['too deep', '['.repeat(100) + ']'.repeat(100), 'nesting deeper than 64 levels'],
];

for (const [name, configuration, expected] of CASES) {
  test(`rejected: ${name}`, async () => {
    const message = await rejected(configuration);
    assert.ok(message.includes(expected), `expected ${JSON.stringify(expected)} in: ${message}`);
  });
}

test('accepted: an empty configuration, explicit nulls and empty lists', async () => {
  for (const configuration of ['', '{}', { policies: null, rateLimits: [] }, { policies: [{ name: 'p', rules: [{ from: [], to: null, when: [] }] }] }]) {
    const h = await load(configuration as object);
    assert.is(status(await send(h)), 200, JSON.stringify(configuration));
    await h.close();
  }
});

test('example/config.json is valid for the schema and the filter', async () => {
  const config = JSON.parse(readFileSync(new URL('../example/config.json', import.meta.url), 'utf8')) as object;
  assert.ok(validate(config), JSON.stringify(validate.errors));
  const h = await load(config);
  const r = await send(h, { host: 'productpage.default.svc', path: '/api/x', headers: { 'x-user': 'alice' } });
  assert.is(status(r), 200);
  assert.ok(r.logs.some((l) => l.message.includes('AUDIT policy default.log-api matched GET /api/x')));
  assert.is(status(await send(h, { host: 'productpage.default.svc', path: '/admin' })), 403);
  await h.close();
});

test('the translator output for the example security documents is accepted by the filter', async () => {
  const text = readFileSync(new URL('../../../schemas/examples/security.yaml', import.meta.url), 'utf8');
  const docs = parseDocuments(text, 'security.yaml').documents.map((d) => d.value);
  const policies = docs.filter((v): v is AuthorizationPolicy => (v as { kind?: string }).kind === 'AuthorizationPolicy');
  const config = policyFilterConfig(policies);
  assert.ok(validate(config), JSON.stringify(validate.errors));
  const h = await load(config);
  assert.is(h.plugin.state, 'running');
  await h.close();
});

// Values JSON Schema cannot check (CIDRs, port numbers, uniqueness) are left to the filter.
const SEMANTIC_ONLY = new Set(['bad CIDR prefix', 'bad IPv4', 'bad IPv6', 'IPv6 prefix too long', 'bad port', 'port out of range', 'duplicate policy', 'duplicate bucket', 'bad when CIDR']);

test('the schema rejects every structurally bad configuration the filter rejects', () => {
  for (const [name, configuration] of CASES) {
    if (typeof configuration !== 'object' || SEMANTIC_ONLY.has(name)) continue;
    assert.not.ok(validate(configuration), `${name}: ${JSON.stringify(configuration)}`);
  }
});

test.run();
