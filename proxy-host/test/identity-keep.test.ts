// A managed proxy's identity kept on disk (key 0600) and what is reused after a restart, and the
// certificate retry schedule: a few seconds at most while there is no certificate or it nears expiry.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KEPT_FILES, loadKeptIdentity, saveKeptIdentity } from '../src/identity/kept-identity.ts';
import { OrchestratorIdentity, certificateRetryDelay, type RetrySchedule } from '../src/identity/orchestrator-identity.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const EXPECT = { namespace: 'default', serviceAccount: 'reviews' };
const SCHEDULE: RetrySchedule = { initialMs: 1000, maxMs: 30_000, urgentMaxMs: 3000 };
const HOUR = 3600_000;

let ca: TestCa;
let dir: string;

/** host:port where nothing listens (a port that was free a moment ago). */
async function deadAddress(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `127.0.0.1:${port}`;
}

test.before(async () => {
  ca = await createTestCa();
});

test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-kept-'));
});

test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('certificateRetryDelay: capped at a few seconds without a certificate or near expiry, longer only while comfortably valid, always jittered', () => {
  const max = () => 0.999999;
  const min = () => 0;
  for (let failures = 1; failures <= 40; failures++) {
    assert.ok(certificateRetryDelay(failures, undefined, SCHEDULE, max) <= 3000, `no certificate, failure ${failures}`);
    assert.ok(certificateRetryDelay(failures, 20_000, SCHEDULE, max) <= 3000, `20 s left, failure ${failures}`);
    assert.ok(certificateRetryDelay(failures, 12 * HOUR, SCHEDULE, max) <= 30_000, `12 h left, failure ${failures}`);
  }
  // Doubling from the first delay, jittered down to half.
  assert.is(certificateRetryDelay(1, undefined, SCHEDULE, max), 1000);
  assert.is(certificateRetryDelay(1, undefined, SCHEDULE, min), 500);
  assert.is(certificateRetryDelay(2, undefined, SCHEDULE, max), 2000);
  assert.is(certificateRetryDelay(3, undefined, SCHEDULE, max), 3000, 'the urgent cap');
  // Comfortably valid: backs off up to the cap, and never past a tenth of the time left.
  assert.is(certificateRetryDelay(10, 12 * HOUR, SCHEDULE, max), 30_000);
  assert.is(certificateRetryDelay(10, 100_000, SCHEDULE, max), 10_000);
  // The jitter spreads proxies that failed together.
  const spread = new Set(Array.from({ length: 20 }, (_, i) => certificateRetryDelay(8, undefined, SCHEDULE, () => i / 20)));
  assert.ok(spread.size > 10, `distinct delays: ${spread.size}`);
});

