// wasmesh demo: a working mesh in one command. The orchestrator on its embedded SQLite store in a
// temporary data dir, the Bookinfo-like mesh of scripts/demo/mesh.yaml applied through the REST API,
// every service of scripts/demo/service.mjs started under its own sidecar (the logic of `wasmesh run`),
// a traffic generator, and a short guide once a request went through end to end. Ctrl-C (or
// --exit-after-ready) stops every process it started and removes the temporary dir.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { ApiClient } from '../../orchestrator/src/cli-client/client.ts';
import { readDocumentFiles } from '../../mesh/src/documents.ts';
import { builtinModulePath } from '../../mesh/src/translate/builtin-filters.ts';
import { startOrchestrator, type RunningOrchestrator } from './orchestrator.ts';
import { freePort, startWorkload, type RunningWorkload } from './run.ts';
import { DEMO_CREDENTIAL, gatewayDocuments, startDemoGateway, waitForHttps, type DemoGateway } from '../demo/gateway.ts';
import { loadOrCreateServingCertificate } from '../../orchestrator/src/inject/serving-cert.ts';
import { run as filterDeploy } from './filter-deploy.ts';
import { DEMO_FILTER_HEADER, buildDemoFilterVersions } from '../demo/filter-versions.ts';
import { rateLimitServiceEntry, startDemoRedis, type DemoRedis } from '../demo/quota.ts';
import { installPath, installRoot } from '../../schemas/repo-files.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';
import { DemoIssuer } from '../demo/issuer.ts';
import { checkThreeHops, DemoTraceReceiver } from '../demo/traces.ts';
import { randomBytes } from 'node:crypto';

export const usage = `usage: wasmesh demo [--exit-after-ready] [--rps N] [--ready-timeout S]

Starts a demo mesh: the orchestrator (embedded store, temporary data dir), a Bookinfo-like app
(productpage -> details, reviews v1|v2|v3 -> ratings), each service under its own sidecar with mTLS
STRICT, a 90/10 split of reviews between v1 and v2, a traffic generator, and tracing of every request
to a trace receiver in the demo process. Prints a guide once a
request has gone through end to end. Ctrl-C stops everything and removes the temporary dir.

  --exit-after-ready   stop everything and exit 0 once the guide is printed (for tests)
  --rps N              traffic generator rate, requests per second (default 3)
  --ready-timeout S    give up if no request succeeds end to end within S seconds (default 90)
`;

export interface Output {
  write(text: string): unknown;
}

const DEMO_DIR = installPath('scripts', 'demo');
const REPO = installRoot();
const NAMESPACE = 'default';
/** The demo filter's versions: the first is deployed, the guide rolls out the second. */
const DEMO_FILTER_VERSIONS = ['1.0.0', '1.1.0'];

type DemoWorkload = RunningWorkload & { name: string; spec: { service: string; version: string } };

/** The workloads of the demo, started in this order (callees first). */
const WORKLOADS: { service: string; version: string }[] = [
  { service: 'details', version: 'v1' },
  { service: 'ratings', version: 'v1' },
  { service: 'reviews', version: 'v1' },
  { service: 'reviews', version: 'v2' },
  { service: 'reviews', version: 'v3' },
  { service: 'productpage', version: 'v1' },
  { service: 'traffic', version: 'v1' },
];

/** The last lines of every process's output, shown when the demo fails to come up. */
class LogTail implements Output {
  #lines: string[] = [];
  constructor(private readonly prefix: string, private readonly all: string[]) {}
  write(text: string): boolean {
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      this.#lines.push(line);
      this.all.push(`[${this.prefix}] ${line}`);
      if (this.all.length > 200) this.all.splice(0, this.all.length - 200);
    }
    return true;
  }
}

/** GET through a sidecar's outbound listener with a Host header (fetch does not let us set Host). */
export function meshGet(outboundPort: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: outboundPort, path, headers: { ...headers, host }, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message, headers: {} }));
    req.end();
  });
}

