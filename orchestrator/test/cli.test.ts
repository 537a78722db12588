// The API commands of the CLI (apply, get, delete, proxy-status, filter deploy) as a user runs them:
// child processes (node scripts/wasmesh.mjs) against a real orchestrator started in this process on
// free loopback ports with a temporary data dir. Checks outputs and exit codes (0 ok, 1 failure,
// 2 usage) and that failures say what to do.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import { normalizeProxyStatus, syncStatus } from '../src/http/proxy-status.ts';
import { goodModule } from './support/wasm.ts';
import { closedPort, wasmesh, type CliResult } from './support/run-wasmesh.ts';

const quiet = { write: () => true };
const HOST = 'ratings.default.svc.cluster.local';

let root = '';
let dataDir = '';
let orch: RunningOrchestrator;
let server: string[] = [];

/** Runs the CLI from `root`, where .wasmesh/orchestrator/admin-token is (the default token source). */
const cli = (...args: string[]): Promise<CliResult> => wasmesh([...args, ...server], { cwd: root });
const show = (r: CliResult): string => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

const serviceEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: 9001 }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: 9002 }, labels: { version: v2 } }
`;
const destinationRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ${HOST}
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`;
const virtualService = (subset: string, name = 'ratings'): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ${name}
spec:
  hosts: [${HOST}]
  http:
    - route: [{ destination: { host: ${HOST}, subset: ${subset} } }]
