// The console's Config editor and its long time windows in a real browser (Debian's chromium through
// puppeteer-core), against an orchestrator listening on a free loopback port (no mesh needed: the
// editor validates through the orchestrator's dry run, and the graph's traffic is fed to its
// TrafficStats with a driven clock, hours of reports in a moment):
// - errors are marked on their lines: a gutter marker, the line highlighted, the field underlined
//   from its column, the message at the end of the line; the marks follow the textarea's scrolling;
//   a click on an error selects its field; edits dim the marks until the dry run that runs once
//   typing pauses; valid text clears them; a YAML syntax error is marked at its line too;
// - the graph's window selector offers 1 h and 6 h, and the 6 h graph and the workloads' charts
//   come from the 1 min buckets.
// Screenshots go to a temporary dir (printed; not committed). Skips loudly without chromium.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import type { EdgeStatsMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { buildApp } from '../../orchestrator/src/app.ts';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import { TrafficStats } from '../../orchestrator/src/console/traffic-stats.ts';
import { CHROMIUM_ARGS, chromium, signIn, skipLoudly } from './support/browser.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';
// Two errors: resolution (line 7, column 3) and a weight over 100 (line 20, column 7).
const BAD = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [${REVIEWS}]
  location: MESH_INTERNAL
  resolution: SOMETIMES
  ports: [{ number: 9080, name: http, protocol: HTTP }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: { host: reviews }
      weight: 150
`;

const rawProxy = (node: string) => ({
  node,
  workload: { name: 'productpage', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' },
  connectedAt: '2026-01-01T00:00:00.000Z',
  sent: { version: 'a'.repeat(64), nonce: 'n', at: '2026-01-01T00:00:01.000Z' },
  acked: 'a'.repeat(64),
  latest: 'a'.repeat(64),
  filters: { inbound: [], outbound: [] },
});

const BOUNDS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];
function edge(version: string, requests: number): EdgeStatsMessage {
  const buckets = new Array<number>(BOUNDS.length + 1).fill(0);
  buckets[3] = requests;
  return { destination_service: REVIEWS, destination_namespace: 'default', destination_app: 'reviews', destination_version: version, mtls: true, requests, errors: 0, client_errors: 0, latency_buckets: buckets };
}

/** Sets the editor's text as typing would (an input event). */
const setText = (page: Page, text: string) =>
  page.$eval('#editor', (e, t) => {
    const ta = e as HTMLTextAreaElement;
    ta.value = t;
    ta.dispatchEvent(new Event('input', { bubbles: true }));
  }, text);

const marks = (page: Page) =>
  page.$$eval('.code-editor .mark-text', (els) =>
    els.map((e) => ({ line: Number((e as HTMLElement).dataset.line), squiggle: e.querySelector('.squiggle')?.textContent ?? '', lens: e.querySelector('.lens')?.textContent ?? '' })),
  );

test('the Config editor marks errors on their lines; the graph and charts reach back 6 h', async () => {
  const found = chromium();
  if (!found.bin) return skipLoudly("the console editor's browser test", found.reason);
  const shots = mkdtempSync(path.join(tmpdir(), 'wasmesh-console-editor-shots-'));
  const store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  // Three hours of reports from two productpage proxies, every 2 s, ending now: 9 calls to v1 and
  // 1 to v2 per report and proxy (10 rps for the workload).
  const clock = { now: Date.now() - 3 * 3_600_000 };
  const traffic = new TrafficStats({ now: () => clock.now });
  const end = clock.now + 3 * 3_600_000;
  for (let k = 0; clock.now <= end; k++, clock.now += 2_000) {
    for (const node of ['productpage-1', 'productpage-2']) traffic.record(node, { source_namespace: 'default', source_app: 'productpage', source_version: 'v1', latency_bounds_ms: BOUNDS, cert_not_after: '', edges: [edge('v1', 9 * k), edge('v2', k)] });
  }
  clock.now = end;
  const app = buildApp({ store, tokens, rolloutLog: () => {}, traffic, proxyStatus: () => [rawProxy('productpage-1'), rawProxy('productpage-2')] });
  let browser: Browser | undefined;
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/console/`;
    browser = await puppeteer.launch({ executablePath: found.bin, headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await signIn(page, url, admin);

    // Errors marked where they are, after the dry run that runs once typing pauses.
    await page.goto(`${url}#config`);
    await page.waitForSelector('.code-editor #editor');
    await setText(page, BAD);
    await page.waitForFunction(() => document.querySelectorAll('.code-editor .gutter-mark').length === 2, { timeout: 10_000 });
    const found2 = await marks(page);
    assert.equal(found2.map((m) => [m.line, m.squiggle]), [
      [7, 'resolution'],
      [20, 'weight'],
    ]);
    assert.match(found2[0]!.lens, 'spec.resolution: must be one of NONE, STATIC, DNS (got "SOMETIMES")');
    assert.match(found2[1]!.lens, 'spec.http[0].route[0].weight: must be <= 100 (got 150)');
    assert.equal(await page.$$eval('.code-editor .gutter-mark', (g) => g.map((x) => (x as HTMLElement).dataset.line)), ['7', '20']);
    assert.match(await page.$eval('#apply-result', (e) => e.textContent ?? ''), /line 7:3 spec\.resolution/);

    // The marks sit on their lines of the textarea, and follow its scrolling.
    const geometry = () =>
      page.$eval('#editor', (e) => {
        const ta = e as HTMLTextAreaElement;
        const box = ta.getBoundingClientRect();
        const line = document.querySelector('.code-editor .mark-line[style]')!.getBoundingClientRect();
        const gutter = document.querySelector('.code-editor .gutter-mark')!.getBoundingClientRect();
        const squiggle = document.querySelector('.code-editor .squiggle')!.getBoundingClientRect();
        const lineHeight = parseFloat(getComputedStyle(ta).lineHeight);
        const padTop = parseFloat(getComputedStyle(ta).paddingTop);
        const padLeft = parseFloat(getComputedStyle(ta).paddingLeft);
        // Where the textarea draws "  resolution": its text's own metrics.
        const ctx = document.createElement('canvas').getContext('2d')!;
        ctx.font = getComputedStyle(ta).font;
        return {
          expectedTop: box.top + padTop + 6 * lineHeight - ta.scrollTop,
          lineTop: line.top,
          gutterTop: gutter.top,
          squiggleLeft: squiggle.left,
          expectedLeft: box.left + padLeft + ctx.measureText('  ').width - ta.scrollLeft,
          squiggleWidth: squiggle.width,
          expectedWidth: ctx.measureText('resolution').width,
        };
      });
    const heights = await page.$eval('.code-editor', (e) => [e.getBoundingClientRect().height, e.querySelector('textarea')!.getBoundingClientRect().height, e.querySelector('.gutter')!.getBoundingClientRect().height]);
    assert.ok(Math.abs(heights[0]! - heights[1]! - 2) < 1 && Math.abs(heights[2]! - heights[1]!) < 1, `the textarea sets the editor's height (lines past it are clipped): ${JSON.stringify(heights)}`);
    let g = await geometry();
    assert.ok(Math.abs(g.lineTop - g.expectedTop) < 1 && Math.abs(g.gutterTop - g.expectedTop) < 1, JSON.stringify(g));
    assert.ok(Math.abs(g.squiggleLeft - g.expectedLeft) < 1 && Math.abs(g.squiggleWidth - g.expectedWidth) < 1, JSON.stringify(g));
    await page.screenshot({ path: path.join(shots, 'config-errors.png'), fullPage: true });
    await page.$eval('#editor', (e) => {
      (e as HTMLTextAreaElement).scrollTop = 40;
      e.dispatchEvent(new Event('scroll'));
    });
    await page.waitForFunction(() => (document.querySelector('.code-editor .overlay') as HTMLElement).style.transform.includes('-40px'));
    g = await geometry();
    assert.ok(Math.abs(g.lineTop - g.expectedTop) < 1 && Math.abs(g.gutterTop - g.expectedTop) < 1, `scrolled: ${JSON.stringify(g)}`);

    // A click on an error selects its field.
    await page.click('#error-list li.jump[data-line="20"]');
    const selected = await page.$eval('#editor', (e) => {
      const ta = e as HTMLTextAreaElement;
      return ta.value.slice(ta.selectionStart, ta.selectionEnd);
    });
    assert.is(selected, 'weight');

    // Typing dims the marks until the next dry run; a fix clears them.
    await page.focus('#editor');
    await page.keyboard.press('End');
    await page.keyboard.type(' ');
    assert.ok(await page.$('.code-editor.stale'), 'marks dimmed while the text differs from what was validated');
    await setText(page, BAD.replace('SOMETIMES', 'STATIC').replace('weight: 150', 'weight: 100'));
    await page.waitForFunction(() => document.querySelector('#apply-result')?.textContent?.includes('Valid'), { timeout: 10_000 });
    assert.is((await marks(page)).length, 0);
    assert.is(await page.$('.code-editor.stale'), null);

    // A YAML syntax error is marked at its line and column too.
    await setText(page, 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: x }\nspec:\n  hosts: [a\n');
    await page.waitForFunction(() => document.querySelectorAll('.code-editor .gutter-mark').length > 0, { timeout: 10_000 });
    const syntax = await marks(page);
    assert.ok(syntax.length > 0 && syntax.every((m) => m.line >= 5 && /invalid YAML at line \d+, column \d+/.test(m.lens)), JSON.stringify(syntax));
    await page.screenshot({ path: path.join(shots, 'config-syntax.png'), fullPage: true });

    // The graph over 6 h: from 1 min buckets, 10 rps over the 3 h the proxies reported.
    await page.goto(`${url}#graph`);
    const windows = await page.$$eval('#window option', (o) => o.map((x) => [(x as HTMLOptionElement).value, x.textContent]));
    assert.equal(windows.slice(-2), [
      ['3600', 'last 1 h'],
      ['21600', 'last 6 h'],
    ]);
    await page.select('#window', '21600');
    await page.waitForFunction(() => document.querySelector('#resolution')?.textContent === '(from 1 min buckets)', { timeout: 10_000 });
    const rows = await page.$$eval('#edge-table tbody tr', (r) => r.map((x) => ({ ...(x as HTMLElement).dataset })));
    const caller = rows.find((r) => r.from === 'default/productpage/v1' && r.to === `svc:${REVIEWS}`);
    assert.ok(caller && Math.abs(Number(caller.rps) - 10) < 0.01, JSON.stringify(rows));
    const v2 = rows.find((r) => r.to === 'default/reviews/v2');
    assert.ok(v2 && Math.abs(Number(v2.share) - 0.1) < 1e-9, JSON.stringify(v2));
    await page.screenshot({ path: path.join(shots, 'graph-6h.png'), fullPage: true });

    // The workloads' charts over 6 h: 6 minutes a point.
    await page.goto(`${url}#workloads`);
    await page.waitForSelector('#proxy-table svg.spark', { timeout: 10_000 });
    const points = await page.$eval('#proxy-table svg.spark path', (p) => (p.getAttribute('d') ?? '').split(/[ML]/).filter((x) => x.trim() !== '').length);
    assert.is(points, 30, '3 h of reports at 6 minutes a point');
    await page.screenshot({ path: path.join(shots, 'workloads-6h.png'), fullPage: true });

    assert.equal(pageErrors, [], 'no script error');
    process.stderr.write(`console editor screenshots: ${shots}\n`);
  } finally {
    await browser?.close().catch(() => undefined);
    await app.close();
    await store.close();
  }
});

test.run();
