// One suite, every ConfigStore backend: memory, SQLite, etcd (a real etcd on a free port).
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { MemoryStore } from '../src/store/memory-store.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { EtcdStore, parseEtcdUrl } from '../src/store/etcd-store.ts';
import { ConflictError, type ConfigStore, type ResourceInput, type WatchEvent } from '../src/store/types.ts';
import { ensureEtcd, startEtcd, type TestEtcd } from './support/etcd.ts';

const se = (name: string, hosts = [`${name}.example.com`], extra: Partial<ResourceInput['metadata']> = {}, namespace = 'default'): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace, ...extra },
  spec: { hosts, ports: [{ number: 80, name: 'http' }] },
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Backend {
  name: string;
  open(): Promise<ConfigStore>;
  /** A second store on the same data, when the backend shares state across instances. */
  openPeer?(): Promise<ConfigStore>;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

function conformance(backend: Backend): Test<{ store: ConfigStore; extra: ConfigStore[] }> {
  const t = suite<{ store: ConfigStore; extra: ConfigStore[] }>(`store conformance: ${backend.name}`, { store: undefined as never, extra: [] });
  if (backend.setup) t.before(backend.setup);
  if (backend.teardown) t.after(backend.teardown);
  t.before.each(async (ctx) => {
    ctx.store = await backend.open();
    ctx.extra = [];
  });
  t.after.each(async (ctx) => {
    for (const s of ctx.extra) await s.close();
    await ctx.store.close();
  });

  t('put then get: metadata maintained', async ({ store }) => {
    const r0 = await store.revision();
    const created = await store.put(se('reviews'));
    assert.is(created.kind, 'ServiceEntry');
    assert.is(created.metadata.namespace, 'default');
    assert.is(created.metadata.generation, 1);
    assert.ok(Number(created.metadata.resourceVersion) > r0, 'resourceVersion is a revision after the start');
    assert.ok(!Number.isNaN(Date.parse(created.metadata.creationTimestamp)));
    assert.equal(await store.get('ServiceEntry', 'default', 'reviews'), created);
    assert.is(await store.get('ServiceEntry', 'default', 'missing'), undefined);
    assert.is(await store.get('VirtualService', 'default', 'reviews'), undefined);
    assert.is(await store.revision(), Number(created.metadata.resourceVersion));
  });

  t('namespace defaults to "default"', async ({ store }) => {
    const r = await store.put({ apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'x' }, spec: { hosts: ['x.example.com'] } });
    assert.is(r.metadata.namespace, 'default');
    assert.ok(await store.get('ServiceEntry', 'default', 'x'));
  });

  t('update: new resourceVersion; generation only on spec change; creationTimestamp kept', async ({ store }) => {
    const a = await store.put(se('a'));
    const b = await store.put(se('a', ['other.example.com']));
    assert.ok(Number(b.metadata.resourceVersion) > Number(a.metadata.resourceVersion));
    assert.is(b.metadata.generation, 2);
    assert.is(b.metadata.creationTimestamp, a.metadata.creationTimestamp);
    const c = await store.put(se('a', ['other.example.com'], { labels: { team: 'x' } }));
    assert.is(c.metadata.generation, 2, 'labels are not spec');
    assert.ok(Number(c.metadata.resourceVersion) > Number(b.metadata.resourceVersion));
    assert.equal(c.metadata.labels, { team: 'x' });
    const same = await store.put(se('a', ['other.example.com'], { labels: { team: 'x' } }));
    assert.equal(same, c, 'a write that changes nothing is not a write');
    assert.is(await store.revision(), Number(c.metadata.resourceVersion));
  });

  t('list by kind and namespace, sorted', async ({ store }) => {
    await store.put(se('b'));
    await store.put(se('a'));
    await store.put(se('c', undefined, {}, 'prod'));
    await store.put({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'v', namespace: 'prod' }, spec: { hosts: ['c'] } });
    const names = (rs: { kind: string; metadata: { namespace: string; name: string } }[]) => rs.map((r) => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`);
    assert.equal(names(await store.list('ServiceEntry')), ['ServiceEntry/default/a', 'ServiceEntry/default/b', 'ServiceEntry/prod/c']);
    assert.equal(names(await store.list('ServiceEntry', 'prod')), ['ServiceEntry/prod/c']);
    assert.equal(names(await store.list(undefined, 'prod')), ['ServiceEntry/prod/c', 'VirtualService/prod/v']);
    assert.is((await store.list()).length, 4);
    assert.equal(await store.list('DestinationRule'), []);
  });

  t('conflict on a stale resourceVersion (put and delete)', async ({ store }) => {
    const a = await store.put(se('a'));
    const b = await store.put({ ...se('a', ['b.example.com']), metadata: { name: 'a', namespace: 'default', resourceVersion: a.metadata.resourceVersion } });
    assert.is(b.metadata.generation, 2);
    try {
      await store.put({ ...se('a', ['c.example.com']), metadata: { name: 'a', namespace: 'default', resourceVersion: a.metadata.resourceVersion } });
      assert.unreachable('stale put accepted');
    } catch (err) {
      assert.instance(err, ConflictError);
    }
    try {
      await store.put({ ...se('new'), metadata: { name: 'new', namespace: 'default', resourceVersion: '1' } });
      assert.unreachable('resourceVersion for a missing resource accepted');
    } catch (err) {
      assert.instance(err, ConflictError);
    }
    try {
      await store.delete('ServiceEntry', 'default', 'a', a.metadata.resourceVersion);
      assert.unreachable('stale delete accepted');
    } catch (err) {
      assert.instance(err, ConflictError);
    }
    assert.equal((await store.get('ServiceEntry', 'default', 'a'))?.spec.hosts, ['b.example.com']);
  });

  t('delete', async ({ store }) => {
    const a = await store.put(se('a'));
    const deleted = await store.delete('ServiceEntry', 'default', 'a', a.metadata.resourceVersion);
    assert.is(deleted?.metadata.name, 'a');
    assert.ok(Number(deleted!.metadata.resourceVersion) > Number(a.metadata.resourceVersion));
    assert.is(await store.get('ServiceEntry', 'default', 'a'), undefined);
    assert.is(await store.delete('ServiceEntry', 'default', 'a'), undefined);
    const again = await store.put(se('a'));
    assert.is(again.metadata.generation, 1, 'a recreated resource starts over');
  });

  t('putAll: one revision, all or nothing', async ({ store }) => {
    const a = await store.put(se('a'));
    const before = await store.revision();
    const rs = await store.putAll([se('b'), se('c'), se('a', ['changed.example.com'])]);
    assert.is(rs.length, 3);
    assert.ok(rs.every((r) => r.metadata.resourceVersion === rs[0]!.metadata.resourceVersion), 'one revision for the batch');
    assert.ok(Number(rs[0]!.metadata.resourceVersion) > before);
    const revision = await store.revision();
    try {
      await store.putAll([se('d'), { ...se('a', ['x.example.com']), metadata: { name: 'a', namespace: 'default', resourceVersion: a.metadata.resourceVersion } }]);
      assert.unreachable('conflicting batch accepted');
    } catch (err) {
      assert.instance(err, ConflictError);
    }
    assert.is(await store.get('ServiceEntry', 'default', 'd'), undefined, 'nothing of a failed batch is written');
    assert.equal((await store.get('ServiceEntry', 'default', 'a'))?.spec.hosts, ['changed.example.com']);
    assert.is(await store.revision(), revision);
    try {
      await store.putAll([se('e'), se('e')]);
      assert.unreachable('duplicate in batch accepted');
    } catch (err) {
      assert.match((err as Error).message, /twice/);
    }
    assert.is(await store.get('ServiceEntry', 'default', 'e'), undefined);
  });

  t('watch: events after the call, in order, with revisions', async ({ store }) => {
    await store.put(se('before'));
    const events: WatchEvent[] = [];
    const stop = store.watch((e) => events.push(e));
    const a = await store.put(se('a'));
    const a2 = await store.put(se('a', ['a2.example.com']));
    const batch = await store.putAll([se('b'), se('c')]);
    const del = await store.delete('ServiceEntry', 'default', 'a');
    await until(() => events.length >= 5, 'five watch events');
    assert.equal(
      events.map((e) => `${e.type} ${e.resource.metadata.name}`),
      ['ADDED a', 'MODIFIED a', 'ADDED b', 'ADDED c', 'DELETED a'],
    );
    assert.equal(
      events.map((e) => e.revision),
      [a, a2, batch[0]!, batch[1]!, del!].map((r) => Number(r.metadata.resourceVersion)),
    );
    assert.equal(events[1]!.resource, a2);
    assert.is(events[4]!.resource.metadata.resourceVersion, String(events[4]!.revision));
    stop();
    await store.put(se('after'));
    await new Promise((r) => setTimeout(r, 100));
    assert.is(events.length, 5, 'no events after stop');
  });

  t('watch: a throwing listener does not break writes or other listeners', async ({ store }) => {
    const seen: string[] = [];
    const warn = process.emitWarning;
    process.emitWarning = () => undefined;
    try {
      const stop1 = store.watch(() => {
        throw new Error('listener bug');
      });
      const stop2 = store.watch((e) => seen.push(e.resource.metadata.name));
      await store.put(se('a'));
      await until(() => seen.length === 1, 'the second listener');
      stop1();
      stop2();
    } finally {
      process.emitWarning = warn;
    }
  });

  t('modules: content-addressed, versions listed, immutable', async ({ store }) => {
    const bytes = new Uint8Array(randomBytes(2_500_000));
    const m1 = await store.putModule('add-header', '1.0.0', bytes, 'admin:abc');
    assert.match(m1.sha256, /^[0-9a-f]{64}$/);
    assert.is(m1.size, bytes.length);
    assert.is(m1.uploadedBy, 'admin:abc');
    const m2 = await store.putModule('add-header', '1.0.1', bytes, 'admin:def');
    assert.is(m2.sha256, m1.sha256, 'same bytes, same digest');
    const other = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
    const m3 = await store.putModule('other', '1', other, 'admin:abc');
    assert.equal(await store.getModule(m1.sha256), bytes);
    assert.equal(await store.getModule(m3.sha256), other);
    assert.is(await store.getModule('0'.repeat(64)), undefined);
    assert.equal((await store.listModules()).map((m) => `${m.name}@${m.version}`), ['add-header@1.0.0', 'add-header@1.0.1', 'other@1']);
    assert.equal((await store.listModules('other')).map((m) => m.sha256), [m3.sha256]);
    const again = await store.putModule('add-header', '1.0.0', bytes, 'admin:zzz');
    assert.equal(again, m1, 'the same upload again returns the first record');
    try {
      await store.putModule('add-header', '1.0.0', other, 'admin:abc');
      assert.unreachable('version overwritten');
    } catch (err) {
      assert.instance(err, ConflictError);
    }
  });

  if (backend.openPeer) {
    t('a second store on the same data sees writes, and watches them', async (ctx) => {
      const peer = await backend.openPeer!();
      ctx.extra.push(peer);
      const events: WatchEvent[] = [];
      peer.watch((e) => events.push(e));
      const a = await ctx.store.put(se('shared'));
      await until(() => events.length === 1, "the peer's watch event");
      assert.is(events[0]!.type, 'ADDED');
      assert.equal(events[0]!.resource, a);
      assert.equal(await peer.get('ServiceEntry', 'default', 'shared'), a);
      const b = await peer.put({ ...se('shared', ['b.example.com']), metadata: { name: 'shared', namespace: 'default', resourceVersion: a.metadata.resourceVersion } });
      try {
        await ctx.store.put({ ...se('shared', ['c.example.com']), metadata: { name: 'shared', namespace: 'default', resourceVersion: a.metadata.resourceVersion } });
        assert.unreachable('stale write through the other replica accepted');
      } catch (err) {
        assert.instance(err, ConflictError);
      }
      await until(() => events.length === 2, 'the peer seeing its own write');
      assert.equal(events[1]!.resource, b);
    });
  }
  return t;
}

// ---------------------------------------------------------------------------------------------

conformance({ name: 'memory', open: async () => new MemoryStore() }).run();

const sqliteDirs: string[] = [];
conformance({
  name: 'sqlite',
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wasmesh-sqlite-'));
    sqliteDirs.push(dir);
    return new SqliteStore({ dataDir: dir });
  },
  teardown: async () => {
    for (const dir of sqliteDirs) await rm(dir, { recursive: true, force: true });
  },
}).run();

const sqlite = suite('sqlite store: durability');

sqlite('reopening finds everything written; WAL and synchronous=FULL', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-sqlite-'));
  try {
    const a = new SqliteStore({ dataDir: dir });
    const written = await a.putAll([se('a'), se('b')]);
    await a.putModule('m', '1', new Uint8Array([1, 2, 3]), 'admin:x');
    await a.close();
    const b = new SqliteStore({ dataDir: dir });
    assert.equal(await b.list('ServiceEntry'), written);
    assert.is(await b.revision(), Number(written[0]!.metadata.resourceVersion));
    assert.is((await b.listModules()).length, 1);
    await b.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

sqlite('nothing acknowledged is lost on SIGKILL', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-sqlite-kill-'));
  try {
    const writer = fileURLToPath(new URL('./support/sqlite-writer.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Map<string, string>();
    let buffer = '';
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', () => resolve());
      child.stdout!.on('data', (d: Buffer) => {
        buffer += d.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) {
          const [, name, rv] = line.split(' ');
          acked.set(name!, rv!);
        }
        // Kill right after an acknowledged write, while the writer is busy with the next ones.
        if (acked.size >= 50 && child.exitCode === null) child.kill('SIGKILL');
      });
    });
    assert.is(await exited, 'SIGKILL');
    assert.ok(acked.size >= 50, `acknowledged ${acked.size} writes`);
    const store = new SqliteStore({ dataDir: dir });
    for (const [name, rv] of acked) {
      const r = await store.get('ServiceEntry', 'default', name);
      assert.ok(r, `acknowledged ${name} survived`);
      assert.is(r!.metadata.resourceVersion, rv);
    }
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

sqlite.run();

// ---------------------------------------------------------------------------------------------

const etcd = ensureEtcd();
if (!etcd.bin) {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!! SKIPPING the etcd store conformance suite: ${etcd.reason}\n!! CI must install etcd: bash scripts/etcd.sh install\n${line}\n\n`);
} else {
  let server: TestEtcd | undefined;
  let prefix = '';
  const open = async (): Promise<ConfigStore> => EtcdStore.open({ ...parseEtcdUrl(server!.storeUrl), prefix });
  conformance({
    name: 'etcd',
    setup: async () => {
      server = await startEtcd(etcd.bin!);
    },
    teardown: async () => {
      await server?.stop();
    },
    // A fresh key prefix per test: each test sees an empty store on the one etcd.
    open: async () => {
      prefix = `/wasmesh-test-${randomBytes(6).toString('hex')}/`;
      return open();
    },
    openPeer: open,
  }).run();
}