`;

test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wasmesh-cli-'));
  dataDir = join(root, '.wasmesh', 'orchestrator');
  orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: quiet });
  server = ['--server', orch.url];
});

test.after(async () => {
  await orch?.close();
  await rm(root, { recursive: true, force: true });
});

test('apply: created, then unchanged, then configured; the admin token comes from .wasmesh/orchestrator/admin-token', async () => {
  await writeFile(join(root, 'mesh.yaml'), [serviceEntry, destinationRule, virtualService('v1')].join('---\n'));
  const first = await cli('apply', '-f', 'mesh.yaml');
  assert.is(first.code, 0, show(first));
  assert.equal(first.stdout.trim().split('\n'), ['serviceentry default/ratings created', 'destinationrule default/ratings created', 'virtualservice default/ratings created']);

  const again = await cli('apply', '-f', 'mesh.yaml');
  assert.is(again.code, 0, show(again));
  assert.match(again.stdout, 'virtualservice default/ratings unchanged');
  assert.match(again.stdout, 'serviceentry default/ratings unchanged');

  await writeFile(join(root, 'vs.yaml'), virtualService('v2'));
  const changed = await cli('apply', '-f', 'vs.yaml');
  assert.is(changed.code, 0, show(changed));
  assert.is(changed.stdout, 'virtualservice default/ratings configured\n');
});

test('apply from a directory and from standard input', async () => {
  const dir = join(root, 'conf');
  await mkdir(dir);
  await writeFile(join(dir, 'a.yaml'), virtualService('v1', 'from-dir'));
  const fromDir = await cli('apply', '-f', 'conf');
  assert.is(fromDir.code, 0, show(fromDir));
  assert.is(fromDir.stdout, 'virtualservice default/from-dir created\n');
  const fromStdin = await wasmesh(['apply', '-f', '-', '-n', 'default', ...server], { cwd: root, input: virtualService('v2', 'from-stdin') });
  assert.is(fromStdin.code, 0, show(fromStdin));
  assert.is(fromStdin.stdout, 'virtualservice default/from-stdin created\n');
});

test('apply of a bad document: exit 1, nothing written, one line per error with document, path and reason', async () => {
  const bad = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
spec:
  hosts: [${HOST}]
  http:
    - route:
        - destination: { host: ${HOST}, subset: v1 }
          weight: 30
        - destination: { host: ${HOST}, subset: v9 }
          weight: 30
`;
  // A good document first: all or nothing means it is not written either.
  await writeFile(join(root, 'bad.yaml'), [virtualService('v1', 'innocent'), bad].join('---\n'));
  const r = await cli('apply', '-f', 'bad.yaml');
  assert.is(r.code, 1, show(r));
  assert.is(r.stdout, '');
  assert.match(r.stderr, 'rejected, nothing was applied');
  const lines = r.stderr.split('\n').filter((l) => l.includes('VirtualService default/broken'));
  assert.ok(lines.length >= 2, show(r));
  // Each names the line of its field in the file, not where the document starts (line 10).
  assert.ok(lines.some((l) => /VirtualService default\/broken \(bad\.yaml#2 line 20\): spec\.http\[0\]\.route\[1\]\.destination\.subset: .*v9/.test(l)), show(r));
  assert.ok(lines.some((l) => /VirtualService default\/broken \(bad\.yaml#2 line 21\): spec\.http\[0\]\.route\[1\]\.weight: .*100/.test(l)), show(r));
  const innocent = await cli('get', 'vs', 'innocent');
  assert.is(innocent.code, 1, 'the good document of the rejected request was not written');

  await writeFile(join(root, 'unsupported.yaml'), virtualService('v1', 'extra').replace('http:', 'bogus: 1\n  http:'));
  const unsupported = await cli('apply', '-f', 'unsupported.yaml');
  assert.is(unsupported.code, 1, show(unsupported));
  assert.match(unsupported.stderr, /VirtualService default\/extra \(unsupported\.yaml#1 line 7\): spec\.bogus: .*bogus/);

  await writeFile(join(root, 'garbage.yaml'), 'kind: [unclosed\n');
  const garbage = await cli('apply', '-f', 'garbage.yaml');
  assert.is(garbage.code, 1, show(garbage));
  assert.match(garbage.stderr, 'garbage.yaml');
});

test('get: tables with per-kind columns, yaml and json that round-trip, -A, not found, unknown kind', async () => {
  const list = await cli('get', 'virtualservices');
  assert.is(list.code, 0, show(list));
  const [header, ...rows] = list.stdout.trim().split('\n');
  assert.match(header!, /^NAMESPACE\s+NAME\s+HOSTS\s+ROUTES\s+AGE$/);
  assert.ok(rows.some((r) => /^default\s+ratings\s+ratings\.default\.svc\.cluster\.local\s+1\s+\d+s$/.test(r)), list.stdout);

  const dr = await cli('get', 'dr');
  assert.match(dr.stdout, /^NAMESPACE\s+NAME\s+HOST\s+SUBSETS\s+AGE\n/);
  assert.match(dr.stdout, /default\s+ratings\s+ratings\.default\.svc\.cluster\.local\s+v1,v2\s+/);

  const yaml = await cli('get', 'VirtualService', 'ratings', '-o', 'yaml');
  assert.is(yaml.code, 0, show(yaml));
  const doc = parseYaml(yaml.stdout) as { kind: string; metadata: { name: string; resourceVersion: string }; spec: { http: { route: { destination: { subset: string } }[] }[] } };
  assert.is(doc.kind, 'VirtualService');
  assert.is(doc.spec.http[0]!.route[0]!.destination.subset, 'v2');

  const json = await cli('get', 'vs', '-o', 'json');
  const parsed = JSON.parse(json.stdout) as { kind: string; items: { metadata: { name: string } }[] };
  assert.is(parsed.kind, 'List');
  assert.ok(parsed.items.some((i) => i.metadata.name === 'ratings'));
  // What get -o yaml printed can be applied again as it is.
  await writeFile(join(root, 'roundtrip.yaml'), yaml.stdout);
  const reapply = await cli('apply', '-f', 'roundtrip.yaml');
  assert.is(reapply.code, 0, show(reapply));
  assert.is(reapply.stdout, 'virtualservice default/ratings unchanged\n');

  await writeFile(join(root, 'other-ns.yaml'), virtualService('v1', 'elsewhere').replace('name: elsewhere', 'name: elsewhere\n  namespace: shop'));
  assert.is((await cli('apply', '-f', 'other-ns.yaml')).code, 0);
  const all = await cli('get', 'vs', '-A');
  assert.match(all.stdout, /shop\s+elsewhere\s+/);
  assert.match(all.stdout, /default\s+ratings\s+/);
  const shop = await cli('get', 'vs', '-n', 'shop');
  assert.match(shop.stdout, /shop\s+elsewhere\s+/);
  assert.not.match(shop.stdout, /default\s+ratings/);
  const empty = await cli('get', 'wasmplugins', '-n', 'nowhere');
  assert.is(empty.code, 0);
  assert.match(empty.stderr, 'No wasmplugins found in namespace nowhere');

  const missing = await cli('get', 'vs', 'nope');
  assert.is(missing.code, 1, show(missing));
  assert.match(missing.stderr, 'VirtualService default/nope not found');
  const unknown = await cli('get', 'envoyfilters');
  assert.is(unknown.code, 2, show(unknown));
  assert.match(unknown.stderr, 'unknown kind "envoyfilters"');
  const typo = await cli('get', 'virtualservce');
  assert.is(typo.code, 2, show(typo));
  assert.match(typo.stderr, 'unknown kind "virtualservce": did you mean "VirtualService"?');
  const usage = await cli('get');
  assert.is(usage.code, 2);
});

test('delete by kind and name, and delete -f; a missing resource is exit 1 unless --ignore-not-found', async () => {
  const byName = await cli('delete', 'vs', 'from-dir');
  assert.is(byName.code, 0, show(byName));
  assert.is(byName.stdout, 'virtualservice default/from-dir deleted\n');
  const again = await cli('delete', 'vs', 'from-dir');
  assert.is(again.code, 1);
  assert.match(again.stderr, 'virtualservice default/from-dir not found');
  assert.is((await cli('delete', 'vs', 'from-dir', '--ignore-not-found')).code, 0);

  const byFile = await cli('delete', '-f', 'other-ns.yaml');
  assert.is(byFile.code, 0, show(byFile));
  assert.is(byFile.stdout, 'virtualservice shop/elsewhere deleted\n');

  // The orchestrator refuses a delete that would break a route: exit 1 with the reason.
  const refused = await cli('delete', 'destinationrule', 'ratings');
  assert.is(refused.code, 1, show(refused));
  assert.match(refused.stderr, 'destinationrule default/ratings refused (400)');
  assert.match(refused.stderr, /subset/);

  assert.is((await cli('delete', 'vs')).code, 2);
});

test('proxy-status with no proxy connected', async () => {
  const r = await cli('proxy-status');
  assert.is(r.code, 0, show(r));
  assert.match(r.stderr, `No proxies connected to ${orch.url}`);
  const json = await cli('proxy-status', '-o', 'json');
  assert.equal(JSON.parse(json.stdout), { items: [] });
});

test('proxy status: SYNCED, STALE and NACKED from what was sent, ACKed and NACKed', () => {
  assert.is(syncStatus({ sent: { version: 'a' }, acked: 'a', latest: 'a' }), 'SYNCED');
  assert.is(syncStatus({ sent: { version: 'a' }, acked: 'a', latest: 'b' }), 'STALE');
  assert.is(syncStatus({ sent: { version: 'b' }, acked: 'a', latest: 'b' }), 'STALE');
  assert.is(syncStatus({ sent: { version: 'b' }, acked: 'a', nacked: { version: 'b' }, latest: 'b' }), 'NACKED');
  assert.is(syncStatus({ acked: 'a', latest: 'a' }), 'SYNCED', 'reconnected with the current version: nothing to send');
  assert.is(syncStatus({}), 'STALE');
  const item = normalizeProxyStatus({
    node: 'web.default~host~1',
    workload: { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' },
    connectedAt: '2025-01-01T00:00:00.000Z',
    sent: { version: 'v2', nonce: 'n', at: '2025-01-01T00:00:01.000Z' },
    acked: 'v1',
    nacked: { version: 'v2', message: 'filter x failed', at: '2025-01-01T00:00:02.000Z' },
    latest: 'v2',
  });
  assert.equal(item, {
    node: 'web.default~host~1',
    workload: 'web',
    namespace: 'default',
    labels: { app: 'web' },
    serviceAccount: 'web',
    connectedSince: '2025-01-01T00:00:00.000Z',
    sent: { version: 'v2', at: '2025-01-01T00:00:01.000Z' },
    acked: 'v1',
    nacked: { version: 'v2', message: 'filter x failed', at: '2025-01-01T00:00:02.000Z' },
    latest: 'v2',
    lastPush: '2025-01-01T00:00:01.000Z',
    status: 'NACKED',
    reason: 'the proxy refused v2: filter x failed; it runs v1',
  });
  // A config the orchestrator cannot build is never SYNCED, whatever the proxy ACKed.
  assert.is(syncStatus({ sent: { version: 'a' }, acked: 'a', latest: 'a', buildErrors: ['WasmPlugin default/x: cannot'] }), 'STALE');
  const stale = normalizeProxyStatus({ workload: { name: 'web', namespace: 'default' }, sent: { version: 'v1', at: '' }, acked: 'v1', latest: 'v1', buildErrors: ['translation failed: boom'] });
  assert.is(stale!.status, 'STALE');
  assert.is(stale!.reason, "the orchestrator cannot build this proxy's latest config: translation failed: boom; it runs v1");
});

test('filter deploy: uploads the module and creates, keeps, then updates the WasmPlugin by digest', async () => {
  await writeFile(join(root, 'f1.wasm'), await goodModule(1024));
  await writeFile(join(root, 'f2.wasm'), await goodModule(2048));
  const first = await cli('filter', 'deploy', 'f1.wasm', '--name', 'tagger', '--version', '1.0.0', '--phase', 'AUTHN', '--config', '{"tag":"a"}');
  assert.is(first.code, 0, show(first));
  const sha1 = /module tagger@1\.0\.0 uploaded \(sha256:([0-9a-f]{64}), \d+ bytes\)/.exec(first.stdout)?.[1];
  assert.ok(sha1, first.stdout);
  assert.match(first.stdout, `wasmplugin default/tagger created (url digest:sha256:${sha1})`);
  const wp = JSON.parse((await cli('get', 'wasmplugin', 'tagger', '-o', 'json')).stdout) as { spec: Record<string, unknown> };
  assert.equal(wp.spec, { url: `digest:sha256:${sha1}`, phase: 'AUTHN', pluginConfig: { tag: 'a' } });

  const same = await cli('filter', 'deploy', 'f1.wasm', '--name', 'tagger', '--version', '1.0.0');
  assert.is(same.code, 0, show(same));
  assert.match(same.stdout, 'module tagger@1.0.0 unchanged (already uploaded)');
  assert.match(same.stdout, 'wasmplugin default/tagger unchanged');

  const next = await cli('filter', 'deploy', 'f2.wasm', '--name', 'tagger', '--version', '1.1.0');
  assert.is(next.code, 0, show(next));
  const sha2 = /sha256:([0-9a-f]{64})/.exec(next.stdout)?.[1];
  assert.match(next.stdout, `wasmplugin default/tagger configured (url digest:sha256:${sha2})`);
  const table = await cli('get', 'wp');
  assert.match(table.stdout, /^NAMESPACE\s+NAME\s+MODULE\s+PHASE\s+PRIORITY\s+AGE\n/);
  assert.match(table.stdout, new RegExp(`default\\s+tagger\\s+sha256:${sha2!.slice(0, 12)}\\s+AUTHN\\s+-\\s+`), 'the update kept the phase');

  const conflict = await cli('filter', 'deploy', 'f2.wasm', '--name', 'tagger', '--version', '1.0.0');
  assert.is(conflict.code, 1, show(conflict));
  assert.match(conflict.stderr, 'deploy with a new --version');

  await writeFile(join(root, 'junk.wasm'), 'not wasm at all');
  const junk = await cli('filter', 'deploy', 'junk.wasm', '--name', 'junk', '--version', '1');
  assert.is(junk.code, 1, show(junk));
  assert.match(junk.stderr, 'the orchestrator rejected junk.wasm');
  assert.match(junk.stderr, 'module junk@1');

  assert.is((await cli('filter', 'deploy', 'f1.wasm', '--version', '1')).code, 2, 'missing --name');
  assert.is((await cli('filter', 'deploy', 'f1.wasm', '--name', 'x', '--version', '1', '--phase', 'LATE')).code, 2);
  const noFile = await cli('filter', 'deploy', 'missing.wasm', '--name', 'x', '--version', '1');
  assert.is(noFile.code, 1);
  assert.match(noFile.stderr, 'cannot read missing.wasm: ENOENT');
});

test('a wrong or missing token: exit 1, says which token was used and how to get one', async () => {
  const flag = await cli('get', 'vs', '--token', '-not-a-token'); // a token may start with "-" (base64url)
  assert.is(flag.code, 1, show(flag));
  assert.match(flag.stderr, '(401): invalid or revoked token');
  assert.match(flag.stderr, 'token used: --token');
  assert.match(flag.stderr, 'admin-token');
  assert.match(flag.stderr, 'wasmesh token create');

  const env = await wasmesh(['get', 'vs', ...server], { cwd: root, env: { WASMESH_TOKEN: 'also-wrong' } });
  assert.is(env.code, 1, show(env));
  assert.match(env.stderr, 'token used: $WASMESH_TOKEN');

  // Elsewhere there is no .wasmesh/orchestrator/admin-token: no token at all.
  const none = await wasmesh(['apply', '-f', join(root, 'vs.yaml'), ...server], { cwd: tmpdir() });
  assert.is(none.code, 1, show(none));
  assert.match(none.stderr, 'missing bearer token');
  assert.match(none.stderr, 'token used: none (no --token, no $WASMESH_TOKEN, no .wasmesh/orchestrator/admin-token)');
  // ... unless told where the data dir is.
  const dir = await wasmesh(['get', 'vs', '--data-dir', dataDir, ...server], { cwd: tmpdir() });
  assert.is(dir.code, 0, show(dir));

  // A viewer token reads but cannot write.
  const out: string[] = [];
  assert.is(await tokenCreate(['--role', 'viewer', '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet), 0);
  const viewer = out.join('').trim();
  const read = await cli('get', 'vs', '--token', viewer);
  assert.is(read.code, 0, show(read));
  const write = await cli('apply', '-f', 'vs.yaml', '--token', viewer);
  assert.is(write.code, 1, show(write));
  assert.match(write.stderr, 'forbidden (403)');
  assert.match(write.stderr, 'use an admin token');
  assert.is((await readFile(join(dataDir, 'admin-token'), 'utf8')).trim().length > 20, true);
});

test('orchestrator not running: exit 1 and how to start it', async () => {
  const port = await closedPort();
  for (const args of [['get', 'vs'], ['apply', '-f', 'vs.yaml'], ['proxy-status'], ['delete', 'vs', 'x'], ['filter', 'deploy', 'f1.wasm', '--name', 'a', '--version', '1']]) {
    const r = await wasmesh([...args, '--server', `http://127.0.0.1:${port}`], { cwd: root });
    assert.is(r.code, 1, `${args.join(' ')}\n${show(r)}`);
    assert.match(r.stderr, `cannot reach the orchestrator at http://127.0.0.1:${port} (ECONNREFUSED)`);
    assert.match(r.stderr, 'is the orchestrator running? start it with `wasmesh orchestrator`');
  }
});

test('usage errors exit 2; the commands are listed in the help', async () => {
  const noFiles = await cli('apply');
  assert.is(noFiles.code, 2);
  assert.match(noFiles.stderr, 'no files: name at least one with -f');
  assert.is((await cli('apply', '-f', 'x.yaml', '--bogus')).code, 2);
  assert.is((await cli('proxy-status', '-o', 'xml')).code, 2);
  const help = await wasmesh(['--help']);
  for (const c of ['wasmesh apply', 'wasmesh get', 'wasmesh delete', 'wasmesh proxy-status', 'wasmesh filter deploy']) assert.match(help.stdout, c);
  const applyHelp = await wasmesh(['apply', '--help']);
  assert.is(applyHelp.code, 0);
  // Wrapped to the width of the terminal (80 through a pipe): the phrase may span a line break.
  assert.match(applyHelp.stdout.replace(/\s+/g, ' '), 'all or nothing');
  assert.ok(Math.max(...applyHelp.stdout.split('\n').map((l) => l.length)) <= 80, applyHelp.stdout);
});

test.run();
