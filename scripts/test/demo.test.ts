// Tests for `wasmesh demo`: with --exit-after-ready it starts the orchestrator and the Bookinfo-like
// mesh, waits for a request to go productpage -> reviews -> ratings through the sidecars (mTLS
// STRICT), prints the guide, stops everything and exits 0, leaving no process and no temporary dir.
// The guide's commands run as printed (the fault step among them); `npm start | tee log` and Ctrl-C
// (the output pipe gone, SIGINT to the whole process group) still removes the temporary dir.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const wasmesh = path.join(repoRoot, 'scripts/wasmesh.mjs');

function processesMatching(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
  } catch {
    return [];
  }
}

test('demo --exit-after-ready comes up, prints the guide and leaves nothing behind', async () => {
  const started = Date.now();
  const child = spawn(process.execPath, [wasmesh, 'demo', '--exit-after-ready'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, 90_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const output = `stdout:\n${stdout}\nstderr:\n${stderr}`;
  assert.is(code, 0, output);
  assert.ok(Date.now() - started < 90_000, output);
  assert.match(stdout, /wasmesh demo is up/);
  assert.match(stdout, /curl -H 'host: productpage' http:\/\/127\.0\.0\.1:\d+\/productpage/);
  assert.match(stdout, /Open productpage in a browser, through the ingress gateway: http:\/\/127\.0\.0\.1:\d+\/productpage\n/);
  assert.match(stdout, /Open the web console: http:\/\/127\.0\.0\.1:\d+\/console\/ and paste a token: the admin token in \S+\/admin-token, or the read-only one in \S+\/console-viewer\n/);
  assert.match(stderr, /ingress gateway up: http:\/\/127\.0\.0\.1:\d+\/productpage answers 200/);
  assert.match(stderr, /ingress gateway HTTPS up: https:\/\/localhost:\d+\/productpage answers 200 \(credentialName bookinfo-credential/);
  assert.match(stdout, /Over HTTPS: https:\/\/localhost:\d+\/productpage \(a demo certificate of a CA made for this run; trust it: curl --cacert \S+\/gateway-tls\/ca-cert\.pem https:\/\/localhost:\d+\/productpage/);
  assert.match(stdout, /\/stats\/prometheus/);
  assert.match(stdout, /try\/reviews-v3\.yaml/);
  assert.match(stdout, /\n {2}npx wasmesh proxy-status\n/);
  // Every command runs as printed after npm install: the CLI through npx (no bare `wasmesh`, which
  // is not on PATH), from the checkout the guide cds to, with files that exist there.
  const commands = stdout.split('\n').filter((l) => /^\s+(npx )?wasmesh /.test(l));
  assert.ok(commands.length >= 10, stdout);
  for (const c of commands) assert.match(c, /^ {2}npx wasmesh /, c);
  assert.is(/\n {2}cd (\S+)\n/.exec(stdout)?.[1], repoRoot);
  for (const file of stdout.matchAll(/ -f (\S+)/g)) assert.ok(existsSync(path.join(repoRoot, file[1]!)), `${file[1]} does not exist in the checkout`);
  // The sample answer went through reviews to ratings.
  assert.match(stdout, /sample answer: \{"service":"productpage"/);
  assert.match(stderr, /first request through the mesh end to end/);
  // A filter deployed through the orchestrator served that request; the guide rolls out its next version.
  assert.match(stderr, /served by x-demo-filter: add-header@1\.0\.0/);
  assert.match(stdout, /wasmesh filter rollout demo-header --to 1\.1\.0/);
  // End-user authentication on productpage's /api/*, checked by the demo before the guide shows it.
  assert.match(stderr, /productpage \/api\/v1\/products: no token 403, forged token 401, valid token 200/);
  assert.match(stdout, /authorization: Bearer \$\(cat \S+\/token\)/);
  // Tracing at 100 % to the demo's receiver: one trace through the three hops, checked and printed.
  assert.match(stderr, /trace [0-9a-f]{32}: \d+ spans at http:\/\/127\.0\.0\.1:\d+, productpage -> reviews -> ratings/);
  assert.match(stdout, /\n {2}curl http:\/\/127\.0\.0\.1:\d+\/traces\/[0-9a-f]{32}\n/);
  assert.match(stdout, /\n {12,}reviews\.default CLIENT ratings\/\* 200 [\d.]+ ms {2}span [0-9a-f]{16} parent [0-9a-f]{16}\n {14,}ratings\.default SERVER ratings\/\* 200 /);

  const tmp = /cat (\S+)\/orchestrator\/admin-token/.exec(stdout)?.[1];
  assert.ok(tmp, output);
  assert.not.ok(existsSync(tmp!), `${tmp} was left behind`);
  assert.equal(processesMatching(tmp!), [], 'processes of the demo are still running');
});

/** GET through the demo's traffic sidecar with a Host header. */
function get(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { ...headers, host }, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

/** Runs lines as a user pastes them into a shell (bash, from the home of temporary files, no WASMESH_* set). */
function shell(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.WASMESH_SERVER;
  delete env.WASMESH_TOKEN;
  return new Promise((resolve) => {
    execFile('bash', ['-e', '-c', script], { cwd: tmpdir(), env, timeout: 90_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Sum of a Prometheus counter's samples whose labels contain every `labels` pair. */
function counterSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

test('the running demo splits reviews 90/10 over mTLS, shows it in the metrics, the tour runs as printed, and Ctrl-C after `| tee` stops it all', async () => {
  // Its own process group, as a shell's pipeline is: Ctrl-C signals every process in it.
  const child = spawn(process.execPath, [wasmesh, 'demo', '--rps', '5'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  let tmp: string | undefined;
  try {
    const deadline = Date.now() + 90_000;
    while (!stdout.includes('Ctrl-C stops every process') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    const output = () => `stdout:\n${stdout}\nstderr:\n${stderr}`;
    assert.match(stdout, /wasmesh demo is up/, output());
    tmp = /cat (\S+)\/orchestrator\/admin-token/.exec(stdout)?.[1];
    const port = Number(/curl -H 'host: productpage' http:\/\/127\.0\.0\.1:(\d+)\/productpage/.exec(stdout)?.[1]);
    const admin = (name: string) => Number(new RegExp(`${name}\\s+http://127\\.0\\.0\\.1:(\\d+)/stats/prometheus`).exec(stdout)?.[1]);

    // 80 requests: every one answered, reviews split between v1 and v2 (v3 gets none).
    const versions: Record<string, number> = {};
    for (let i = 0; i < 80; i++) {
      const r = await get(port, 'productpage', '/productpage');
      assert.is(r.status, 200, r.body);
      const v = (JSON.parse(r.body) as { reviews: { version?: string } }).reviews.version ?? 'error';
      versions[v] = (versions[v] ?? 0) + 1;
    }
    assert.is(versions.v3, undefined, JSON.stringify(versions));

    // The printed gateway URL works as a browser sends it: no Host override (Host: 127.0.0.1:<port>).
    const gatewayUrl = /through the ingress gateway: (http:\/\/127\.0\.0\.1:\d+\/productpage)\n/.exec(stdout)?.[1];
    assert.ok(gatewayUrl, output());
    for (let i = 0; i < 5; i++) {
      const res = await fetch(gatewayUrl!, { signal: AbortSignal.timeout(5000) });
      const body = await res.text();
      assert.is(res.status, 200, body);
      assert.match(body, /"service":"productpage"/);
    }
    assert.is((await fetch(gatewayUrl!.replace('/productpage', '/not-exposed'), { signal: AbortSignal.timeout(5000) })).status, 404, 'only the bound routes are exposed');
    // The printed HTTPS URL, trusting the printed CA file as the guide says (its key is 0600 beside it).
    const httpsLine = /Over HTTPS: (https:\/\/localhost:\d+\/productpage) .*curl --cacert (\S+) /.exec(stdout);
    assert.ok(httpsLine, output());
    const caFile = httpsLine![2]!;
    assert.is(statSync(path.join(path.dirname(caFile), 'tls.key')).mode & 0o777, 0o600);
    assert.is(statSync(path.join(path.dirname(caFile), 'ca-key.pem')).mode & 0o777, 0o600);
    const secure = await new Promise<{ status: number; body: string; authorized: boolean }>((resolve, reject) => {
      const req = https.get(httpsLine![1]!, { ca: readFileSync(caFile), agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, authorized: (res.socket as import('node:tls').TLSSocket).authorized }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
    assert.is(secure.status, 200, secure.body);
    assert.ok(secure.authorized, 'the certificate verifies against the printed CA');
    assert.match(secure.body, /"service":"productpage"/);
    assert.ok((versions.v1 ?? 0) >= 56 && (versions.v2 ?? 0) >= 1, `about 90/10: ${JSON.stringify(versions)}`);

    // The sidecars' metrics: Istio's standard request counter, mutual TLS between sidecars.
    const scrape = async (name: string) => (await fetch(`http://127.0.0.1:${admin(name)}/stats/prometheus`)).text();
    const reviewsV1 = counterSum(await scrape('reviews-v1'), 'istio_requests_total', { reporter: 'destination', destination_version: 'v1', connection_security_policy: 'mutual_tls' });
    const reviewsV2 = counterSum(await scrape('reviews-v2'), 'istio_requests_total', { reporter: 'destination', destination_version: 'v2', connection_security_policy: 'mutual_tls' });
    const reviewsV3 = counterSum(await scrape('reviews-v3'), 'istio_requests_total', { reporter: 'destination' });
    assert.ok(reviewsV1 >= versions.v1!, `reviews-v1 counted ${reviewsV1} mTLS requests`);
    assert.ok(reviewsV2 >= versions.v2!, `reviews-v2 counted ${reviewsV2} mTLS requests`);
    assert.is(reviewsV3, 0);

    // The trace receiver's endpoints as the guide prints them: the demo's own traffic is traced too.
    const traceUrl = /\n {2}curl (http:\/\/127\.0\.0\.1:\d+\/traces)\/[0-9a-f]{32}\n/.exec(stdout)?.[1];
    assert.ok(traceUrl, output());
    // Each sidecar exports its spans in its own batches, so a trace's spans arrive over a few seconds:
    // the productpage server span (the last to end) may come after the ratings ones. Wait for it.
    let recent: { traceId: string; spans: number; services: string[] }[] = [];
    let tree = '';
    for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
      recent = (await (await fetch(traceUrl!)).json()) as typeof recent;
      const full = recent.filter((t) => t.services.includes('ratings.default') && t.services.includes('productpage.default'));
      const trees = await Promise.all(full.slice(0, 20).map(async (t) => (await fetch(`${traceUrl}/${t.traceId}`)).text()));
      tree = trees.find((t) => /productpage\.default SERVER productpage\/\* 200/.test(t)) ?? trees[0] ?? '';
      if (/productpage\.default SERVER productpage\/\* 200/.test(tree)) break;
    }
    assert.ok(tree, JSON.stringify(recent.slice(0, 5)));
    assert.match(tree, /productpage\.default SERVER productpage\/\* 200/);

    // The tour's fault step, run as the guide prints it: cd, export, npx wasmesh apply.
    const printed = (pattern: RegExp) => stdout.split('\n').find((l) => pattern.test(l))?.trim() ?? '';
    const script = [printed(/^ {2}cd /), printed(/^ {2}export WASMESH_SERVER=/), printed(/npx wasmesh apply -f \S+delay-jason\.yaml/)].join('\n');
    const applied = await shell(script);
    assert.is(applied.code, 0, `${script}\n${applied.stdout}${applied.stderr}`);
    assert.match(applied.stdout, 'virtualservice default/reviews configured');
    assert.match(applied.stdout, 'virtualservice default/ratings created');
    // jason now meets reviews v2, which calls ratings, and ratings answers him 2 s late.
    let jason = { ms: 0, status: 0, body: '' };
    for (const until = Date.now() + 15_000; Date.now() < until && jason.ms < 2000; ) {
      const t0 = Date.now();
      const r = await get(port, 'productpage', '/productpage', { 'end-user': 'jason' });
      jason = { ms: Date.now() - t0, ...r };
    }
    assert.ok(jason.ms >= 2000, `jason's request took ${jason.ms} ms: the delay never applied`);
    assert.is(jason.status, 200, jason.body);
    const page = JSON.parse(jason.body) as { reviews: { version?: string; ratings?: { error?: string; reviewer1?: number } } };
    assert.is(page.reviews.version, 'v2');
    assert.is(page.reviews.ratings?.reviewer1, 5, 'ratings answered, late');
    const status = await shell([printed(/^ {2}cd /), printed(/^ {2}export WASMESH_SERVER=/), printed(/^ {2}npx wasmesh proxy-status$/)].join('\n'));
    assert.is(status.code, 0, status.stderr);
    assert.match(status.stdout, /^PROXY\s+NAMESPACE\s+VERSION\s+STATUS/);
    assert.match(status.stdout, /\nratings-v1\s+default\s/);
    assert.ok(existsSync(path.join(tmp!, 'orchestrator', 'ca')), 'the CA (and its key) lives in the temporary dir');
  } finally {
    // `npm start | tee log`, then Ctrl-C: tee dies with it, so the demo's output leads nowhere (EPIPE
    // on its next write), and every process of the group gets SIGINT.
    child.stdout.destroy();
    child.stderr.destroy();
    const signalGroup = (sig: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, sig);
    };
    signalGroup('SIGINT');
    const timer = setTimeout(() => signalGroup('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    assert.is(code, 130, `stopped by the signal, not by an error writing to the closed pipe\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  }
  assert.ok(tmp);
  assert.not.ok(existsSync(tmp!), `${tmp} was left behind`);
  assert.equal(processesMatching(tmp!), [], 'processes of the demo are still running');
});

test.run();
