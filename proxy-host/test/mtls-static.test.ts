// StaticIdentity: the identity files of --cert-dir, checked on load and re-read when they change.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StaticIdentity } from '../src/identity/static-identity.ts';
import type { WorkloadCertificate } from '../src/identity/types.ts';
import { createTestCa } from './support/test-ca.ts';

function write(dir: string, cert: WorkloadCertificate, key = cert.keyPem): void {
  writeFileSync(join(dir, 'key.pem'), key);
  writeFileSync(join(dir, 'cert-chain.pem'), cert.certChainPem);
  writeFileSync(join(dir, 'root-cert.pem'), cert.trustBundlePem.join(''));
}

test('loads the files, rejects a key that does not match, swaps in a valid new set', async () => {
  const ca = await createTestCa();
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-certs-'));
  try {
    const first = await ca.issue('default', 'reviews');
    write(dir, first);
    const identity = new StaticIdentity(dir, { pollMs: 60_000, settleMs: 10 });
    assert.is(identity.current().spiffeId, 'spiffe://cluster.local/ns/default/sa/reviews');
    const seen: string[] = [];
    identity.onChange((c) => seen.push(c.spiffeId));
    const other = await ca.issue('default', 'other');
    write(dir, other, first.keyPem); // mismatched key: ignored
    assert.is(identity.reload(), false);
    assert.is(identity.current().spiffeId, 'spiffe://cluster.local/ns/default/sa/reviews');
    write(dir, other);
    assert.is(identity.reload(), true);
    assert.equal(seen, ['spiffe://cluster.local/ns/default/sa/other']);
    assert.is(identity.reload(), false, 'unchanged files are no change');
    await identity.close();
    rmSync(join(dir, 'key.pem'));
    assert.throws(() => new StaticIdentity(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
