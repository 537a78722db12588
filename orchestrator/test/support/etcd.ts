// A throwaway etcd for tests: free loopback ports, data in a temp dir, killed when the tests end.
// Installs Debian's etcd-server through scripts/etcd.sh when etcd is missing and this is root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../../scripts/etcd.sh', import.meta.url));

export interface TestEtcd {
  /** http://127.0.0.1:<port> */
  url: string;
  /** etcd://127.0.0.1:<port>, the orchestrator's --store form. */
  storeUrl: string;
  stop(): Promise<void>;
}

function findEtcd(): string | undefined {
  const found = spawnSync('bash', [SCRIPT, 'path'], { encoding: 'utf8' });
  const path = found.status === 0 ? found.stdout.trim() : '';
  return path && existsSync(path) ? path : undefined;
}

/** The etcd binary, installing it if possible; undefined (with the reason) if it cannot be had. */
export function ensureEtcd(): { bin?: string; reason?: string } {
  let bin = findEtcd();
  if (bin) return { bin };
  const install = spawnSync('bash', [SCRIPT, 'install'], { encoding: 'utf8', timeout: 300_000 });
  bin = findEtcd();
  if (bin) return { bin };
  return { reason: `etcd is not installed and could not be installed (${(install.stderr || install.stdout || '').trim().split('\n').pop()})` };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startEtcd(bin: string): Promise<TestEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-etcd-'));
  const client = await freePort();
  let peer = await freePort();
  while (peer === client) peer = await freePort();
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const child: ChildProcess = spawn(
    bin,
    [
      '--name', 'wasmesh-test',
      '--data-dir', join(dir, 'data'),
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `wasmesh-test=${peerUrl}`,
      '--max-txn-ops', '4096',
      '--max-request-bytes', '8388608',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (log.length < 20_000) log += d.toString();
  });
  const kill = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited during startup:\n${log}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok && ((await res.json()) as { health?: string }).health === 'true') break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      kill();
      throw new Error(`etcd did not become healthy within 15s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    storeUrl: `etcd://127.0.0.1:${client}`,
    async stop() {
      process.removeListener('exit', kill);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        kill();
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
