// Operators rotate the root through the REST API: /ca/rotate adds a new root (both trusted, the new
// one signs), /ca/retire drops the old one; proxies watching the trust bundle see each change.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startOrchestrator } from '../../scripts/cli/orchestrator.ts';

test('trust bundle, root rotation and retirement over REST, admin only', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'wasmesh-ca-rest-'));
  const sink = { write: () => true };
  const orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: sink, err: sink });
  try {
    const admin = readFileSync(orch.adminTokenPath, 'utf8').trim();
    const call = async (method: string, path: string, token = admin) => {
      const res = await fetch(`${orch.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: (await res.json()) as { roots: string[]; trustDomain: string } };
    };
    const first = await call('GET', '/ca/trust-bundle');
    assert.is(first.status, 200);
    assert.is(first.body.roots.length, 1);
    assert.is(first.body.trustDomain, 'cluster.local');
    const rotated = await call('POST', '/ca/rotate');
    assert.is(rotated.body.roots.length, 2, 'old and new root are both trusted during the overlap');
    assert.ok(rotated.body.roots.includes(first.body.roots[0]!));
    const retired = await call('POST', '/ca/retire');
    assert.is(retired.body.roots.length, 1);
    assert.not.ok(retired.body.roots.includes(first.body.roots[0]!), 'the old root is gone');
    assert.is(orch.ca!.trustBundle().length, 1);
    const { TokenStore } = await import('../src/auth/tokens.ts');
    const viewer = TokenStore.open(dataDir).create('viewer');
    assert.is((await call('POST', '/ca/rotate', viewer)).status, 403, 'a viewer cannot rotate the root');
    assert.is((await call('GET', '/ca/trust-bundle', viewer)).status, 200);
  } finally {
    await orch.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test.run();
