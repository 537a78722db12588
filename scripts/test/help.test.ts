// Help fitted to the terminal (orchestrator/src/cli-client/help-text.ts): `wasmesh --help` was 234
// columns wide whatever the terminal; it, and every command's --help, now wraps to the terminal's
// width (80 when not a terminal, at most 100) without losing a word or its layout.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { commands, usage } from '../cli/main.ts';
import { fillSynopsis, helpWidth, wrapHelp } from '../../orchestrator/src/cli-client/help-text.ts';

const WASMESH = fileURLToPath(new URL('../wasmesh.mjs', import.meta.url));

const words = (text: string): string => text.replace(/\s+/g, ' ').trim();
const widest = (text: string): number => Math.max(...text.split('\n').map((l) => l.length));

/** Lines wider than `width` other than shell examples (a line ending in "\" and the next) and lone unbreakable words. */
function tooWide(text: string, width: number): string[] {
  const lines = text.split('\n');
  return lines.filter((l, i) => l.length > width && !l.trimEnd().endsWith('\\') && !(lines[i - 1] ?? '').trimEnd().endsWith('\\') && l.trim().includes(' '));
}

test('helpWidth: the terminal width, 80 when not a terminal, between 40 and 100', () => {
  assert.is(helpWidth({}), 80);
  assert.is(helpWidth({ isTTY: false, columns: 200 }), 80);
  assert.is(helpWidth({ isTTY: true, columns: 120 }), 100);
  assert.is(helpWidth({ isTTY: true, columns: 72 }), 72);
  assert.is(helpWidth({ isTTY: true, columns: 20 }), 40);
  assert.is(helpWidth({ isTTY: true }), 80);
});

/** Runs the CLI from source, its output through pipes (not a terminal). */
async function wasmesh(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [WASMESH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WASMESH_FROM_SOURCE: '1' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out, err };
}

test('wasmesh --help through a pipe: 80 columns, every command and description in it', async () => {
  const { code, out, err } = await wasmesh(['--help']);
  assert.is(code, 0, err);
  assert.ok(widest(out) <= 80, `widest line ${widest(out)}:\n${out}`);
  for (const c of commands) {
    assert.match(out, `  wasmesh ${c.group}${c.verb ? ` ${c.verb}` : ''} `);
    assert.match(words(out), words(c.description));
  }
});

test('a misspelt command gets a did you mean, then the commands', async () => {
  const r = await wasmesh(['aply', '-f', 'x.yaml']);
  assert.is(r.code, 2);
  assert.is(r.out, '');
  assert.match(r.err, /^wasmesh: unknown command "aply" \(did you mean "apply"\?\)\n\nUsage: wasmesh <command>/);
  assert.ok(widest(r.err) <= 80, r.err);
  const verb = await wasmesh(['filter', 'rolback', 'x']);
  assert.is(verb.code, 2);
  assert.match(verb.err, /^wasmesh: unknown command "filter rolback" \(did you mean "rollback"\?\)\n/);
});

test('usage(): fits every width from 40 to 100 and loses no word', () => {
  const flat = words(usage(undefined, 1000));
  for (const width of [40, 60, 80, 100]) {
    const text = usage(undefined, width);
    assert.equal(tooWide(text, width), [], `width ${width}`);
    assert.is(words(text), flat);
  }
  // An argument group in brackets is not split while it fits.
  assert.match(usage('token', 80), /\n {23}\[--namespace NS \[--service-account SA\]\]\n/);
});

test('every command --help wraps to the width, keeping its words; a text that fits is unchanged', async () => {
  for (const c of commands) {
    const text = ((await c.load()) as unknown as { usage?: string }).usage;
    assert.type(text, 'string', `${c.group} ${c.verb} exports its usage`);
    for (const width of [50, 80, 100]) {
      const wrapped = wrapHelp(text!, width);
      assert.equal(tooWide(wrapped, width), [], `${c.group} ${c.verb} at ${width}`);
      assert.is(words(wrapped), words(text!), `${c.group} ${c.verb} at ${width}`);
      if (widest(text!) <= width) assert.is(wrapped, text, `${c.group} ${c.verb} at ${width}`);
    }
  }
});

test('wrapHelp: option descriptions continue in their column; a paragraph stays a paragraph', () => {
  const text = [
    'Runs the thing: a long first sentence that goes on past the width of a narrow terminal for sure,',
    'then a second line of the same paragraph that also goes on and on past the width of it.',
    '',
    '  --data-dir DIR          state: the SQLite store, tokens and everything else (default .wasmesh/orchestrator)',
    '  --listen HOST:PORT      REST API address (default 127.0.0.1:15014)',
    '  - a bullet whose text is long enough to need a second line at sixty columns',
    '',
  ].join('\n');
  assert.is(
    wrapHelp(text, 60),
    [
      'Runs the thing: a long first sentence that goes on past the',
      'width of a narrow terminal for sure, then a second line of',
      'the same paragraph that also goes on and on past the width',
      'of it.',
      '',
      '  --data-dir DIR          state: the SQLite store, tokens',
      '                          and everything else (default',
      '                          .wasmesh/orchestrator)',
      '  --listen HOST:PORT      REST API address (default',
      '                          127.0.0.1:15014)',
      '  - a bullet whose text is long enough to need a second line',
      '    at sixty columns',
      '',
    ].join('\n'),
  );
  assert.equal(fillSynopsis('usage: wasmesh x ', '--a A [--b B | --c C] [--d D]', 11, 40), ['usage: wasmesh x --a A [--b B | --c C]', '           [--d D]']);
});

test.run();
