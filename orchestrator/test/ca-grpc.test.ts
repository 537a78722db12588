// CreateCertificate and WatchTrustBundle through a real grpc-js client against the discovery server:
// the identity comes from the proxy token's binding, other identities and other roles are refused,
// ttl is honoured, and root rotation reaches watchers. openssl verifies what was issued.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { discoveryDefinition, type CertificateRequest, type CertificateResponse, type DiscoveryClient, type TrustBundleMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { CertificateAuthority } from '../src/certs/ca.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { startXdsServer, type XdsServer } from '../src/xds/server.ts';
import { run as runCli, startOrchestrator } from '../../scripts/cli/orchestrator.ts';

const run = promisify(execFile);
const quiet = () => undefined;

interface Ctx {
  dir: string;
  ca: CertificateAuthority;
  tokens: TokenStore;
  server: XdsServer;
  client: DiscoveryClient;
  proxyA: string;
}
const ctx = {} as Ctx;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'wasmesh-ca-grpc-'));
}

async function makeCsr(dir: string, san?: string): Promise<string> {
  const name = `csr-${Math.random().toString(16).slice(2)}`;
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${name}.key`), '-subj', '/', ...(san ? ['-addext', `subjectAltName=${san}`] : []), '-out', join(dir, `${name}.csr`)]);
  return readFileSync(join(dir, `${name}.csr`), 'utf8');
}

function file(dir: string, pems: string[]): string {
  const path = join(dir, `f-${Math.random().toString(16).slice(2)}.pem`);
  writeFileSync(path, pems.join(''));
  return path;
}

async function verifies(dir: string, chain: string[], roots: string[]): Promise<boolean> {
  const untrusted = chain.length > 1 ? ['-untrusted', file(dir, chain.slice(1))] : [];
  try {
    const { stdout } = await run('openssl', ['verify', '-CAfile', file(dir, roots), ...untrusted, file(dir, chain.slice(0, 1))]);
    return /: OK\s*$/.test(stdout);
  } catch {
    return false;
  }
}

async function sans(dir: string, pem: string): Promise<string> {
  const { stdout } = await run('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', file(dir, [pem])]);
  return stdout.split('\n').slice(1).join('\n').trim();
}

async function notAfter(dir: string, pem: string): Promise<number> {
  const { stdout } = await run('openssl', ['x509', '-noout', '-enddate', '-in', file(dir, [pem])]);
  return Date.parse(/notAfter=(.*)/.exec(stdout)![1]!);
}

function auth(token?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

function createCertificate(client: DiscoveryClient, req: Partial<CertificateRequest>, token?: string): Promise<CertificateResponse> {
  return new Promise((resolve, reject) => {
    client.CreateCertificate(req, auth(token), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

async function status(p: Promise<unknown>): Promise<grpc.status> {
  try {
    await p;
  } catch (err) {
    return (err as grpc.ServiceError).code;
  }
  return grpc.status.OK;
}

/** Messages of a WatchTrustBundle stream, with a way to wait for the n-th. */
function watch(client: DiscoveryClient, token?: string): { messages: TrustBundleMessage[]; next(n: number): Promise<TrustBundleMessage>; error: Promise<grpc.ServiceError>; cancel(): void } {
  const call = client.WatchTrustBundle({}, auth(token));
  const messages: TrustBundleMessage[] = [];
  const waiters: Array<() => void> = [];
  call.on('data', (m: TrustBundleMessage) => {
    messages.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const error = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  return {
    messages,
    error,
    cancel: () => call.cancel(),
    next: async (n) => {
      const deadline = Date.now() + 5000;
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for trust bundle message ${n} (have ${messages.length})`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return messages[n - 1]!;
    },
  };
}

test.before(async () => {
  ctx.dir = tmp();
  ctx.ca = await CertificateAuthority.open({ dir: join(ctx.dir, 'ca') });
  ctx.tokens = TokenStore.inMemory();
  ctx.proxyA = ctx.tokens.create('proxy', { namespace: 'team-a', serviceAccount: 'web' });
  ctx.server = await startXdsServer({ store: new MemoryStore(), tokens: ctx.tokens, ca: ctx.ca, host: '127.0.0.1', port: 0, log: quiet });
  const { Client } = discoveryDefinition();
  ctx.client = new Client(`127.0.0.1:${ctx.server.port}`, grpc.credentials.createInsecure());
});