/** True when productpage answered 200 with details and reviews, and reviews had ratings (v2/v3). */
function endToEnd(res: { status: number; body: string }): boolean {
  if (res.status !== 200) return false;
  try {
    const page = JSON.parse(res.body) as { details?: { error?: string }; reviews?: { error?: string; ratings?: { error?: string } } };
    return !page.details?.error && !page.reviews?.error && page.reviews?.ratings !== undefined && !page.reviews.ratings.error;
  } catch {
    return false;
  }
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let exitAfterReady: boolean;
  let rps: number;
  let readyTimeoutMs: number;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        'exit-after-ready': { type: 'boolean', default: false },
        rps: { type: 'string', default: '3' },
        'ready-timeout': { type: 'string', default: '90' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(helpFor(usage, out));
      return 0;
    }
    if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}"`);
    exitAfterReady = values['exit-after-ready'];
    rps = Number(values.rps);
    if (!(rps > 0 && rps <= 100)) throw new Error(`--rps must be a number from 0 to 100, got "${values.rps}"`);
    readyTimeoutMs = Number(values['ready-timeout']) * 1000;
    if (!(readyTimeoutMs > 0)) throw new Error(`--ready-timeout must be seconds, got "${values['ready-timeout']}"`);
  } catch (e) {
    err.write(`wasmesh demo: ${(e as Error).message}\n\n${helpFor(usage, err)}`);
    return 2;
  }

  // The demo needs the built-in filters (the orchestrator serves them to every sidecar) and builds its
  // own add-header versions; any other filter under filters/ may be broken (npm start's prestart
  // builds with --keep-going and only warns about it).
  const missing = (['telemetry', 'policy', 'fault'] as const).map((name) => builtinModulePath(name)).filter((file) => !existsSync(file));
  if (missing.length > 0) {
    err.write(`wasmesh demo: the built-in filters are not built (${missing.map((f) => relative(REPO, f)).join(', ')} missing): run npm run build:filters and fix what it reports\n`);
    return 1;
  }

  const started = Date.now();
  // The discovery service runs in this process and logs every proxy connection and certificate on
  // stderr at info level (startOrchestrator takes no logger): keep those out of the guide; they are
  // shown with the other processes' output if the demo fails.
  const logs: string[] = [];
  const xdsLog = new LogTail('orchestrator', logs);
  const stderrWrite = process.stderr.write;
  process.stderr.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
    if (typeof chunk === 'string' && /^\S+ info \[xds\] [^\n]*\n?$/.test(chunk)) return xdsLog.write(chunk);
    return (stderrWrite as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof process.stderr.write;
  // The temporary dir holds the CA's key and every token: it must go on every way out. Output that
  // can no longer be written (`npm start | tee log`, then Ctrl-C: tee is gone, EPIPE) must not stop
  // the cleanup either, and a process that dies anyway (an uncaught error) still kills its children
  // and removes the dir on its way out ('exit' listeners run synchronously).
  const outputGone = (e: Error) => void e;
  process.stdout.on('error', outputGone);
  process.stderr.on('error', outputGone);
  const tmp = mkdtempSync(join(tmpdir(), 'wasmesh-demo-'));
  let orchestrator: RunningOrchestrator | undefined;
  let issuer: DemoIssuer | undefined;
  let traces: DemoTraceReceiver | undefined;
  let redis: DemoRedis | undefined;
  let gateway: DemoGateway | undefined;
  const workloads: DemoWorkload[] = [];
  let stopping: Promise<void> | undefined;
  let removed = false;
  const removeTmp = () => {
    rmSync(tmp, { recursive: true, force: true });
    removed = true;
  };
  const lastResort = () => {
    if (removed) return;
    if (gateway && gateway.process.exitCode === null && gateway.process.signalCode === null) gateway.process.kill('SIGKILL');
    for (const w of workloads) for (const child of [w.app, w.sidecar]) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    removeTmp();
  };
  process.on('exit', lastResort);
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      try {
        await Promise.allSettled([...workloads.map((w) => w.stop()), gateway?.stop()]);
        await orchestrator?.close().catch(() => undefined);
        await issuer?.close().catch(() => undefined);
        await traces?.close().catch(() => undefined);
        redis?.stop();
      } finally {
        removeTmp();
      }
    })());

  // Ctrl-C during start-up stops what is already running.
  let interrupted = false;
  let wake: (() => void) | undefined;
  const starting = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    starting.abort();
    if (!interrupted) err.write(`\nwasmesh demo: ${sig}: stopping every process it started\n`);
    interrupted = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal); // the terminal went away
  const step = (text: string) => err.write(`wasmesh demo: ${text} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);

  try {
    const dataDir = join(tmp, 'orchestrator');
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(join(tmp, 'tokens'));
    // Proxy tokens, one per service account (a running orchestrator reads new tokens too).
    const tokens = TokenStore.open(dataDir);
    const tokenFiles = new Map<string, string>();
    for (const service of new Set([...WORKLOADS.map((w) => w.service), 'istio-ingressgateway'])) {
      const file = join(tmp, 'tokens', service);
      writeFileSync(file, `${tokens.create('proxy', { namespace: NAMESPACE, serviceAccount: service })}\n`, { mode: 0o600 });
      tokenFiles.set(service, file);
    }
    // A read-only token for the web console (the admin token acts too).
    const viewerTokenFile = join(tmp, 'tokens', 'console-viewer');
    writeFileSync(viewerTokenFile, `${tokens.create('viewer')}\n`, { mode: 0o600 });
    const orchestratorLog = new LogTail('orchestrator', logs);
    // Quota: the orchestrator runs the rate-limit service, counting in a throwaway Redis.
    const quotaRedis = startDemoRedis(tmp);
    if ('url' in quotaRedis) redis = quotaRedis;
    else step(`no quota in this demo: ${quotaRedis.reason}`);
    orchestrator = await startOrchestrator({
      ...(redis ? { rateLimit: { redisUrl: redis.url, listen: `127.0.0.1:${await freePort()}` } } : {}),
      dataDir,
      store: 'sqlite',
      listen: { host: '127.0.0.1', port: await freePort() },
      grpcListen: { host: '127.0.0.1', port: await freePort() },
      out: orchestratorLog,
      err: orchestratorLog,
    });
    if (orchestrator.grpcPort === undefined) throw new Error('the orchestrator has no discovery service in this checkout');
    step(`orchestrator up: REST ${orchestrator.url}, discovery 127.0.0.1:${orchestrator.grpcPort}`);

    // The admin token of this orchestrator, not a $WASMESH_TOKEN left over from elsewhere.
    const client = new ApiClient({ server: orchestrator.url, dataDir, token: readFileSync(orchestrator.adminTokenPath, 'utf8').trim() });
    const meshFile = join(DEMO_DIR, 'mesh.yaml');
    const parsed = await readDocumentFiles([meshFile]);
    if (parsed.errors.length > 0) throw new Error(`${meshFile} does not parse: ${JSON.stringify(parsed.errors[0])}`);
    const documents = parsed.documents.map((d) => d.value).filter((v) => v !== null && v !== undefined);
    // The demo's token issuer: its JWKS on loopback; productpage's /api/* requires one of its tokens.
    issuer = await new DemoIssuer().start();
    documents.push(...issuer.documents(NAMESPACE));
    if (orchestrator.rateLimitPort) documents.push(rateLimitServiceEntry(orchestrator.rateLimitPort));
    // Tracing: every sidecar reports every request (100 %) over OTLP/HTTP to a receiver in this process.
    traces = await new DemoTraceReceiver().start();
    documents.push(...traces.documents());
    // The ingress gateway's Gateway and VirtualService (scripts/demo/gateway.ts), on a free port.
    const gatewayPort = await freePort();
    // HTTPS too, with a certificate for localhost of a throwaway CA (key files 0600 in the temp dir,
    // removed with it); the gateway gets it as a TLSSecret (credentialName).
    const httpsPort = await freePort();
    const demoTls = await loadOrCreateServingCertificate(join(tmp, 'gateway-tls'), ['localhost', '127.0.0.1']);
    documents.push(...gatewayDocuments(NAMESPACE, gatewayPort, { port: httpsPort, certPem: demoTls.certPem, keyPem: demoTls.keyPem }));
    await client.request('POST', '/apply', { body: documents });
    step(`applied ${documents.length} resources from ${relative(REPO, meshFile)}, the demo issuer (JWKS ${issuer.jwksUri}) and tracing to ${traces.url}`);

    // Two versions of a real filter for the rollout step of the guide, built while the workloads start.
    const filterVersions = buildDemoFilterVersions(join(tmp, 'filter-src'), DEMO_FILTER_VERSIONS);
    filterVersions.catch(() => undefined);

    const serviceScript = join(DEMO_DIR, 'service.mjs');
    const startOne = async ({ service, version }: { service: string; version: string }): Promise<void> => {
      if (interrupted) return;
      const tail = new LogTail(`${service}-${version}`, logs);
      const w = await startWorkload({
        abort: starting.signal,
        service,
        version,
        namespace: NAMESPACE,
        appPort: await freePort(),
        // The temporary dir on the command line lets anyone (and the test) find the demo's processes.
        command: [process.execPath, serviceScript, `--demo-dir=${tmp}`],
        orchestrator: `127.0.0.1:${orchestrator!.grpcPort}`,
        tokenFile: tokenFiles.get(service)!,
        dataDir: join(tmp, 'proxies', `${service}-${version}`),
        env: { DEMO_RPS: String(rps) },
        stdout: tail,
        stderr: tail,
      });
      workloads.push(Object.assign(w, { name: `${service}-${version}`, spec: { service, version } }));
      if (interrupted) await w.stop();
    };
    // allSettled: on a failure, wait for the others too, so that stopAll sees every process.
    const results = await Promise.allSettled(WORKLOADS.map(startOne));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && !interrupted) throw failed.reason;
    if (interrupted) {
      await stopAll();
      return 130;
    }
    step(`${workloads.length} workloads up, each under its own sidecar`);
    // productpage's answers carry the filter version that served them (WasmPlugin demo-header).
    const modules = await filterVersions;
    const deployLog = new LogTail('filter deploy', logs);
    const connection = ['--server', orchestrator.url, '--token', readFileSync(orchestrator.adminTokenPath, 'utf8').trim()];
    for (const [version, file] of modules) {
      const first = version === DEMO_FILTER_VERSIONS[0];
      const args = first
        ? [file, '--name', 'add-header', '--version', version, '--plugin', 'demo-header', '--selector', 'app=productpage', '--plugin-name', 'add_header', '--config', '{"response":{"x-powered-by":"wasmesh"}}']
        : [file, '--name', 'add-header', '--version', version, '--upload-only'];
      const code = await filterDeploy([...args, ...connection], { out: deployLog, err: deployLog, env: {} });
      if (code !== 0) throw new Error(`wasmesh filter deploy ${args.slice(0, 5).join(' ')} failed`);
    }
    step(`filter add-header ${DEMO_FILTER_VERSIONS.join(' and ')} uploaded; ${DEMO_FILTER_VERSIONS[0]} deployed as WasmPlugin demo-header on productpage`);
    const traffic = workloads.find((w) => w.name === 'traffic-v1')!;

    // Wait for the first request that went productpage -> reviews (v2 or v3) -> ratings.
    const deadline = started + readyTimeoutMs;
    let last: Awaited<ReturnType<typeof meshGet>> = { status: 0, body: '', headers: {} };
    let restarts = 0;
    for (;;) {
      if (interrupted) {
        await stopAll();
        return 130;
      }
      // A process that died during start-up (most likely a free port taken in the meantime by another
      // process) is started again with new ports, twice at most.
      const exitedEarly = workloads.find((w) => w.app.exitCode !== null || w.sidecar.exitCode !== null);
      if (exitedEarly) {
        const why = `${exitedEarly.name} exited during start-up (app: ${exitedEarly.app.exitCode ?? 'running'}, sidecar: ${exitedEarly.sidecar.exitCode ?? 'running'})`;
        if (++restarts > 2) throw new Error(why);
        step(`${why}; starting it again`);
        workloads.splice(workloads.indexOf(exitedEarly), 1);
        await exitedEarly.stop();
        await startOne(exitedEarly.spec);
        continue;
      }
      last = await meshGet(traffic.outboundPort, 'productpage', '/productpage', { 'end-user': 'demo' });
      if (endToEnd(last) && last.headers[DEMO_FILTER_HEADER] === `add-header@${DEMO_FILTER_VERSIONS[0]}`) break;
      if (Date.now() > deadline) throw new Error(`no request succeeded end to end within ${readyTimeoutMs / 1000} s; last answer: ${last.status} ${last.body.slice(0, 300)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    step(`first request through the mesh end to end: productpage -> reviews -> ratings, served by ${DEMO_FILTER_HEADER}: ${String(last.headers[DEMO_FILTER_HEADER])}`);

    // End-user authentication, checked before the guide claims it: no token, a forged one, a valid one.
    const tokenFile = join(tmp, 'token');
    const forgedFile = join(tmp, 'forged-token');
    writeFileSync(tokenFile, `${issuer.token('alice')}\n`, { mode: 0o600 });
    writeFileSync(forgedFile, `${issuer.forged()}\n`, { mode: 0o600 });
    const api = (token?: string) => meshGet(traffic.outboundPort, 'productpage', '/api/v1/products', token ? { authorization: `Bearer ${token}` } : {});
    const jwtChecks = [await api(), await api(readFileSync(forgedFile, 'utf8').trim()), await api(readFileSync(tokenFile, 'utf8').trim())].map((r) => r.status);
    step(`productpage /api/v1/products: no token ${jwtChecks[0]}, forged token ${jwtChecks[1]}, valid token ${jwtChecks[2]}`);
    if (jwtChecks.join(',') !== '403,401,200') throw new Error(`the JWT requirement on productpage /api/* did not hold: ${jwtChecks.join(', ')} (expected 403, 401, 200)`);

    // One trace through the three hops, checked before the guide shows it: a request of our own with a
    // sampled traceparent, until one goes to ratings (reviews v1 does not call it). Only one request in
    // ten goes to v2, so the tries are many (twenty would all miss it one time in nine).
    let traceId = '';
    const tracedDeadline = Date.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      const id = randomBytes(16).toString('hex');
      const res = await meshGet(traffic.outboundPort, 'productpage', '/productpage', { 'end-user': 'demo', traceparent: `00-${id}-${randomBytes(8).toString('hex')}-01` });
      if (endToEnd(res)) {
        traceId = id;
        break;
      }
      if (attempt >= 300 || Date.now() > tracedDeadline) throw new Error(`no traced request went productpage -> reviews -> ratings in ${attempt + 1} tries (30 s at most); last answer: ${res.status} ${res.body.slice(0, 200)}`);
    }
    const traceDeadline = Date.now() + 15_000;
    for (;;) {
      const missing = checkThreeHops(traces.spans(traceId));
      if (missing === undefined) break;
      if (Date.now() > traceDeadline) throw new Error(`trace ${traceId} did not arrive whole at the demo's receiver within 15 s: ${missing}\n${traces.tree(traceId)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    step(`trace ${traceId}: ${traces.spans(traceId).length} spans at ${traces.url}, productpage -> reviews -> ratings, each span the child of the one before`);

    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/productpage`;
    gateway = await startDemoGateway({
      orchestrator: `127.0.0.1:${orchestrator.grpcPort}`,
      tokenFile: tokenFiles.get('istio-ingressgateway')!,
      dataDir: join(tmp, 'proxies', 'istio-ingressgateway'),
      namespace: NAMESPACE,
      adminPort: await freePort(),
      url: gatewayUrl,
      out: new LogTail('istio-ingressgateway', logs),
    });
    step(`ingress gateway up: ${gatewayUrl} answers 200 (Gateway bookinfo-gateway, mTLS into the mesh)`);
    const httpsUrl = `https://localhost:${httpsPort}/productpage`;
    await waitForHttps(httpsUrl, demoTls.caPem);
    step(`ingress gateway HTTPS up: ${httpsUrl} answers 200 (credentialName ${DEMO_CREDENTIAL}, a demo certificate)`);

    out.write(`\nOpen productpage in a browser, through the ingress gateway: ${gatewayUrl}\n`);
    out.write(`Over HTTPS: ${httpsUrl} (a demo certificate of a CA made for this run; trust it: curl --cacert ${demoTls.caFile} ${httpsUrl}, or accept the browser's warning)\n`);
    out.write(`Open the web console: ${orchestrator.url}/console/ and paste a token: the admin token in ${orchestrator.adminTokenPath}, or the read-only one in ${viewerTokenFile}\n`);
    out.write(guide(orchestrator, workloads, traffic.outboundPort, last.body, { tokenFile, forgedFile, jwksUri: issuer.jwksUri }, { url: traces.url, traceId, tree: traces.tree(traceId) }));
    if (!exitAfterReady) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (interrupted) resolve();
      });
    }
    await stopAll();
    step('stopped every process and removed the temporary dir');
    return interrupted ? 130 : 0;
  } catch (e) {
    err.write(`wasmesh demo: ${(e as Error).message}\n`);
    if (logs.length > 0) err.write(`last output of the demo's processes:\n${logs.slice(-40).join('\n')}\n`);
    await stopAll();
    return 1;
  } finally {
    process.stderr.write = stderrWrite;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGHUP', onSignal);
    process.removeListener('exit', lastResort);
    // outputGone stays: an EPIPE may still be on its way, and this process is ending.
  }
}

