import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenStore } from '../src/auth/tokens.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-tokens-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('create and verify per role; proxy tokens carry their binding', async () => {
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  const viewer = tokens.create('viewer');
  const proxy = tokens.create('proxy', { namespace: 'shop', serviceAccount: 'reviews' });
  assert.match(admin, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  assert.is(tokens.verify(admin)?.role, 'admin');
  assert.is(tokens.verify(viewer)?.role, 'viewer');
  const p = tokens.verify(proxy)!;
  assert.equal({ role: p.role, namespace: p.namespace, serviceAccount: p.serviceAccount }, { role: 'proxy', namespace: 'shop', serviceAccount: 'reviews' });
  assert.match(p.id, /^[0-9a-f]{12}$/);
  assert.is(tokens.verify('nope'), undefined);
  assert.is(tokens.verify(''), undefined);
  assert.is(tokens.verify(undefined), undefined);
  assert.is(tokens.verify(admin.slice(0, -1)), undefined);
});

test('bindings: required for proxy, refused for others', () => {
  const tokens = TokenStore.inMemory();
  assert.throws(() => tokens.create('proxy'), /bound to a namespace/);
  assert.throws(() => tokens.create('admin', { namespace: 'a', serviceAccount: 'b' }), /not bound/);
  assert.throws(() => tokens.create('proxy', { namespace: 'Bad_NS', serviceAccount: 'b' }), /invalid namespace/);
  assert.throws(() => tokens.create('root' as never), /unknown role/);
});

test('persisted as sha256 hashes in a 0600 file, never the token', async () => {
  await withDir(async (dir) => {
    const tokens = TokenStore.open(dir);
    const admin = tokens.create('admin');
    const proxy = tokens.create('proxy', { namespace: 'default', serviceAccount: 'sa' });
    const file = join(dir, 'tokens.json');
    assert.is((await stat(file)).mode & 0o777, 0o600);
    const text = await readFile(file, 'utf8');
    assert.not.ok(text.includes(admin), 'token in clear');
    assert.not.ok(text.includes(proxy), 'token in clear');
    const parsed = JSON.parse(text) as { tokens: { hash: string }[] };
    assert.is(parsed.tokens.length, 2);
    assert.ok(parsed.tokens.every((t) => /^[0-9a-f]{64}$/.test(t.hash)));
    const reopened = TokenStore.open(dir);
    assert.is(reopened.verify(admin)?.role, 'admin');
    assert.is(reopened.verify(proxy)?.namespace, 'default');
    assert.ok(reopened.revoke(reopened.verify(proxy)!.id));
    assert.is(TokenStore.open(dir).verify(proxy), undefined, 'revocation persisted');
  });
});

test('first start writes an admin token to admin-token (0600); later starts keep it', async () => {
  await withDir(async (dir) => {
    const tokens = TokenStore.open(dir);
    const first = tokens.ensureAdminToken(dir);
    assert.ok(first.created);
    assert.is(first.path, join(dir, 'admin-token'));
    assert.is((await stat(first.path)).mode & 0o777, 0o600);
    const token = (await readFile(first.path, 'utf8')).trim();
    assert.is(tokens.verify(token)?.role, 'admin');
    const again = TokenStore.open(dir);
    const second = again.ensureAdminToken(dir);
    assert.not.ok(second.created);
    assert.is((await readFile(first.path, 'utf8')).trim(), token);
    assert.is(again.count('admin'), 1);
  });
});

test('a corrupt token file is an error, not an open door', async () => {
  await withDir(async (dir) => {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'tokens.json'), '{not json');
    assert.throws(() => TokenStore.open(dir), /cannot read/);
  });
});

test('a token another process adds is seen by a running store', async () => {
  await withDir(async (dir) => {
    const running = TokenStore.open(dir);
    const first = running.create('admin');
    const cli = TokenStore.open(dir);
    const added = cli.create('viewer');
    assert.is(running.verify(added)?.role, 'viewer', 'unknown token triggers a re-read');
    assert.is(TokenStore.open(dir).verify(first)?.role, 'admin', 'the CLI kept the tokens it did not create');
  });
});

test.run();
