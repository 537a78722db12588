// Module metadata through the orchestrator, as a process runs it (SQLite, real listeners): what an
// uploaded module says about how it was made is stored with its version, listed by GET /modules and
// GET /filters/{ns}/{name}, and printed by `wasmesh filter history` and `filter status`. The
// modules are this repository's built filters and a module whose producers the test writes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import { run as filterDeploy } from '../../scripts/cli/filter-deploy.ts';
import { run as filterHistory } from '../../scripts/cli/filter-history.ts';
import { run as filterStatus } from '../../scripts/cli/filter-status.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { addProducers } from '../../wasm/src/producers.ts';
import type { ModuleRecord } from '../src/store/types.ts';
import type { FilterStatusBody } from '../src/http/filters.ts';
import { goodModule } from './support/wasm.ts';

const quiet = { write: () => true };
const repo = new URL('../../', import.meta.url);
const version = async (pkg: string): Promise<string> => (JSON.parse(await readFile(new URL(`node_modules/${pkg}/package.json`, repo), 'utf8')) as { version: string }).version;

const ctx = {} as { root: string; orch: RunningOrchestrator; admin: string; addHeader: string; rusty: string };

async function cli(run: (argv: string[], io: { out: { write(t: string): unknown }; err: { write(t: string): unknown } }) => Promise<number>, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run([...args, '--server', ctx.orch.url, '--token', ctx.admin], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => err.push(t) } });
  return { code, out: out.join(''), err: err.join('') };
}

async function get<T>(path: string): Promise<T> {
  const res = await fetch(`${ctx.orch.url}${path}`, { headers: { authorization: `Bearer ${ctx.admin}` } });
  assert.is(res.status, 200, path);
  return (await res.json()) as T;
}

test.before(async () => {
  ctx.root = await mkdtemp(join(tmpdir(), 'wasmesh-metadata-'));
  const dataDir = join(ctx.root, 'orchestrator');
  ctx.orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: undefined, out: quiet, err: quiet });
  const out: string[] = [];
  if ((await tokenCreate(['--role', 'admin', '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error('token create failed');
  ctx.admin = out.join('').trim();
  ctx.addHeader = new URL('filters/examples/add-header/build/add-header.wasm', repo).pathname;
  assert.ok(existsSync(ctx.addHeader), 'the add-header example is built (npm test builds the filters; or: node scripts/wasmesh.mjs filter build --all)');
  // A module whose producers section names another toolchain (written here, not compiled by it).
  ctx.rusty = join(ctx.root, 'rusty.wasm');
  await writeFile(ctx.rusty, addProducers(await goodModule(4096), {
    language: [{ name: 'Rust', version: '' }],
    'processed-by': [{ name: 'rustc', version: '1.79.0' }],
    sdk: [{ name: 'proxy-wasm-rust-sdk', version: '0.2.2' }],
  }));
});

test.after(async () => {
  await ctx.orch?.close();
  if (ctx.root) await rm(ctx.root, { recursive: true, force: true });
});

test('an upload stores what the module says; history and status print it', async () => {
  const asc = await version('assemblyscript');
  const sdk = await version('@solo-io/proxy-runtime');
  const deployed = await cli(filterDeploy, [ctx.addHeader, '--name', 'hdr', '--version', '1.0.0', '--plugin-name', 'add_header']);
  assert.is(deployed.code, 0, deployed.err);
  const uploaded = await cli(filterDeploy, [ctx.rusty, '--name', 'hdr', '--version', '2.0.0', '--upload-only']);
  assert.is(uploaded.code, 0, uploaded.err);

  const { items } = await get<{ items: ModuleRecord[] }>('/modules?name=hdr');
  assert.equal(items.map((m) => [m.version, m.metadata?.kind, m.metadata?.language, m.metadata?.processedBy, m.metadata?.sdk]), [
    ['1.0.0', 'core', `AssemblyScript ${asc}`, `asc ${asc}`, `@solo-io/proxy-runtime ${sdk}`],
    ['2.0.0', 'core', 'Rust', 'rustc 1.79.0', 'proxy-wasm-rust-sdk 0.2.2'],
  ]);
  const status = await get<FilterStatusBody>('/filters/default/hdr');
  assert.is(status.versions.find((v) => v.current)?.metadata?.language, `AssemblyScript ${asc}`);

  const history = await cli(filterHistory, ['hdr']);
  assert.is(history.code, 0, history.err);
  assert.match(history.out, /VERSION\s+DIGEST\s+BYTES\s+MADE WITH\s+UPLOADED BY/);
  assert.match(history.out, new RegExp(`1\\.0\\.0 .* AssemblyScript ${asc.replace(/\./g, '\\.')} \\(sdk @solo-io/proxy-runtime ${sdk.replace(/\./g, '\\.')}\\) .* serving`));
  assert.match(history.out, /2\.0\.0 .* Rust \(sdk proxy-wasm-rust-sdk 0\.2\.2\) /);

  const shown = await cli(filterStatus, ['hdr']);
  assert.is(shown.code, 0, shown.err);
  assert.ok(shown.out.includes(`made with: AssemblyScript ${asc} (sdk @solo-io/proxy-runtime ${sdk}; by asc ${asc})`), shown.out);
});

test('a module without a producers section is stored as saying nothing, and shown so', async () => {
  const plain = join(ctx.root, 'plain.wasm');
  await writeFile(plain, await goodModule(8192));
  assert.is((await cli(filterDeploy, [plain, '--name', 'plain', '--version', '1.0.0'])).code, 0);
  const { items } = await get<{ items: ModuleRecord[] }>('/modules?name=plain');
  assert.equal(items[0].metadata, { kind: 'core', binaryVersion: 1 });
  const shown = await cli(filterStatus, ['plain']);
  assert.ok(shown.out.includes('made with: language not recorded'), shown.out);
});

test('a store written before metadata was recorded gains the column; its versions show "-"', async () => {
  const dataDir = join(ctx.root, 'old-store');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dataDir, { recursive: true });
  // The module tables as they were before this change (no metadata column), with one version.
  const db = new Database(join(dataDir, 'store.db'));
  db.exec(`
    CREATE TABLE module_blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, bytes BLOB NOT NULL);
    CREATE TABLE module_versions (name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL REFERENCES module_blobs (sha256),
      uploaded_by TEXT NOT NULL, uploaded_at TEXT NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID;
    INSERT INTO module_blobs VALUES ('${'ab'.repeat(32)}', 3, x'010203');
    INSERT INTO module_versions VALUES ('old', '1.0.0', '${'ab'.repeat(32)}', 'admin:x', '2026-01-01T00:00:00.000Z');
  `);
  db.close();
  const store = new SqliteStore({ dataDir });
  try {
    const [old] = await store.listModules('old');
    assert.equal(old, { name: 'old', version: '1.0.0', sha256: 'ab'.repeat(32), size: 3, uploadedBy: 'admin:x', uploadedAt: '2026-01-01T00:00:00.000Z' });
    const bytes = await goodModule(512);
    const rec = await store.putModule('new', '1.0.0', bytes, 'admin:y', { kind: 'core', binaryVersion: 1, language: 'C' });
    assert.equal(rec.metadata, { kind: 'core', binaryVersion: 1, language: 'C' });
    assert.equal((await store.listModules('new'))[0].metadata, { kind: 'core', binaryVersion: 1, language: 'C' });
  } finally {
    await store.close();
  }
  // Opening it again does not add the column twice.
  const again = new SqliteStore({ dataDir });
  assert.is((await again.listModules()).length, 2);
  await again.close();
});

test.run();