test('an orchestrator that does not answer: the retries follow the schedule (never past the urgent cap without a certificate)', async () => {
  const logs: string[] = [];
  const identity = new OrchestratorIdentity({
    address: await deadAddress(),
    namespace: 'default',
    serviceAccount: 'reviews',
    backoff: { initialMs: 40, maxMs: 5000, urgentMaxMs: 150 },
    log: (_level, message) => logs.push(message),
  });
  try {
    const deadline = Date.now() + 8000;
    while (identity.status().failures < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const delays = logs.map((l) => /retrying in (\d+) ms/.exec(l)?.[1]).filter((d): d is string => d !== undefined).map(Number);
    assert.ok(delays.length >= 6, `retries seen: ${delays.length}\n${logs.join('\n')}`);
    for (const d of delays) assert.ok(d <= 150, `delay ${d} ms over the cap`);
    assert.is(identity.current(), undefined);
  } finally {
    await identity.close();
  }
});

test('saved identity: key, chain and bundle in a 0700 folder, every file 0600; loaded back when valid', async () => {
  const cert = await ca.issue('default', 'reviews');
  const keep = join(dir, 'identity');
  await saveKeptIdentity(keep, cert);
  assert.is(statSync(keep).mode & 0o777, 0o700);
  for (const f of Object.values(KEPT_FILES)) assert.is(statSync(join(keep, f)).mode & 0o777, 0o600, f);
  const loaded = loadKeptIdentity(keep, EXPECT);
  assert.ok('cert' in loaded, JSON.stringify(loaded));
  assert.is(loaded.cert.spiffeId, 'spiffe://cluster.local/ns/default/sa/reviews');
  assert.is(loaded.cert.keyPem, cert.keyPem);
  assert.equal(loaded.cert.trustBundlePem, [ca.rootPem]);
  assert.ok('cert' in loadKeptIdentity(keep, { ...EXPECT, trustDomain: 'cluster.local' }));
  assert.equal(loadKeptIdentity(join(dir, 'nothing'), EXPECT), { none: true });
});

test('a kept identity is not used when expired, not yet valid, for another workload or trust domain, with a foreign key or chain', async () => {
  const keep = join(dir, 'identity');
  const rejected = async (cert: Awaited<ReturnType<TestCa['issue']>>, pattern: string, expect: Parameters<typeof loadKeptIdentity>[1] = EXPECT) => {
    await saveKeptIdentity(keep, cert);
    const r = loadKeptIdentity(keep, expect);
    assert.ok('rejected' in r, `expected a rejection (${pattern}), got ${JSON.stringify(Object.keys(r))}`);
    assert.match(r.rejected, pattern);
  };
  await rejected(await ca.issue('default', 'reviews', { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) }), 'the certificate expired at');
  await rejected(await ca.issue('default', 'reviews', { notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 2 * HOUR) }), 'valid only from');
  await rejected(await ca.issue('default', 'ratings'), 'for spiffe://cluster.local/ns/default/sa/ratings, this proxy is spiffe://cluster.local/ns/default/sa/reviews');
  await rejected(await ca.issue('other', 'reviews'), 'ns/other/sa/reviews');
  await rejected(await ca.issue('default', 'reviews'), 'this proxy is spiffe://example.org/ns/default/sa/reviews', { ...EXPECT, trustDomain: 'example.org' });
  const other = await createTestCa('another root');
  await rejected(await other.issue('default', 'reviews', { bundle: [ca.rootPem] }), 'does not lead to a root of the kept trust bundle');
  const good = await ca.issue('default', 'reviews');
  await saveKeptIdentity(keep, good);
  writeFileSync(join(keep, KEPT_FILES.key), (await ca.issue('default', 'reviews')).keyPem);
  const foreignKey = loadKeptIdentity(keep, EXPECT);
  assert.ok('rejected' in foreignKey && foreignKey.rejected.includes('private key does not match'), JSON.stringify(foreignKey));
});

test('OrchestratorIdentity starts from a valid kept identity while the orchestrator is away, and ignores an expired one', async () => {
  const keep = join(dir, 'identity');
  const cert = await ca.issue('default', 'reviews');
  await saveKeptIdentity(keep, cert);
  const logs: string[] = [];
  const address = await deadAddress();
  const options = { address, namespace: 'default', serviceAccount: 'reviews', keepDir: keep, backoff: { initialMs: 50, urgentMaxMs: 100 }, log: (_l: string, m: string) => void logs.push(m) };
  const kept = new OrchestratorIdentity(options);
  try {
    assert.is(kept.current()?.certChainPem, cert.certChainPem, 'the kept certificate, at once');
    assert.is((await kept.waitForCertificate(10))?.keyPem, cert.keyPem);
    assert.ok(logs.some((l) => l.includes(`using the workload certificate spiffe://cluster.local/ns/default/sa/reviews kept in ${keep}`)), logs.join('\n'));
  } finally {
    await kept.close();
  }
  await saveKeptIdentity(keep, await ca.issue('default', 'reviews', { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) }));
  logs.length = 0;
  const expired = new OrchestratorIdentity(options);
  try {
    assert.is(expired.current(), undefined);
    assert.ok(logs.some((l) => l.includes(`kept workload identity in ${keep} not used: the certificate expired at`)), logs.join('\n'));
  } finally {
    await expired.close();
  }
});

test.run();