test.after(async () => {
  ctx.client?.close();
  await ctx.server?.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

test('a proxy token bound to team-a/web gets spiffe://cluster.local/ns/team-a/sa/web, verifiable with the bundle', async () => {
  const res = await createCertificate(ctx.client, { csr: await makeCsr(ctx.dir) }, ctx.proxyA);
  assert.is(res.cert_chain.length, 1);
  assert.equal(res.trust_bundle, ctx.ca.trustBundle());
  assert.is(await sans(ctx.dir, res.cert_chain[0]!), 'URI:spiffe://cluster.local/ns/team-a/sa/web');
  assert.ok(await verifies(ctx.dir, res.cert_chain, res.trust_bundle));
  const t = await notAfter(ctx.dir, res.cert_chain[0]!);
  assert.ok(Math.abs(t - Date.now() - 24 * 3600_000) < 5000, 'default 24 h');
});

test('the same token asking (by SAN) for namespace team-b is refused with PERMISSION_DENIED', async () => {
  const csr = await makeCsr(ctx.dir, 'URI:spiffe://cluster.local/ns/team-b/sa/web');
  assert.is(await status(createCertificate(ctx.client, { csr }, ctx.proxyA)), grpc.status.PERMISSION_DENIED);
});

test('viewer, admin (no binding), missing and unknown tokens are refused', async () => {
  const csr = await makeCsr(ctx.dir);
  assert.is(await status(createCertificate(ctx.client, { csr }, ctx.tokens.create('viewer'))), grpc.status.PERMISSION_DENIED);
  assert.is(await status(createCertificate(ctx.client, { csr }, ctx.tokens.create('admin'))), grpc.status.PERMISSION_DENIED);
  assert.is(await status(createCertificate(ctx.client, { csr })), grpc.status.UNAUTHENTICATED);
  assert.is(await status(createCertificate(ctx.client, { csr }, 'not-a-token')), grpc.status.UNAUTHENTICATED);
  const w = watch(ctx.client);
  assert.is((await w.error).code, grpc.status.UNAUTHENTICATED, 'WatchTrustBundle needs a token too');
});

test('ttl_seconds is honoured; bad ttls and CSRs are INVALID_ARGUMENT', async () => {
  const csr = await makeCsr(ctx.dir);
  const t0 = Date.now();
  const res = await createCertificate(ctx.client, { csr, ttl_seconds: 3600 }, ctx.proxyA);
  assert.ok(Math.abs((await notAfter(ctx.dir, res.cert_chain[0]!)) - t0 - 3600_000) < 5000);
  const asString = await createCertificate(ctx.client, { csr, ttl_seconds: '7200' }, ctx.proxyA);
  assert.ok(Math.abs((await notAfter(ctx.dir, asString.cert_chain[0]!)) - t0 - 7200_000) < 5000, 'int64 as a decimal string');
  assert.is(await status(createCertificate(ctx.client, { csr, ttl_seconds: 91 * 86_400 }, ctx.proxyA)), grpc.status.INVALID_ARGUMENT);
  assert.is(await status(createCertificate(ctx.client, { csr, ttl_seconds: -1 }, ctx.proxyA)), grpc.status.INVALID_ARGUMENT);
  assert.is(await status(createCertificate(ctx.client, { csr: 'garbage' }, ctx.proxyA)), grpc.status.INVALID_ARGUMENT);
  assert.is(await status(createCertificate(ctx.client, {}, ctx.proxyA)), grpc.status.INVALID_ARGUMENT);
});

test('root rotation: WatchTrustBundle delivers both roots, then only the new one; certs from before and after verify', async () => {
  const w = watch(ctx.client, ctx.proxyA);
  const first = await w.next(1);
  assert.equal(first.roots, ctx.ca.trustBundle());
  assert.is(first.trust_domain, 'cluster.local');
  const [oldRoot] = first.roots;
  const before = await createCertificate(ctx.client, { csr: await makeCsr(ctx.dir) }, ctx.proxyA);

  await ctx.ca.rotateRoot();
  const second = await w.next(2);
  assert.is(second.roots.length, 2);
  assert.ok(second.roots.includes(oldRoot!));
  const newRoot = second.roots.find((r) => r !== oldRoot)!;
  const after = await createCertificate(ctx.client, { csr: await makeCsr(ctx.dir) }, ctx.proxyA);
  assert.equal(after.trust_bundle, second.roots, 'responses carry the rotated bundle');
  assert.ok(await verifies(ctx.dir, before.cert_chain, second.roots), 'signed before rotation');
  assert.ok(await verifies(ctx.dir, after.cert_chain, second.roots), 'signed after rotation');
  assert.ok(await verifies(ctx.dir, after.cert_chain, [newRoot]), 'signed by the new root');

  await ctx.ca.retireOldRoots();
  const third = await w.next(3);
  assert.equal(third.roots, [newRoot]);
  assert.not.ok(await verifies(ctx.dir, before.cert_chain, third.roots));
  assert.ok(await verifies(ctx.dir, after.cert_chain, third.roots));
  w.cancel();
});

test('a server without a CA answers UNAVAILABLE', async () => {
  const server = await startXdsServer({ store: new MemoryStore(), tokens: ctx.tokens, host: '127.0.0.1', port: 0, log: quiet });
  const { Client } = discoveryDefinition();
  const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  try {
    assert.is(await status(createCertificate(client, { csr: await makeCsr(ctx.dir) }, ctx.proxyA)), grpc.status.UNAVAILABLE);
    assert.is((await watch(client, ctx.proxyA).error).code, grpc.status.UNAVAILABLE);
  } finally {
    client.close();
    await server.close();
  }
});

test('startOrchestrator runs the CA: self-managed root in <data-dir>/ca (key 0600), custom trust domain, watchers end on close', async () => {
  const dataDir = tmp();
  const sink = { write: () => true };
  const orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, trustDomain: 'mesh.example', workloadCertTtlMs: 2 * 3600_000, out: sink, err: sink });
  const { Client } = discoveryDefinition();
  const client = new Client(`127.0.0.1:${orch.grpcPort}`, grpc.credentials.createInsecure());
  try {
    assert.ok(orch.ca);
    assert.is(orch.ca!.keyFile, join(dataDir, 'ca', 'root-0001-key.pem'));
    assert.is(statSync(orch.ca!.keyFile).mode & 0o777, 0o600);
    // A token made by another process (`wasmesh token create`) is picked up from the data dir.
    const token = TokenStore.open(dataDir).create('proxy', { namespace: 'shop', serviceAccount: 'cart' });
    const res = await createCertificate(client, { csr: await makeCsr(dataDir) }, token);
    assert.is(await sans(dataDir, res.cert_chain[0]!), 'URI:spiffe://mesh.example/ns/shop/sa/cart');
    assert.ok(Math.abs((await notAfter(dataDir, res.cert_chain[0]!)) - Date.now() - 2 * 3600_000) < 5000, 'configured default ttl');
    const w = watch(client, token);
    assert.is((await w.next(1)).trust_domain, 'mesh.example');
    await orch.close();
    assert.is((await w.error).code, grpc.status.UNAVAILABLE, 'the watch ends when the orchestrator stops');
  } finally {
    client.close();
    await orch.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('CA flags are checked before anything starts', async () => {
  let err = '';
  const out = { write: (t: string) => ((err += t), true) };
  assert.is(await runCli(['--workload-cert-ttl', '1.5h'], out, out), 2);
  assert.match(err, /--workload-cert-ttl must be a whole number/);
  err = '';
  const dataDir = tmp();
  try {
    assert.is(await runCli(['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--grpc-listen', '127.0.0.1:0', '--trust-domain', 'Bad Domain'], out, out), 1);
    assert.match(err, /invalid trust domain/);
    err = '';
    assert.is(await runCli(['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--grpc-listen', '127.0.0.1:0', '--ca-cert-dir', join(dataDir, 'nope')], out, out), 1);
    assert.match(err, /ca-cert\.pem is missing/);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test.run();
