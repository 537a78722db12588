// Hostile variations of valid input: values with wrong types, odd strings, huge numbers, deep
// nesting; text with flipped, cut, repeated and inserted pieces; and the valid documents to start
// from (schemas/examples).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocuments } from '../../../../mesh/src/documents.ts';
import type { Random } from './fuzz.ts';

const EXAMPLES = fileURLToPath(new URL('../../../../schemas/examples/', import.meta.url));

/** Every example file's text, and its documents (valid as one set: they refer to each other). */
export function examples(): { texts: string[]; documents: Record<string, unknown>[] } {
  const files = readdirSync(EXAMPLES).filter((n) => n.endsWith('.yaml')).sort();
  const texts = files.map((n) => readFileSync(join(EXAMPLES, n), 'utf8'));
  const documents = texts.flatMap((t, i) => parseDocuments(t, files[i]!).documents.map((d) => d.value as Record<string, unknown>));
  return { texts, documents };
}

/**
 * The example documents an orchestrator accepts: all but the file:// WasmPlugin, written for a
 * standalone proxy (a managed proxy cannot load a file, so the orchestrator refuses it).
 */
export function managedExamples(): Record<string, unknown>[] {
  return examples().documents.filter((d) => !(d.kind === 'WasmPlugin' && String((d.spec as { url?: unknown } | undefined)?.url).startsWith('file://')));
}

export const ODD_STRINGS = [
  '',
  ' ',
  '\u0000',
  '\u0007\u001b[31m',
  '\r\n\r\n',
  '\ud800',
  '\udfff\ud800',
  '\u202eevil',
  '\ufeff',
  '😀'.repeat(50),
  'ǅ\u0301\u0301\u0301',
  '../../etc/passwd',
  '%00%2e%2e%2f',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  "'; DROP TABLE resources; --",
  '*',
  '.*(a+)+$',
  '(((((((((((((((((((((((((a)))))))))))))))))))))))))',
  'a'.repeat(300),
  '__proto__',
  'constructor',
  'default/reviews',
  'sha256:' + 'a'.repeat(64),
  'file:///etc/shadow',
  'module://x@1.0.0',
  '1e999',
  '-0',
  'true',
  'null',
  '~',
];

export const ODD_NUMBERS = [0, -0, -1, 1.5, 2 ** 31, 2 ** 53 + 1, -(2 ** 63), 1e308, 5e-324, Number.MAX_SAFE_INTEGER, 65536, 101, -100];

export function randomScalar(r: Random): unknown {
  switch (r.int(6)) {
    case 0:
      return r.pick(ODD_STRINGS);
    case 1:
      return r.pick(ODD_NUMBERS);
    case 2:
      return r.chance(0.5);
    case 3:
      return null;
    case 4:
      return randomString(r, r.int(40));
    default:
      return r.int(1000);
  }
}

export function randomString(r: Random, length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) {
    const roll = r.next();
    // Mostly printable ASCII, some control characters, some of the rest of Unicode (lone surrogates too).
    s += roll < 0.7 ? String.fromCharCode(0x20 + r.int(95)) : roll < 0.85 ? String.fromCharCode(r.int(0x20)) : String.fromCodePoint(0x80 + r.int(0x10ff7f));
  }
  return s;
}

export function randomValue(r: Random, depth = 0): unknown {
  if (depth > 3 || r.chance(0.5)) return randomScalar(r);
  if (r.chance(0.5)) return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
  return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.chance(0.3) ? r.pick(ODD_STRINGS) : randomString(r, 1 + r.int(8)), randomValue(r, depth + 1)]));
}

export function nested(depth: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { n: v };
  return v;
}