function guide(orchestrator: RunningOrchestrator, workloads: DemoWorkload[], outbound: number, sample: string, jwt: { tokenFile: string; forgedFile: string; jwksUri: string }, trace: { url: string; traceId: string; tree: string }): string {
  const order = (n: string) => WORKLOADS.findIndex((w) => `${w.service}-${w.version}` === n);
  // Every command is printed to run as it is, after npm install, from the checkout: `npx wasmesh`
  // (the package's own bin), paths relative to the checkout, and a cd there first.
  const tryDir = relative(REPO, join(DEMO_DIR, 'try'));
  const meshFile = relative(REPO, join(DEMO_DIR, 'mesh.yaml'));
  const lines = [
    '',
    '=== wasmesh demo is up ===',
    '',
    'Call the app through the mesh (the traffic generator\'s sidecar, mTLS between sidecars):',
    `  curl -H 'host: productpage' http://127.0.0.1:${outbound}/productpage`,
    `  curl -H 'host: productpage' -H 'end-user: jason' http://127.0.0.1:${outbound}/productpage`,
    `  sample answer: ${sample.slice(0, 200)}${sample.length > 200 ? '...' : ''}`,
    '',
    `End-user authentication: productpage's /api/* needs a JWT from the demo issuer (JWKS ${jwt.jwksUri};`,
    '  RequestAuthentication productpage-jwt + AuthorizationPolicy productpage-api-requires-jwt):',
    `  curl -H 'host: productpage' http://127.0.0.1:${outbound}/api/v1/products                  # no token: 403 RBAC: access denied`,
    `  curl -H 'host: productpage' -H "authorization: Bearer $(cat ${jwt.forgedFile})" http://127.0.0.1:${outbound}/api/v1/products   # forged: 401 Jwt verification fails`,
    `  curl -H 'host: productpage' -H "authorization: Bearer $(cat ${jwt.tokenFile})" http://127.0.0.1:${outbound}/api/v1/products   # valid: 200, user alice`,
    '  npx wasmesh get RequestAuthentication',
    '',
    `Traces: every sidecar reports a span per request (Telemetry mesh-default, 100 %) over OTLP/HTTP to the`,
    `demo's receiver (MeshConfig provider demo-traces); it keeps the last 200 traces:`,
    `  curl ${trace.url}/traces                       # recent traces, newest first`,
    `  curl ${trace.url}/traces/${trace.traceId}`,
    ...trace.tree.trimEnd().split('\n').map((l) => `    ${l}`),
    '',
    'Metrics (Istio-style, per sidecar): /stats/prometheus on each admin port',
    ...[...workloads].sort((a, b) => order(a.name) - order(b.name)).map((w) => `  ${w.name.padEnd(16)} http://127.0.0.1:${w.adminPort}/stats/prometheus   (outbound :${w.outboundPort}, inbound :${w.inboundPort})`),
    '',
    'Talk to the orchestrator (in another shell; npx wasmesh runs this checkout\'s CLI):',
    `  cd ${REPO.replace(/\/$/, '')}`,
    `  export WASMESH_SERVER=${orchestrator.url} WASMESH_TOKEN=$(cat ${orchestrator.adminTokenPath})`,
    '  npx wasmesh proxy-status',
    '  npx wasmesh get ServiceEntry',
    '  npx wasmesh get WorkloadEntry            # the sidecars that registered themselves',
    '',
    `Things to try (the YAML they apply is in ${tryDir}):`,
    `  npx wasmesh apply -f ${join(tryDir, 'reviews-v3.yaml')}     # every reviews request to v3`,
    `  npx wasmesh apply -f ${meshFile}             # back to the 90/10 split`,
    `  npx wasmesh apply -f ${join(tryDir, 'delay-jason.yaml')}    # jason: reviews v2, and ratings answers him 2 s late`,
    `  curl -s -w ' %{time_total}s\\n' -H 'host: productpage' -H 'end-user: jason' http://127.0.0.1:${outbound}/productpage`,
    `  npx wasmesh apply -f ${join(tryDir, 'deny-ratings.yaml')}   # every call to ratings: 403 (jason's answer shows it)`,
    ...(orchestrator.rateLimitPort
      ? [`  npx wasmesh apply -f ${join(tryDir, 'quota-productpage.yaml')}   # mesh-wide quota: 30 a minute per end-user (429 past it)`]
      : ['  (no quota: redis-server is missing; bash scripts/redis.sh install)']),
    `  npx wasmesh delete AuthorizationPolicy deny-ratings; npx wasmesh delete VirtualService ratings; npx wasmesh delete RateLimitPolicy productpage-quota; npx wasmesh apply -f ${meshFile}`,
    '',
    `Roll out a new filter version (productpage runs the add-header filter as WasmPlugin demo-header;`,
    `add-header ${DEMO_FILTER_VERSIONS[1]} is uploaded and differs in the ${DEMO_FILTER_HEADER} header it stamps):`,
    '  npx wasmesh filter status demo-header',
    `  npx wasmesh filter rollout demo-header --to ${DEMO_FILTER_VERSIONS[1]} --steps 10,50,100 --interval 10s   # canary with a progress bar`,
    `  curl -s -o /dev/null -D - -H 'host: productpage' http://127.0.0.1:${outbound}/productpage | grep ${DEMO_FILTER_HEADER}`,
    '  npx wasmesh filter history demo-header',
    `  npx wasmesh filter rollback demo-header                  # back to the version before`,
    '',
    'Ctrl-C stops every process the demo started and removes its temporary dir.',
    '',
  ];
  return `${lines.join('\n')}\n`;
}
