// The SO_ORIGINAL_DST addon (proxy-host/native/original-dst.cc, built by scripts/build-native.mjs)
// on real sockets, without iptables: what the kernel answers for a connection nothing rewrote, and
// bad file descriptors turned into errors (never a crash). The REDIRECT case is in
// integration/test/iptables-capture.test.ts (root, network namespaces).
//
// Without the addon (no g++ or no Node headers) this file skips, saying why; under CI=true it fails.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadOriginalDstAddon, originalDestination } from '../src/tcp/original-dst.ts';

const addon = loadOriginalDstAddon();
const ci = process.env.CI === 'true';
if (!addon.ok) {
  if (ci) {
    test('the SO_ORIGINAL_DST addon is built (required under CI=true)', () => {
      assert.unreachable(`the addon is unavailable: ${addon.reason}`);
    });
  } else {
    process.stderr.write(`original-dst.test.ts: SKIPPED, the native addon is unavailable: ${addon.reason}\n`);
  }
}
const run = addon.ok ? test : test.skip;
const native = addon.ok ? addon.addon : undefined;

/** A connected pair on loopback: the accepted socket and the client. */
async function acceptedPair(host: string): Promise<{ accepted: net.Socket; client: net.Socket; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, host);
  const socket = await accepted;
  return {
    accepted: socket,
    client,
    close: () => {
      socket.destroy();
      client.destroy();
      server.close();
    },
  };
}

run('bad file descriptors are errors with the errno\'s name, not crashes', () => {
  assert.throws(() => native!.originalDst(-1), (e: Error) => e instanceof TypeError && /non-negative integer/.test(e.message));
  assert.throws(() => native!.originalDst(1.5 as number), (e: Error) => e instanceof TypeError);
  assert.throws(() => (native!.originalDst as (fd: unknown) => unknown)('3'), (e: Error) => e instanceof TypeError);
  assert.throws(() => (native!.originalDst as () => unknown)(), (e: Error) => e instanceof TypeError);
  // A file is not a socket.
  const fd = openSync(new URL(import.meta.url), 'r');
  try {
    assert.throws(() => native!.originalDst(fd), (e: NodeJS.ErrnoException) => e.code === 'ENOTSOCK' && /getsockname/.test(e.message));
  } finally {
    closeSync(fd);
  }
  // A descriptor no process this size has open.
  assert.throws(() => native!.originalDst(1 << 30), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
});

run('a listening socket has no original destination (nothing tracked): ENOTCONN or ENOENT', async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    assert.throws(() => native!.originalDst(fd), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' || e.code === 'ENOTCONN');
  } finally {
    server.close();
  }
});

run('a connection nothing rewrote: the kernel gives its own local address when it tracks it, ENOENT when not', async () => {
  for (const host of ['127.0.0.1', '::1']) {
    const pair = await acceptedPair(host);
    try {
      const got = originalDestination(pair.accepted);
      if (got.ok) assert.equal(got.destination, { address: host, port: pair.accepted.localPort, family: host.includes(':') ? 6 : 4 });
      else assert.is(got.code, 'ENOENT', got.message);
    } finally {
      pair.close();
    }
  }
});

run('a closed socket: an error result naming the missing descriptor, never a throw', async () => {
  const pair = await acceptedPair('127.0.0.1');
  pair.accepted.destroy();
  const got = originalDestination(pair.accepted);
  assert.not.ok(got.ok);
  if (!got.ok) assert.is(got.code, 'EBADF');
  pair.close();
});

// Which of the two answers a connection without NAT gets depends on conntrack in the network
// namespace: both, decided, in throwaway namespaces (root, unshare, iptables).
const canNamespace =
  addon.ok && process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v unshare && command -v iptables && command -v ip']).status === 0 && spawnSync('unshare', ['--net', '--', 'true'], { timeout: 10_000 }).status === 0;
if (addon.ok && !canNamespace) process.stderr.write('original-dst.test.ts: SKIPPED the network-namespace case: needs root, unshare, ip and iptables\n');

const ONE_CONNECTION = `
const net = require('node:net');
const { originalDst } = require(process.env.ADDON);
const server = net.createServer((s) => {
  let out;
  try { out = originalDst(s._handle.fd); } catch (e) { out = { code: e.code }; }
  process.stdout.write(JSON.stringify({ ...out, local: s.localAddress + ':' + s.localPort }));
  s.destroy(); server.close();
});
server.listen(0, '127.0.0.1', () => net.connect(server.address().port, '127.0.0.1').on('error', () => {}));`;

(canNamespace ? test : test.skip)('in a fresh namespace: ENOENT untracked; with conntrack on, the socket\'s own address', () => {
  const env = { ...process.env, ADDON: addon.ok ? addon.path : '', SCRIPT: ONE_CONNECTION };
  const untracked = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && node -e "$SCRIPT"'], { env, encoding: 'utf8', timeout: 20_000 });
  assert.is(untracked.status, 0, untracked.stderr);
  assert.is(JSON.parse(untracked.stdout).code, 'ENOENT');
  const tracked = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && iptables -A INPUT -m conntrack --ctstate NEW -j ACCEPT && node -e "$SCRIPT"'], { env, encoding: 'utf8', timeout: 20_000 });
  assert.is(tracked.status, 0, tracked.stderr);
  const got = JSON.parse(tracked.stdout) as { address: string; port: number; family: number; local: string };
  assert.is(`${got.address}:${got.port}`, got.local);
  assert.is(got.family, 4);
});

test('a missing addon is reported with where it was looked for and how to build it, not thrown', () => {
  const probe = `import(${JSON.stringify(new URL('../src/tcp/original-dst.ts', import.meta.url).href)}).then((m) => process.stdout.write(JSON.stringify(m.loadOriginalDstAddon())))`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', probe], { env: { ...process.env, WASMESH_ORIGINAL_DST_ADDON: '/nonexistent/original-dst.node' }, encoding: 'utf8', timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  const state = JSON.parse(r.stdout) as { ok: boolean; reason?: string };
  assert.is(state.ok, false);
  assert.match(state.reason ?? '', /\/nonexistent\/original-dst\.node is not built \(npm run build compiles it with g\+\+/);
});

test.run();