/** A deep copy of `value` with 1 to 3 random changes somewhere inside it. */
export function mutateValue(r: Random, value: unknown): unknown {
  const copy = structuredClone(value);
  const root = { v: copy };
  for (let n = 1 + r.int(3); n > 0; n--) {
    // Walk down to a random container and change one of its entries.
    let parent: Record<string, unknown> | unknown[] = root;
    let key: string | number = 'v';
    for (let steps = r.int(6); steps > 0; steps--) {
      const here: unknown = (parent as Record<string | number, unknown>)[key];
      if (typeof here !== 'object' || here === null) break;
      const keys: Array<string | number> = Array.isArray(here) ? here.map((_, i) => i) : Object.keys(here);
      if (keys.length === 0) break;
      parent = here as Record<string, unknown>;
      key = r.pick(keys as (string | number)[]);
    }
    const target = parent as Record<string | number, unknown>;
    switch (r.int(9)) {
      case 0:
        if (Array.isArray(target)) target.splice(Number(key), 1);
        else if (target !== root) delete target[key];
        break;
      case 1:
        target[key] = randomScalar(r);
        break;
      case 2:
        target[key] = randomValue(r);
        break;
      case 3:
        target[key] = nested(50 + r.int(100));
        break;
      case 4:
        target[key] = Array.isArray(target[key]) ? { ...(target[key] as unknown[]) } : [target[key]];
        break;
      case 5:
        target[key] = 'x'.repeat(r.pick([1000, 100_000, 1_100_000]));
        break;
      case 6:
        target[key] = Array.from({ length: r.pick([100, 10_000]) }, () => randomScalar(r));
        break;
      case 7:
        if (!Array.isArray(target)) target[r.pick(ODD_STRINGS) || 'unknownField'] = randomValue(r);
        break;
      default:
        target[key] = r.pick(ODD_NUMBERS);
    }
  }
  return root.v;
}

const TEXT_INSERTS = ['&a ', '*a', '*zz', '[', ']', '{', '}', '- ', ': ', '? ', '---\n', '...\n', '%YAML 1.1\n', '%TAG ! tag:x,2000:\n', '!!binary ', '!!set ', '!!omap ', '!!timestamp ', '!!int ', '!!float ', '!!str ', '!<tag:yaml.org,2002:map> ', '<<: ', '|\n', '>-\n', '\t', '\u0000', '\ufeff', '"\\u', "'", '"', '#', '@', '`', '\r', '\n  ', ',', '.inf', '.nan', '0x', '0o7', '1e400', '2001-13-45T99:99:99Z', '~', '&x [*x]', '{"a":', ']]]]', '[[[[[[[[[[', '\u2028', '\ud800'];

/** `text` with 1 to 4 random edits: characters flipped, pieces inserted, cut, repeated, or the text truncated. */
export function mutateText(r: Random, text: string): string {
  let s = text;
  for (let n = 1 + r.int(4); n > 0; n--) {
    const at = r.int(s.length + 1);
    switch (r.int(7)) {
      case 0:
        s = s.slice(0, at) + String.fromCharCode(r.int(0x80)) + s.slice(at + 1);
        break;
      case 1:
        s = s.slice(0, at) + r.pick(TEXT_INSERTS) + s.slice(at);
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at + r.int(50));
        break;
      case 3: {
        const piece = s.slice(at, at + r.int(200));
        s = s.slice(0, at) + piece.repeat(2 + r.int(30)) + s.slice(at);
        break;
      }
      case 4:
        s = s.slice(0, at);
        break;
      case 5:
        s = s.slice(0, at) + randomString(r, r.int(20)) + s.slice(at);
        break;
      default: {
        // Re-indent a line: YAML's structure is in its indentation.
        const lines = s.split('\n');
        const i = r.int(lines.length);
        lines[i] = ' '.repeat(r.int(8)) + lines[i]!.trimStart();
        s = lines.join('\n');
      }
    }
  }
  return s;
}

/** A billion laughs: nine levels of nine aliases, about 9^9 strings expanded. */
export function billionLaughs(name = 'bomb', namespace = 'default'): string {
  const rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  const names = 'abcdefghi';
  for (let i = 1; i < names.length; i++) rows.push(`${names[i]}: &${names[i]} [${Array(9).fill(`*${names[i - 1]}`).join(',')}]`);
  return `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n  hosts: [${name}]\n  lols:\n    ${rows.join('\n    ')}\n`;
}
