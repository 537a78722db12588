// Help text fitted to the terminal: `wasmesh --help` and every command's --help (and the usage
// printed after a usage error) are wrapped to the width of the terminal they are printed on, 80
// columns when it is not a terminal (a pipe, a file), and never wider than 100 even on a wide one.
//
// The texts are written for about 100 columns with hand-made layout: option tables whose
// descriptions start in a column, bullet lists, continuation lines, shell examples. Wrapping keeps
// that layout: a line that fits is left alone; a longer one breaks between words, its continuation
// starts in its description column (a bullet's text, else its own indent), and what overflows flows
// into the next line when that line continues the same text (same indent), so a paragraph stays a
// paragraph instead of alternating long and short lines. Shell examples (lines ending in a
// backslash, and the line after) are never broken; nor is a word longer than the width.

export const DEFAULT_HELP_WIDTH = 80;
export const MAX_HELP_WIDTH = 100;
const MIN_HELP_WIDTH = 40;
/** A description column leaving fewer columns than this is not kept for continuation lines. */
const MIN_DESCRIPTION = 20;

/** The width help printed on `stream` is wrapped to: its columns if a terminal (40..100), else 80. */
export function helpWidth(stream: object = process.stdout): number {
  const s = stream as { isTTY?: boolean; columns?: number };
  if (s.isTTY !== true || typeof s.columns !== 'number' || !(s.columns > 0)) return DEFAULT_HELP_WIDTH;
  return Math.max(MIN_HELP_WIDTH, Math.min(MAX_HELP_WIDTH, s.columns));
}

/** `text` wrapped to the width of the terminal `stream` is (see helpWidth). */
export function helpFor(text: string, stream: object = process.stdout): string {
  return wrapHelp(text, helpWidth(stream));
}

/**
 * `prefix` then `text`'s words (or the given words) filled to `width`, continuation lines indented
 * by `hang` columns. A word longer than the room is put on a line of its own, unbroken (the prefix
 * too, if the first word does not fit after it).
 */
export function fillLine(prefix: string, text: string | readonly string[], hang: number, width: number): string[] {
  const words = typeof text === 'string' ? text.split(/ +/).filter((w) => w !== '') : text;
  const lines: string[] = [];
  let current = prefix;
  for (const word of words) {
    const sep = current === '' || current.endsWith(' ') ? '' : ' ';
    if (current.trim() !== '' && current.length + sep.length + word.length > width) {
      lines.push(current.trimEnd());
      current = ' '.repeat(hang) + word;
    } else {
      current += sep + word;
    }
  }
  lines.push(current);
  return lines;
}

/**
 * A synopsis's words, an optional or alternative group in brackets kept whole:
 * `--role R [--namespace NS [--service-account SA]]` -> `--role`, `R`, `[--namespace NS [--service-account SA]]`.
 */
export function synopsisWords(args: string): string[] {
  const words: string[] = [];
  let depth = 0;
  for (const word of args.split(/ +/).filter((w) => w !== '')) {
    if (depth > 0) words[words.length - 1] += ` ${word}`;
    else words.push(word);
    for (const ch of word) {
      if (ch === '[' || ch === '{' || ch === '(') depth++;
      else if ((ch === ']' || ch === '}' || ch === ')') && depth > 0) depth--;
    }
  }
  return words;
}

/** A synopsis filled like fillLine, broken between its groups (see synopsisWords) where they fit. */
export function fillSynopsis(prefix: string, args: string, hang: number, width: number): string[] {
  const words = synopsisWords(args).flatMap((w) => (hang + w.length > width ? w.split(' ') : [w]));
  return fillLine(prefix, words, hang, width);
}

/** `  --flag ARG      description`: indent, a term (single spaces inside), two or more spaces, the rest. */
const TWO_COLUMN = /^( {2,})(\S(?:\S| (?! ))*)( {2,})(\S.*)$/;
const BULLET = /^( *)([-*] )(.*)$/;
/** `usage: wasmesh ...` or a further synopsis line under it (`       wasmesh ...`). */
const SYNOPSIS = /^( *)((?:usage:? +)?)wasmesh /i;

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

function isShell(line: string | undefined): boolean {
  return line !== undefined && line.trimEnd().endsWith('\\');
}

/** `text` with every line wider than `width` wrapped, keeping its layout (see the file comment). */
export function wrapHelp(text: string, width: number): string {
  const lines = text.split('\n');
  const out: string[] = [];
  /** Words that overflowed the previous line, and the indent they continue at. */
  let carry: { words: string; hang: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    const shell = isShell(line) || isShell(lines[i - 1]);
    let carried = false;
    if (carry) {
      const continues = line.trim() !== '' && !shell && indentOf(line) === carry.hang && !TWO_COLUMN.test(line) && !BULLET.test(line);
      if (continues) {
        line = `${' '.repeat(carry.hang)}${carry.words} ${line.trim()}`;
        carried = true;
      } else {
        out.push(...fillLine(' '.repeat(carry.hang), carry.words, carry.hang, width));
      }
      carry = undefined;
    }
    if (line.length <= width || shell) {
      out.push(line);
      continue;
    }
    const indent = indentOf(line);
    const synopsis = carried ? null : SYNOPSIS.exec(line);
    if (synopsis) {
      // Broken between its optional or alternative groups, continued under the command's arguments.
      out.push(...fillSynopsis(' '.repeat(indent), line.trim(), synopsis[1]!.length + synopsis[2]!.length + 4, width));
      continue;
    }
    let prefix = ' '.repeat(indent);
    let body = line.trim();
    let hang = indent;
    const twoColumn = TWO_COLUMN.exec(line);
    const bullet = BULLET.exec(line);
    if (twoColumn && width - (line.length - twoColumn[4]!.length) >= MIN_DESCRIPTION) {
      prefix = line.slice(0, line.length - twoColumn[4]!.length);
      body = twoColumn[4]!;
      hang = prefix.length;
    } else if (bullet) {
      prefix = bullet[1]! + bullet[2]!;
      body = bullet[3]!;
      hang = prefix.length;
    } else if (twoColumn) {
      hang = indent + 4;
    }
    const filled = fillLine(prefix, body, hang, width);
    if (filled.length > 1) {
      // What did not fit on the first line flows into the next one if it continues this text.
      out.push(filled[0]!);
      carry = { words: filled.slice(1).map((l) => l.trim()).join(' '), hang };
    } else {
      out.push(...filled);
    }
  }
  if (carry) out.push(...fillLine(' '.repeat(carry.hang), carry.words, carry.hang, width));
  return out.join('\n');
}
