// The Config page's YAML editor: a plain textarea with a gutter of line numbers, and the validator's
// errors marked where they are: a marker in the gutter, the line highlighted, the field's key
// underlined from its column, and the message at the end of the line. No editor library: the
// marks are drawn in layers behind the (transparent) textarea, in the same font and line height,
// and follow its scrolling. Errors come from POST /apply?dryRun=true, whose errors carry the line
// and column of their field in the text (mesh/src/yaml-text.ts); an error without one is listed only.
import { h, clear } from './dom.js';

/** Must match the CSS (.code-editor: 18px lines, 4px top padding). */
const LINE_PX = 18;
const PAD_TOP = 4;

/** "/spec/http/0/route" -> "spec.http[0].route" (as the CLI prints a field path). */
export function formatPath(pointer) {
  if (!pointer) return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^(0|[1-9][0-9]*)$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/**
 * The errors that have a line, by line (1-based, at most `lineCount`: an error past the end marks
 * the last line), each line's sorted by column; and the ones without a line.
 */
export function markers(errors, lineCount) {
  const byLine = new Map();
  const unplaced = [];
  for (const e of errors ?? []) {
    if (!Number.isInteger(e.line) || e.line < 1) {
      unplaced.push(e);
      continue;
    }
    const line = Math.min(e.line, Math.max(1, lineCount));
    const path = formatPath(e.path);
    const mark = { line, column: Number.isInteger(e.column) && e.column > 0 ? e.column : undefined, text: path ? `${path}: ${e.message}` : e.message, error: e };
    if (!byLine.has(line)) byLine.set(line, []);
    byLine.get(line).push(mark);
  }
  for (const list of byLine.values()) list.sort((a, b) => (a.column ?? 0) - (b.column ?? 0));
  return { byLine, unplaced };
}

/** Where the token at `start` (0-based) ends in `text`: a key, a scalar, at least one character. */
export function tokenEnd(text, start) {
  let i = start;
  while (i < text.length && !/[\s:,{}[\]]/.test(text[i])) i++;
  return Math.max(i, Math.min(text.length, start + 1));
}

/** The editor; `value` as a textarea's. `mark(errors)` draws errors and returns those without a line. */
export function codeEditor({ id, placeholder, label, rows = 18 }) {
  const textarea = h('textarea', { id, rows, wrap: 'off', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', placeholder, 'aria-label': label });
  const numbers = h('div', { class: 'numbers' });
  const gutterMarks = h('div', { class: 'gutter-marks' });
  const gutterInner = h('div', { class: 'gutter-inner' }, numbers, gutterMarks);
  const highlights = h('div', { class: 'highlights' });
  const overlay = h('div', { class: 'overlay' });
  const root = h(
    'div',
    { class: 'code-editor' },
    h('div', { class: 'gutter' }, gutterInner),
    h('div', { class: 'code' }, h('div', { class: 'backdrop', 'aria-hidden': 'true' }, highlights, overlay), textarea),
  );
  let byLine = new Map();
  let shownLines = -1;

  const sync = () => {
    const x = textarea.scrollLeft;
    const y = textarea.scrollTop;
    overlay.style.transform = `translate(${-x}px, ${-y}px)`;
    highlights.style.transform = `translateY(${-y}px)`;
    gutterInner.style.transform = `translateY(${-y}px)`;
  };

  /** Selects the field at line/column and scrolls it into view. */
  const goTo = (line, column) => {
    const lines = textarea.value.split('\n');
    const l = Math.min(Math.max(1, line), lines.length);
    let offset = 0;
    for (let i = 0; i < l - 1; i++) offset += lines[i].length + 1;
    const text = lines[l - 1];
    const start = Math.min(text.length, Math.max(0, (column ?? 1) - 1));
    textarea.focus();
    textarea.setSelectionRange(offset + start, offset + tokenEnd(text, start));
    const top = (l - 1) * LINE_PX;
    if (top < textarea.scrollTop || top + LINE_PX > textarea.scrollTop + textarea.clientHeight) textarea.scrollTop = Math.max(0, top - textarea.clientHeight / 3);
    sync();
  };

  const render = () => {
    const lines = textarea.value.split('\n');
    if (lines.length !== shownLines) {
      shownLines = lines.length;
      numbers.textContent = Array.from({ length: lines.length }, (_, i) => String(i + 1)).join('\n');
    }
    clear(highlights);
    clear(overlay);
    clear(gutterMarks);
    for (const [line, list] of byLine) {
      const top = `${PAD_TOP + (line - 1) * LINE_PX}px`;
      const text = lines[line - 1] ?? '';
      const title = list.map((m) => m.text).join('\n');
      highlights.append(h('div', { class: 'mark-line', style: { top } }));
      const gutterMark = h('div', { class: 'gutter-mark', title, dataset: { line }, style: { top } }, '●');
      gutterMark.addEventListener('click', () => goTo(line, list[0].column));
      gutterMarks.append(gutterMark);
      // The line's text, invisible, so that the underline and the message land where the text is.
      const first = list.find((m) => m.column !== undefined && m.column - 1 < text.length);
      const parts = [];
      if (first) {
        const start = first.column - 1;
        const end = tokenEnd(text, start);
        parts.push(text.slice(0, start), h('span', { class: 'squiggle' }, text.slice(start, end)), text.slice(end));
      } else {
        parts.push(text);
      }
      const more = list.length > 1 ? ` (+${list.length - 1} more)` : '';
      overlay.append(h('div', { class: 'mark-text', dataset: { line }, style: { top } }, ...parts, h('span', { class: 'lens' }, `● ${list[0].text}${more}`)));
    }
    sync();
  };

  textarea.addEventListener('scroll', sync);
  textarea.addEventListener('input', () => {
    // The marks were for the text before this edit: dimmed until the next validation.
    if (byLine.size > 0) root.classList.add('stale');
    render();
  });
  render();

  return {
    root,
    textarea,
    goTo,
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      byLine = new Map();
      root.classList.remove('stale');
      render();
    },
    /** Draws `errors` (from the API); returns the errors that have no line in the text. */
    mark(errors) {
      const m = markers(errors, textarea.value.split('\n').length);
      byLine = m.byLine;
      root.classList.remove('stale');
      root.classList.toggle('has-errors', byLine.size > 0);
      render();
      return m.unplaced;
    },
  };
}
