// The service graph as SVG: a layered layout written for this page (see RATIONALE.md, "The console").
// Callers on the left, each node one column right of the furthest node that calls it; within a
// column, nodes sorted by where their callers are (fewer crossings). Edge labels carry rps, error
// rate, p99 and mTLS (caller -> service) or the traffic split (service -> version).
import { s, pct, ms, rps } from './dom.js';

export const NODE_W = 130;
export const COL_GAP = 140;
export const ROW_H = 90;

/** Positions for every node: { id -> { x, y, layer } }, and the drawing's size. Pure (tests run it in Node). */
export function layout(graph) {
  const ids = graph.nodes.map((n) => n.id);
  const preds = new Map(ids.map((id) => [id, []]));
  for (const e of graph.edges) if (preds.has(e.to) && e.from !== e.to) preds.get(e.to).push(e.from);
  const layer = new Map(ids.map((id) => [id, 0]));
  // Longest path from the roots; a cycle stops growing after as many rounds as there are nodes.
  for (let round = 0; round < ids.length; round++) {
    let changed = false;
    for (const e of graph.edges) {
      if (!layer.has(e.from) || !layer.has(e.to) || e.from === e.to) continue;
      const want = layer.get(e.from) + 1;
      if (want > layer.get(e.to) && want <= ids.length) {
        layer.set(e.to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const id of [...ids].sort()) {
    const l = layer.get(id);
    (columns[l] ??= []).push(id);
  }
  const pos = new Map();
  let rows = 0;
  columns.forEach((col, l) => {
    if (!col) return;
    if (l > 0) {
      const score = (id) => {
        const ys = preds.get(id).map((p) => pos.get(p)?.row).filter((y) => y !== undefined);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
      };
      col.sort((a, b) => score(a) - score(b) || (a < b ? -1 : 1));
    }
    col.forEach((id, row) => pos.set(id, { x: 20 + l * (NODE_W + COL_GAP), y: 40 + row * ROW_H, layer: l, row }));
    rows = Math.max(rows, col.length);
  });
  return { pos, width: 40 + columns.length * (NODE_W + COL_GAP), height: 60 + rows * ROW_H };
}

/** Green without errors, orange under 5 %, red past it (5xx and 4xx together). */
export function health(edge) {
  const bad = (edge.errorRate ?? 0) + (edge.clientErrorRate ?? 0);
  return bad === 0 ? 'ok' : bad < 0.05 ? 'warn' : 'bad';
}

export function edgeLabel(e) {
  if (e.share !== undefined) return `${pct(e.share)} · ${rps(e.rps)}`;
  const errors = (e.errorRate ?? 0) + (e.clientErrorRate ?? 0);
  return `${rps(e.rps)} · err ${pct(errors)} · p99 ${ms(e.p99Ms)}`;
}

export function nodeLabel(n) {
  return n.kind === 'service' ? n.name.split('.')[0] : `${n.name}${n.version ? ` ${n.version}` : ''}`;
}

/** An <svg> of the graph. */
export function renderGraph(graph) {
  const { pos, width, height } = layout(graph);
  const svg = s('svg', { class: 'graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'service graph' });
  svg.append(
    s('defs', {},
      s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' })),
    ),
  );
  for (const e of graph.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W;
    const y1 = a.y + 15;
    const x2 = b.x;
    const y2 = b.y + 15;
    const mx = (x1 + x2) / 2;
    const secure = e.mtls >= 0.999 ? 'mtls' : e.mtls > 0 ? 'partial-mtls' : 'plaintext';
    const g = s('g', { class: `edge ${health(e)} ${secure}`, dataset: { from: e.from, to: e.to } });
    g.append(s('path', { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    const security = secure === 'mtls' ? 'mTLS' : secure === 'partial-mtls' ? `mTLS ${pct(e.mtls)}` : 'plaintext';
    g.append(s('title', {}, `${edgeLabel(e)} · ${security}`));
    const y = (y1 + y2) / 2;
    if (e.share !== undefined) {
      g.append(s('text', { x: mx, y: y - 4, 'text-anchor': 'middle' }, edgeLabel(e)));
    } else {
      // Two short lines: the columns stay narrow enough for the whole mesh to fit a screen.
      g.append(s('text', { x: mx, y: y - 14, 'text-anchor': 'middle' }, `${rps(e.rps)} · p99 ${ms(e.p99Ms)}`));
      g.append(s('text', { x: mx, y: y - 2, 'text-anchor': 'middle', class: 'mtls-label' }, `err ${pct((e.errorRate ?? 0) + (e.clientErrorRate ?? 0))} · ${security}`));
    }
    svg.append(g);
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const g = s('g', { class: `node ${n.kind}`, dataset: { id: n.id }, transform: `translate(${p.x} ${p.y})` });
    g.append(s('rect', { width: NODE_W, height: 30, rx: n.kind === 'service' ? 15 : 3 }));
    g.append(s('text', { x: NODE_W / 2, y: 19, 'text-anchor': 'middle' }, nodeLabel(n)));
    g.append(s('text', { x: NODE_W / 2, y: 44, 'text-anchor': 'middle', class: 'sub' }, n.kind === 'service' ? 'service' : n.namespace));
    svg.append(g);
  }
  return svg;
}
