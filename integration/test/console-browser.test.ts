// The web console in a real browser (Debian's chromium through puppeteer-core) against the demo mesh
// (`wasmesh demo`, its processes, its tokens): the graph shows reviews split 90/10 from the sidecars'
// own reports, a denied service shows its errors, the workloads page shows every sidecar SYNCED, a
// viewer token cannot press the buttons that act (and the API refuses them anyway), and an admin
// starts a rollout from the Filters page, watches it progress, then rolls it back. A screenshot of
// each page is written to a temporary dir (printed; not committed).
//
// Skips, saying so loudly, only when no chromium can be found or installed (scripts/chromium.sh).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { CHROMIUM_ARGS, chromium, signIn, skipLoudly } from './support/browser.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  from: string;
  to: string;
  share: string;
  rps: string;
  clientErrorRate: string;
  mtls: string;
}

const edgeRows = (page: Page): Promise<Row[]> =>
  page.$$eval('#edge-table tbody tr', (rows) => rows.map((r) => ({ ...(r as HTMLElement).dataset }) as unknown as Row));

/** Polls `read` until `ok` holds or `ms` pass; returns the last value. */
async function until<T>(ms: number, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await read();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(500);
    v = await read();
  }
  return v;
}

test('the console against the demo mesh: 90/10 graph, denied errors, workloads, rollout and rollback, a viewer cannot act', async () => {
  const found = chromium();
  if (!found.bin) return skipLoudly("the console's browser test", found.reason);
  const shots = mkdtempSync(path.join(tmpdir(), 'wasmesh-console-shots-'));
  const child = spawn(process.execPath, [wasmesh, 'demo', '--rps', '20'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  let browser: Browser | undefined;
  const output = () => `stdout:\n${stdout.slice(-3000)}\nstderr:\n${stderr.slice(-3000)}`;
  try {
    for (const deadline = Date.now() + 120_000; !stdout.includes('Ctrl-C stops every process') && Date.now() < deadline && child.exitCode === null; ) await sleep(200);
    const m = /Open the web console: (http:\/\/127\.0\.0\.1:\d+\/console\/) and paste a token: the admin token in (\S+), or the read-only one in (\S+)\n/.exec(stdout);
    assert.ok(m, output());
    const [, url, adminFile, viewerFile] = m!;
    const adminToken = readFileSync(adminFile!, 'utf8').trim();
    const viewerToken = readFileSync(viewerFile!, 'utf8').trim();
    const api = (p: string, init: RequestInit = {}) => fetch(new URL(p, url), { ...init, headers: { authorization: `Bearer ${adminToken}`, ...(init.headers ?? {}) }, signal: AbortSignal.timeout(10_000) });

    browser = await puppeteer.launch({ executablePath: found.bin, headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => void d.accept());
    await signIn(page, url!, adminToken);
    assert.is(await page.$eval('#who', (e) => e.textContent), 'admin');
    assert.not.match(page.url(), adminToken, 'the token is not in the URL');

    // Graph: reviews split 90/10 between v1 and v2, over mTLS, from the sidecars' reports.
    await page.goto(`${url}#graph`);
    await page.select('#window', '30');
    const split = (rows: Row[]) => {
      const to = (v: string) => rows.find((r) => r.from === 'svc:reviews.default.svc.cluster.local' && r.to === `default/reviews/${v}`);
      return { v1: Number(to('v1')?.share ?? 0), v2: Number(to('v2')?.share ?? 0), v3: Number(to('v3')?.share ?? 0), rps: Number(to('v1')?.rps ?? 0) + Number(to('v2')?.rps ?? 0) };
    };
    // At 20 rps the 30 s window holds ~600 reviews calls: 10 % is 60 ± 15 (3 sigma).
    let rows = await until(60_000, () => edgeRows(page), (r) => split(r).rps > 10);
    let s = split(rows);
    await sleep(25_000); // a full window after the first rates
    rows = await edgeRows(page);
    s = split(rows);
    assert.ok(s.v1 > 0.85 && s.v1 < 0.95 && s.v2 > 0.05 && s.v2 < 0.15 && s.v3 === 0, `reviews split: ${JSON.stringify(s)} rows ${JSON.stringify(rows)}`);
    const toProductpage = rows.find((r) => r.from === 'default/traffic/v1' && r.to === 'svc:productpage.default.svc.cluster.local');
    assert.ok(toProductpage && Number(toProductpage.mtls) === 1, `traffic -> productpage over mTLS: ${JSON.stringify(toProductpage)}`);
    assert.ok((await page.$$('svg.graph g.edge')).length >= rows.length, 'every edge is drawn');
    await page.screenshot({ path: path.join(shots, 'graph.png'), fullPage: true });

    // A denied service: every call to ratings is 403, and the graph says so.
    const deny = readFileSync(path.join(repoRoot, 'scripts/demo/try/deny-ratings.yaml'), 'utf8');
    assert.is((await api('/apply', { method: 'POST', body: deny, headers: { 'content-type': 'application/yaml' } })).status, 200);
    const denied = await until(30_000, () => edgeRows(page), (r) => r.some((x) => x.to === 'svc:ratings.default.svc.cluster.local' && Number(x.clientErrorRate) > 0.5));
    assert.ok(denied.some((x) => x.to === 'svc:ratings.default.svc.cluster.local' && Number(x.clientErrorRate) > 0.5), `ratings denied: ${JSON.stringify(denied)}`);
    await page.screenshot({ path: path.join(shots, 'graph-denied.png'), fullPage: true });
    assert.is((await api('/apis/authorizationpolicies/default/deny-ratings', { method: 'DELETE' })).status, 200);

    // Workloads: every sidecar SYNCED, with its certificate and filter chain.
    await page.goto(`${url}#workloads`);
    const statuses = await until(20_000, () => page.$$eval('#proxy-table tbody tr', (r) => r.map((x) => (x as HTMLElement).dataset.status)), (st) => st.length >= 7 && st.every((x) => x === 'SYNCED'));
    assert.ok(statuses.length >= 7 && statuses.every((x) => x === 'SYNCED'), JSON.stringify(statuses));
    const certs = await page.$$eval('#proxy-table tbody tr td:nth-child(4)', (c) => c.map((x) => x.textContent));
    assert.ok(certs.every((c) => /^in \d+/.test(c ?? '')), `certificate expiry shown: ${JSON.stringify(certs)}`);
    assert.match(await page.$eval('#proxy-table', (t) => t.textContent ?? ''), /demo-header/);
    assert.ok((await page.$$('#proxy-table svg.spark')).length >= 4, 'small charts of the callers’ rps and p99');
    await page.screenshot({ path: path.join(shots, 'workloads.png'), fullPage: true });

    // Config: a dry run of a change says what it would do and writes nothing.
    await page.goto(`${url}#config`);
    await page.waitForSelector('.resources details, .resources .empty');
    const v3 = readFileSync(path.join(repoRoot, 'scripts/demo/try/reviews-v3.yaml'), 'utf8');
    await page.$eval('#editor', (e, text) => void ((e as HTMLTextAreaElement).value = text), v3);
    await page.click('#validate');
    await page.waitForFunction(() => document.querySelector('#apply-result')?.textContent?.includes('Valid'), { timeout: 10_000 });
    await page.screenshot({ path: path.join(shots, 'config.png'), fullPage: true });

    // Filters: a viewer sees the plugin and cannot press a button; the API refuses it as well.
    const viewerContext = await browser.createBrowserContext();
    const viewerPage = await viewerContext.newPage();
    await viewerPage.setViewport({ width: 1400, height: 900 });
    viewerPage.on('dialog', (d) => void d.accept());
    await signIn(viewerPage, url!, viewerToken);
    await viewerPage.goto(`${url}#filters`);
    await viewerPage.waitForSelector('section.filter[data-plugin="default/demo-header"] button.rollback', { timeout: 15_000 });
    const disabled = await viewerPage.$$eval('section.filter button', (b) => b.map((x) => (x as HTMLButtonElement).disabled));
    assert.ok(disabled.length >= 2 && disabled.every(Boolean), `viewer buttons: ${JSON.stringify(disabled)}`);
    await viewerPage.click('section.filter[data-plugin="default/demo-header"] button.rollback').catch(() => undefined);
    await viewerPage.goto(`${url}#config`);
    await viewerPage.waitForSelector('#apply');
    assert.ok(await viewerPage.$eval('#apply', (b) => (b as HTMLButtonElement).disabled));
    const refused = await viewerPage.evaluate(async () => (await fetch('/filters/default/demo-header/rollback', { method: 'POST', headers: { authorization: `Bearer ${sessionStorage.getItem('wasmesh.console.token')}`, 'content-type': 'application/json' }, body: '{}' })).status);
    assert.is(refused, 403);
    await viewerPage.goto(`${url}#filters`);
    await viewerPage.waitForSelector('section.filter button.rollback');
    await viewerPage.screenshot({ path: path.join(shots, 'filters-viewer.png'), fullPage: true });
    const unchanged = (await (await api('/filters/default/demo-header')).json()) as { current: { version?: string }; history: unknown[] };
    assert.is(unchanged.current.version, '1.0.0', 'the viewer changed nothing');

    // Filters as admin: upload a version, start a rollout to 1.1.0 from the page, watch it progress, then roll back.
    await page.goto(`${url}#filters`);
    const card = 'section.filter[data-plugin="default/demo-header"]';
    await page.waitForSelector(`${card} input.upload-file`, { timeout: 15_000 });
    const file = await page.$(`${card} input.upload-file`);
    await (file as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(path.join(repoRoot, 'filters/telemetry/build/telemetry.wasm'));
    await page.type(`${card} input.upload-version`, '9.9.9');
    await page.click(`${card} button.upload`);
    const uploaded = await until(10_000, async () => ((await (await api('/modules?name=add-header')).json()) as { items: Array<{ version: string }> }).items.map((m) => m.version), (v) => v.includes('9.9.9'));
    assert.ok(uploaded.includes('9.9.9'), `uploaded from the page: ${JSON.stringify(uploaded)}`);
    // Each version says what it was made with, as read at upload (the producers section).
    const madeWith = await until(10_000, () => page.$$eval(`${card} table.versions td.made-with`, (cells) => cells.map((c) => c.textContent ?? '')), (cells) => cells.length >= 3);
    assert.ok(madeWith.length >= 3 && madeWith.every((c) => /^core, AssemblyScript \d/.test(c)), `made with: ${JSON.stringify(madeWith)}`);
    await page.waitForSelector(`${card} button.start:not([disabled])`, { timeout: 15_000 });
    await page.select(`${card} select.rollout-to`, '1.1.0');
    await page.$eval(`${card} input.rollout-steps`, (e) => void ((e as HTMLInputElement).value = '50,100'));
    await page.$eval(`${card} input.rollout-interval`, (e) => void ((e as HTMLInputElement).value = '4'));
    await page.click(`${card} button.start`);
    const phase = () => page.$eval(`${card}`, (c) => c.querySelector('.rollout-phase')?.textContent ?? '').catch(() => '');
    const progressing = await until(15_000, phase, (p) => p === 'Progressing' || p === 'Succeeded');
    assert.ok(progressing === 'Progressing' || progressing === 'Succeeded', `rollout phase: ${progressing}; ${await page.$eval('.message', (e) => e.textContent)}`);
    await page.screenshot({ path: path.join(shots, 'filters-rollout.png'), fullPage: true });
    const done = await until(40_000, phase, (p) => p !== 'Progressing');
    assert.is(done, 'Succeeded', `rollout: ${JSON.stringify(await (await api('/filters/default/demo-header/rollout')).json())}`);
    await until(10_000, () => page.$eval(`${card} .current-version`, (e) => e.textContent), (v) => v === '1.1.0');
    assert.is(await page.$eval(`${card} .current-version`, (e) => e.textContent), '1.1.0');
    await page.click(`${card} button.rollback`);
    const back = await until(15_000, () => page.$eval(`${card} .current-version`, (e) => e.textContent), (v) => v === '1.0.0');
    assert.is(back, '1.0.0', 'rolled back from the page');
    await page.screenshot({ path: path.join(shots, 'filters-rolled-back.png'), fullPage: true });
    assert.equal(pageErrors, [], 'no script error on any page');
    process.stderr.write(`console screenshots: ${shots}\n`);
  } finally {
    await browser?.close().catch(() => undefined);
    const signalGroup = (sig: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, sig);
    };
    signalGroup('SIGINT');
    const timer = setTimeout(() => signalGroup('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
});

test.run();
