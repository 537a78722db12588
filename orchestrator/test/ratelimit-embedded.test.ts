// The rate-limit service inside the orchestrator (what the demo runs) and on its own
// (`wasmesh ratelimit --config`): limits come from RateLimitPolicies, in the store or in files, and a
// change applies to the next call without a restart.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { rateLimitServiceDefinition, type RateLimitResponseMessage, type RateLimitServiceClient } from '../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { TestRedis, ensureRedis, freePort, reportRedisSkip } from './support/redis.ts';

const quiet = { write: () => true };
const redisBin = ensureRedis();
const WASMESH = fileURLToPath(new URL('../../scripts/wasmesh.mjs', import.meta.url));

const policy = (perMinute: number) => ({
  apiVersion: 'policy.wasmesh.io/v1alpha1',
  kind: 'RateLimitPolicy',
  metadata: { name: 'quota', namespace: 'default' },
  spec: { global: { service: { host: 'ratelimit.example.com', port: 8081 }, limits: [{ name: 'per-user', descriptors: [{ header: { name: 'x-user' } }], requestsPerUnit: perMinute, unit: 'MINUTE' }] } },
});

let redis: TestRedis;
let root = '';

if (!redisBin.bin) {
  reportRedisSkip('the embedded rate-limit service tests', redisBin.reason);
} else {
  test.before(async () => {
    redis = await TestRedis.start(redisBin.bin!);
    root = await mkdtemp(join(tmpdir(), 'wasmesh-rls-'));
  });

  test.after(async () => {
    await redis?.stop();
    await rm(root, { recursive: true, force: true });
  });

  test('orchestrator --ratelimit-redis: the stored RateLimitPolicies are the limits, and changes apply without a restart', async () => {
    let orch: RunningOrchestrator | undefined;
    let client: RateLimitServiceClient | undefined;
    try {
      orch = await startOrchestrator({
        dataDir: join(root, 'orch'),
        store: 'sqlite',
        listen: { host: '127.0.0.1', port: 0 },
        grpcListen: undefined,
        rateLimit: { redisUrl: redis.url, listen: '127.0.0.1:0' },
        out: quiet,
        err: quiet,
      });
      assert.ok(orch.rateLimitPort, 'the service listens');
      const token = (await readFile(join(root, 'orch', 'admin-token'), 'utf8')).trim();
      const applyDocs = async (doc: object) => {
        const res = await fetch(`${orch!.url}/apply`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify([doc]) });
        assert.ok(res.ok, await res.text());
      };
      client = new (rateLimitServiceDefinition().Client)(`127.0.0.1:${orch.rateLimitPort}`, grpc.credentials.createInsecure());
      const user = `u${Date.now()}`;
      assert.is((await ask(client, user)).statuses[0]!.current_limit, null, 'no policy yet: no limit');
      await applyDocs(policy(2));
      const limited = await eventually(async () => (await ask(client!, user)).statuses[0]!.current_limit?.requests_per_unit === 2);
      assert.ok(limited, 'the stored policy became the limit');
      // The call that saw the limit counted 1 (calls without a limit count nothing).
      assert.is((await ask(client, user)).overall_code, 'OK', 'the second of 2');
      assert.is((await ask(client, user)).overall_code, 'OVER_LIMIT', 'the third is over the limit of 2');
      await applyDocs(policy(100));
      assert.ok(await eventually(async () => (await ask(client!, user)).overall_code === 'OK'), 'a raised limit applies without a restart');
    } finally {
      client?.close();
      await orch?.close();
    }
  });

  test('wasmesh ratelimit --config: the files are the limits; an edit applies, a broken edit keeps the last good limits', async () => {
    const file = join(root, 'limits.yaml');
    await writeFile(file, JSON.stringify(policy(1)));
    const port = await freePort();
    const child = spawn(process.execPath, [WASMESH, 'ratelimit', '--redis', redis.url, '--listen', `127.0.0.1:${port}`, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const client = new (rateLimitServiceDefinition().Client)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      assert.ok(await eventually(async () => output.includes('RLS v3 on'), 20_000), output);
      const user = `f${Date.now()}`;
      assert.is((await ask(client, user)).overall_code, 'OK');
      assert.is((await ask(client, user)).overall_code, 'OVER_LIMIT', 'limit 1 from the file');
      await writeFile(file, 'kind: RateLimitPolicy\nspec: [broken');
      assert.ok(await eventually(async () => output.includes('config change rejected'), 5000), output);
      // Still 1 a minute: of two more calls at least one is over it (both, unless a new minute's
      // window began while the broken edit was read, which resets the count for the first).
      const after = [(await ask(client, user)).overall_code, (await ask(client, user)).overall_code];
      assert.is(after[1], 'OVER_LIMIT', `the last good limits stay: ${after.join(', ')}`);
      await writeFile(file, JSON.stringify(policy(50)));
      assert.ok(await eventually(async () => (await ask(client, user)).overall_code === 'OK', 5000), output);
    } finally {
      client.close();
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    assert.is(child.exitCode, 0, output);
  });

  test.run();
}

function ask(client: RateLimitServiceClient, user: string): Promise<RateLimitResponseMessage> {
  const descriptor = { entries: [{ key: 'wasmesh_limit', value: 'default.quota.per-user' }, { key: 'x-user', value: user }], limit: null, hits_addend: null };
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit({ domain: 'wasmesh', descriptors: [descriptor] }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? reject(err) : resolve(r!))),
  );
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
