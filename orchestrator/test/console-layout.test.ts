// The console's graph layout (orchestrator/console/graph.js, plain browser JavaScript; its layout is
// pure and runs in Node): callers left of what they call, one column per hop, a cycle does not loop,
// no two nodes on one spot; labels say rps, errors, p99 or the split.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pathToFileURL } from 'node:url';
import { installPath } from '../../schemas/repo-files.ts';

interface Pos {
  x: number;
  y: number;
  layer: number;
}
interface GraphModule {
  layout(g: { nodes: Array<{ id: string }>; edges: Array<{ from: string; to: string }> }): { pos: Map<string, Pos>; width: number; height: number };
  edgeLabel(e: Record<string, unknown>): string;
  health(e: Record<string, unknown>): string;
}

const load = async (): Promise<GraphModule> => (await import(pathToFileURL(installPath('orchestrator', 'console', 'graph.js')).href)) as GraphModule;

const ids = (...names: string[]) => names.map((id) => ({ id }));

test('layers follow the calls: traffic, productpage, reviews, its versions, ratings', async () => {
  const { layout } = await load();
  const g = {
    nodes: ids('default/traffic/v1', 'svc:productpage', 'default/productpage/v1', 'svc:reviews', 'default/reviews/v1', 'default/reviews/v2', 'svc:ratings', 'default/ratings/v1'),
    edges: [
      { from: 'default/traffic/v1', to: 'svc:productpage' },
      { from: 'svc:productpage', to: 'default/productpage/v1' },
      { from: 'default/productpage/v1', to: 'svc:reviews' },
      { from: 'svc:reviews', to: 'default/reviews/v1' },
      { from: 'svc:reviews', to: 'default/reviews/v2' },
      { from: 'default/reviews/v2', to: 'svc:ratings' },
      { from: 'svc:ratings', to: 'default/ratings/v1' },
    ],
  };
  const { pos, width, height } = layout(g);
  const layer = (id: string) => pos.get(id)!.layer;
  assert.equal(g.nodes.map((n) => layer(n.id)), [0, 1, 2, 3, 4, 4, 5, 6]);
  for (const e of g.edges) assert.ok(pos.get(e.from)!.x < pos.get(e.to)!.x, `${e.from} left of ${e.to}`);
  const spots = new Set([...pos.values()].map((p) => `${p.x},${p.y}`));
  assert.is(spots.size, g.nodes.length, 'no two nodes on one spot');
  for (const p of pos.values()) assert.ok(p.x >= 0 && p.x < width && p.y >= 0 && p.y < height);
});

test('a cycle ends: every node still gets a place', async () => {
  const { layout } = await load();
  const { pos } = layout({ nodes: ids('a', 'b', 'c'), edges: [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'a' }] });
  assert.is(pos.size, 3);
  for (const p of pos.values()) assert.ok(Number.isFinite(p.x) && Number.isFinite(p.y));
});

test('labels and colours', async () => {
  const { edgeLabel, health } = await load();
  assert.is(edgeLabel({ rps: 2.5, errorRate: 0.01, clientErrorRate: 0, p99Ms: 12.3 }), '2.50 rps · err 1.0 % · p99 12 ms');
  assert.is(edgeLabel({ share: 0.9, rps: 18 }), '90.0 % · 18.0 rps');
  assert.is(health({ errorRate: 0, clientErrorRate: 0 }), 'ok');
  assert.is(health({ errorRate: 0.01, clientErrorRate: 0 }), 'warn');
  assert.is(health({ errorRate: 0, clientErrorRate: 0.4 }), 'bad', '4xx count: a denied service is red');
});

test.run();
