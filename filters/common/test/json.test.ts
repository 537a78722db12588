// The shared JSON reader (filters/common/assembly/json.ts), through a fixture filter that logs what it
// makes of its plugin configuration: the tree, or the syntax error; and Checker's field-path errors.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildFilter } from '../../toolchain/build.ts';
import { FilterHarness } from '../../../wasm/src/harness.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/json-reader');
let wasm = '';

test.before(async () => {
  const silent = { write: () => true };
  wasm = (await buildFilter(FIXTURE, { quiet: true, stdout: silent, stderr: silent })).wasmPath;
});

/** The fixture's log lines for one configuration text. */
async function read(configuration: string): Promise<string[]> {
  const h = await FilterHarness.load(wasm, { rootId: 'json_reader', configuration });
  const lines = h.logs.filter((l) => l.level === 'info').map((l) => l.message);
  await h.close();
  return lines;
}

test('values: every kind, escapes, numbers as written, member order kept', async () => {
  const cases: Array<[string, string]> = [
    ['', 'tree {}'],
    [' \n\t ', 'tree {}'],
    ['{"a": [1, -0.5, 2e3, 1E-2, 0], "b": {"c": null}, "d": true, "e": false}', 'tree {"a":[1,-0.5,2e3,1E-2,0],"b":{"c":null},"d":true,"e":false}'],
    ['"x\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"', 'tree "x\\u0022\\u005c/\\u0008\\u000c\\u000a\\u000d\\u0009\\u00e9\\ud83d\\ude00"'],
    ['{"z": 1, "a": 2}', 'tree {"z":1,"a":2}'],
    ['[[], {}, [[]]]', 'tree [[],{},[[]]]'],
    ['{"a": 1, "a": 2}', 'tree {"a":1,"a":2}'],
    ['['.repeat(64) + ']'.repeat(64), `tree ${'['.repeat(64)}${']'.repeat(64)}`],
  ];
  for (const [text, expected] of cases) assert.equal(await read(text), [expected], text);
});

test('syntax errors: message, line and column, and the member being read; never a trap', async () => {
  const cases: Array<[string, string]> = [
    ['{"a": 1,}', 'error invalid JSON: expected a member name in double quotes (at line 1, column 9) @ 1:9'],
    ['{"a": {"b": [1, 2 3]}}', 'error invalid JSON: expected \',\' or \']\' in an array (at line 1, column 19) @a.b 1:19'],
    ['{\n  "a": truex\n}', 'error invalid JSON: expected true, false or null (at line 2, column 8) @a 2:8'],
    ['{"a": 1', 'error invalid JSON: expected \',\' or \'}\' after the value (at the end of the configuration) @a 1:8'],
    ['{"a" 1}', 'error invalid JSON: expected \':\' after "a" (at line 1, column 6) @a 1:6'],
    ['[01]', 'error invalid JSON: expected \',\' or \']\' in an array (at line 1, column 3) @ 1:3'],
    ['[1.]', 'error invalid JSON: invalid number (at line 1, column 2) @[0] 1:2'],
    ['[-]', 'error invalid JSON: invalid number (at line 1, column 2) @[0] 1:2'],
    ['["a\\x"]', 'error invalid JSON: invalid escape sequence (at line 1, column 4) @[0] 1:4'],
    ['["\\u12"]', 'error invalid JSON: invalid \\u escape (at line 1, column 3) @[0] 1:3'],
    ['["a\nb"]', 'error invalid JSON: control character in a string (escape it) (at line 1, column 4) @[0] 1:4'],
    ['{"end-user": "x', 'error invalid JSON: unterminated string (at the end of the configuration) @["end-user"] 1:16'],
    ['{} x', 'error invalid JSON: unexpected text after the configuration object (at line 1, column 4) @ 1:4'],
    ['[1', 'error invalid JSON: expected \',\' or \']\' in an array (at the end of the configuration) @ 1:3'],
    ['{"a": @}', 'error invalid JSON: expected a JSON value (at line 1, column 7) @a 1:7'],
    ['['.repeat(65) + ']'.repeat(65), 'error invalid JSON: nesting deeper than 64 levels (at line 1, column 65) @' + '[0]'.repeat(64) + ' 1:65'],
    ['['.repeat(100000), 'error invalid JSON: nesting deeper than 64 levels (at line 1, column 65) @' + '[0]'.repeat(64) + ' 1:65'],
  ];
  for (const [text, expected] of cases) assert.equal(await read(text), [expected], text);
});

test('Checker: typed accessors name the field, with its position', async () => {
  const check = async (value: object) => (await read(JSON.stringify({ check: value })))[1];
  assert.is(await check({ int: 503, str: 'x', list: ['a'], bool: true, num: 12.5 }), 'check ok');
  assert.is(await check({ int: 99, str: 'x' }), 'check check.int: must be an integer from 200 to 599, not 99 (at line 1, column 17)');
  assert.is(await check({ int: 200.5, str: 'x' }), 'check check.int: must be an integer from 200 to 599, not 200.5 (at line 1, column 17)');
  assert.is(await check({ int: '503', str: 'x' }), 'check check.int: must be an integer from 200 to 599, not "503" (at line 1, column 17)');
  assert.is(await check({ str: 'x' }), 'check check.int: is required');
  assert.is(await check({ int: 200, num: 101, str: 'x' }), 'check check.num: must be a number from 0 to 100, not 101 (at line 1, column 27)');
  assert.is(await check({ int: 200, str: null }), 'check check.str: is required');
  assert.is(await check({ int: 200, str: 1 }), 'check check.str: must be a string, not a number (at line 1, column 27)');
  assert.is(await check({ int: 200, str: 'x', bool: 'yes' }), 'check check.bool: must be a boolean, not a string (at line 1, column 38)');
  assert.is(await check({ int: 200, str: 'x', list: {} }), 'check check.list: must be an array of strings, not an object (at line 1, column 38)');
  assert.is(await check({ int: 200, str: 'x', list: ['a', 2] }), 'check check.list[1]: must be a string, not a number (at line 1, column 43)');
  assert.is(await check({ int: 200, 'x-y': 1 }), 'check check["x-y"]: unknown field (expected one of "int", "num", "str", "bool", "list") (at line 1, column 21)');
  assert.is((await read('{"check": {"int": 200, "str": "a", "int": 201}}'))[1], 'check check.int: listed twice (at line 1, column 36)');
  assert.is((await read('{"check": []}'))[1], 'check check: must be an object, not an array (at line 1, column 11)');
});

test.run();
