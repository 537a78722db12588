// Small DOM helpers: every piece of data goes in as text (textContent, attributes), never as HTML.

/** h('div', { class: 'x', onclick: fn }, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

export const pct = (x) => (x === undefined || x === null ? '–' : `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)} %`);
export const ms = (x) => (x === undefined || x === null ? '–' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`);
export const rps = (x) => (x === undefined || x === null ? '–' : `${x.toFixed(x < 10 ? 2 : 1)} rps`);
export const short = (v) => (typeof v === 'string' ? v.slice(0, 12) : '–');

/** "in 23 h" / "expired 5 min ago" */
export function until(iso, now = Date.now()) {
  if (!iso) return '–';
  const d = Date.parse(iso) - now;
  const abs = Math.abs(d);
  const text = abs < 120_000 ? `${Math.round(abs / 1000)} s` : abs < 7_200_000 ? `${Math.round(abs / 60_000)} min` : abs < 172_800_000 ? `${Math.round(abs / 3_600_000)} h` : `${Math.round(abs / 86_400_000)} d`;
  return d >= 0 ? `in ${text}` : `expired ${text} ago`;
}
