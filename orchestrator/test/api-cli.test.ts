// `wasmesh orchestrator` as a process would run it: SQLite in a data dir, real listeners on port 0.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHostPort, run, startOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';

const quiet = { write: () => true };

test('starts, writes the admin token (0600), keeps data and token across a restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-orch-'));
  try {
    const opts = { dataDir: dir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: undefined, out: quiet, err: quiet };
    const first = await startOrchestrator(opts);
    assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.is((await stat(first.adminTokenPath)).mode & 0o777, 0o600);
    const token = (await readFile(first.adminTokenPath, 'utf8')).trim();
    assert.is((await fetch(`${first.url}/healthz`)).status, 200);
    const put = await fetch(`${first.url}/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify([{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default' }, spec: { mtls: { mode: 'STRICT' } } }]),
    });
    assert.is(put.status, 200, await put.text());
    await first.close();

    const second = await startOrchestrator(opts);
    assert.is((await readFile(second.adminTokenPath, 'utf8')).trim(), token, 'the admin token is kept');
    const out: string[] = [];
    assert.is(await tokenCreate(['--role', 'viewer', '--data-dir', dir], { write: (t: string) => out.push(t) }, quiet), 0);
    const viewer = out.join('').trim();
    const got = await fetch(`${second.url}/apis/peerauthentications/default/default`, { headers: { authorization: `Bearer ${viewer}` } });
    assert.is(got.status, 200, 'data survived the restart; a token created meanwhile works');
    await second.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2', async () => {
  assert.is(await run(['--store', 'mysql'], quiet, quiet), 2);
  assert.is(await run(['--listen', 'nope'], quiet, quiet), 2);
  assert.is(await tokenCreate(['--role', 'proxy'], quiet, quiet), 2);
  assert.is(await tokenCreate(['--role', 'root'], quiet, quiet), 2);
  assert.equal(parseHostPort(':15014', '--listen'), { host: '127.0.0.1', port: 15014 });
  assert.equal(parseHostPort('[::1]:80', '--listen'), { host: '::1', port: 80 });
});

test.run();
