// Request ids and 5xx logging. The orchestrator gives every answer an `x-request-id` (the caller's,
// when well-formed); a real internal error — its etcd store stopped under it — answers 500 naming
// only the id, and the log line with that id has the method, the URL and the error's stack. The
// proxy's admin endpoint answers an unexpected exception the same way and keeps serving.
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildApp } from '../../../orchestrator/src/app.ts';
import { TokenStore } from '../../../orchestrator/src/auth/tokens.ts';
import { EtcdStore, parseEtcdUrl } from '../../../orchestrator/src/store/etcd-store.ts';
import { MemoryStore } from '../../../orchestrator/src/store/memory-store.ts';
import { ensureEtcd, startEtcd } from '../../../orchestrator/test/support/etcd.ts';
import { startAdminServer, type AdminSource } from '../../../proxy-host/src/admin/admin-server.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface LogLine {
  level: number;
  reqId?: string;
  method?: string;
  url?: string;
  status?: number;
  msg: string;
  err?: { type: string; message: string; stack: string };
}

function capture(): { stream: { write(line: string): void }; lines: () => LogLine[] } {
  const raw: string[] = [];
  return { stream: { write: (line) => void raw.push(line) }, lines: () => raw.map((l) => JSON.parse(l) as LogLine) };
}

const ids = suite('request ids');

ids('every answer carries x-request-id; a well-formed incoming id is kept, anything else replaced', async () => {
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  const app = buildApp({ store: new MemoryStore(), tokens, logStream: capture().stream });
  try {
    const generated = await app.inject({ method: 'GET', url: '/healthz' });
    assert.match(String(generated.headers['x-request-id']), UUID);
    assert.is((await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-7f3a.01' } })).headers['x-request-id'], 'trace-7f3a.01');
    for (const bad of ['x'.repeat(129), 'two words', 'a,b', '']) {
      const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': bad } });
      assert.match(String(res.headers['x-request-id']), UUID, `"${bad}" was not replaced`);
    }
    const unauthenticated = await app.inject({ method: 'GET', url: '/apis', headers: { 'x-request-id': 'r-401' } });
    assert.is(unauthenticated.statusCode, 401);
    assert.is(unauthenticated.headers['x-request-id'], 'r-401');
    const missing = await app.inject({ method: 'GET', url: '/nope', headers: { authorization: `Bearer ${admin}`, 'x-request-id': 'r-404' } });
    assert.is(missing.statusCode, 404);
    assert.is(missing.headers['x-request-id'], 'r-404');
    // A URL the router cannot decode never reaches the hooks; it still gets the id and a reason.
    const badUrl = await app.inject({ method: 'GET', url: '/apis/%zz/a/b', headers: { authorization: `Bearer ${admin}`, 'x-request-id': 'r-400' } });
    assert.is(badUrl.statusCode, 400);
    assert.is(badUrl.headers['x-request-id'], 'r-400');
    assert.match(badUrl.json().errors[0].message, '%zz');
  } finally {
    await app.close();
  }
});

ids('a 5xx a route answers by itself (no CA: 503) is logged with its id too', async () => {
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  const log = capture();
  const app = buildApp({ store: new MemoryStore(), tokens, logStream: log.stream });
  try {
    const res = await app.inject({ method: 'GET', url: '/ca/trust-bundle', headers: { authorization: `Bearer ${admin}`, 'x-request-id': 'no-ca-1' } });
    assert.is(res.statusCode, 503);
    const line = log.lines().find((l) => l.reqId === 'no-ca-1');
    assert.ok(line, 'no log line with the request id');
    assert.equal([line!.level, line!.method, line!.url, line!.status], [50, 'GET', '/ca/trust-bundle', 503]);
  } finally {
    await app.close();
  }
});

ids.run();

const etcd = ensureEtcd();
if (!etcd.bin) {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!! SKIPPING the 5xx logging test on a failing etcd store: ${etcd.reason}\n!! CI must install etcd: bash scripts/etcd.sh install\n${line}\n\n`);
} else {
  const failing = suite('5xx on a failing store');
  failing('etcd stopped under the orchestrator: 500 naming only the request id; the log line has the id, method, URL and stack', async () => {
    const server = await startEtcd(etcd.bin!);
    const store = await EtcdStore.open({ ...parseEtcdUrl(server.storeUrl), prefix: `/request-ids-${randomUUID()}/`, dialTimeout: 2000 });
    const tokens = TokenStore.inMemory();
    const admin = { authorization: `Bearer ${tokens.create('admin')}` };
    const log = capture();
    const app = buildApp({ store, tokens, logStream: log.stream });
    try {
      await app.ready();
      assert.is((await app.inject({ method: 'GET', url: '/apis/virtualservices', headers: admin })).statusCode, 200, 'the store works before etcd stops');
      await server.stop();

      const res = await app.inject({ method: 'GET', url: '/apis/virtualservices?namespace=bookinfo', headers: { ...admin, 'x-request-id': 'user-report.42' } });
      assert.is(res.statusCode, 500);
      assert.is(res.headers['x-request-id'], 'user-report.42');
      assert.equal(res.json(), {
        code: 'WASMESH_ORCH_INTERNAL',
        errors: [{ document: 'request', path: '', message: 'internal error, request id user-report.42 (see the orchestrator log)' }],
      });
      const line = log.lines().find((l) => l.reqId === 'user-report.42');
      assert.ok(line, `no log line with the request id in:\n${JSON.stringify(log.lines())}`);
      assert.is(line!.level, 50);
      assert.is(line!.method, 'GET');
      assert.is(line!.url, '/apis/virtualservices?namespace=bookinfo');
      assert.ok(line!.err && line.err.message !== '', 'the error is logged');
      assert.match(line!.err!.stack, /\n\s+at /, 'with its stack');

      // A write, with an id the caller did not give (a malformed one is replaced): the same, with a fresh id.
      const write = await app.inject({
        method: 'POST',
        url: '/apply',
        headers: { ...admin, 'x-request-id': 'not well formed', 'content-type': 'application/json' },
        payload: { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'x', namespace: 'default' }, spec: { hosts: ['x.example.com'], ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] } },
      });
      assert.is(write.statusCode, 500);
      const id = String(write.headers['x-request-id']);
      assert.match(id, UUID);
      assert.is(write.json().errors[0].message, `internal error, request id ${id} (see the orchestrator log)`);
      assert.not.match(write.body, /etcd|UNAVAILABLE|ECONNREFUSED|127\.0\.0\.1|\n\s+at /, 'nothing internal leaks into the answer');
      assert.ok(log.lines().some((l) => l.reqId === id && l.method === 'POST' && l.url === '/apply' && l.err), 'the write is logged with its id');
      assert.is(log.lines().filter((l) => l.level >= 50).length, 2, 'one line per failed request');

      assert.is((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the process keeps serving');
    } finally {
      await app.close();
      await store.close();
      await server.stop();
    }
  });
  failing.run();
}

const admin = suite('proxy admin');

function get(port: number, path: string): Promise<{ status: number; body: string; id: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, id: res.headers['x-request-id'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

admin('an unexpected exception: 500 with a logged request id, nothing internal in the answer, and the admin keeps serving', async () => {
  // A source whose config dump throws, as a bug in it would: the admin server's own behaviour is
  // what is tested. Its log goes to stderr; the test reads it there.
  const source: AdminSource = {
    renderPrometheus: () => '',
    configDump: () => {
      throw new Error('dump failed: internal detail');
    },
    clustersDump: () => ({}),
    serverInfo: () => ({}),
    ready: () => true,
  };
  const server = await startAdminServer(source, { host: '127.0.0.1', port: 0 });
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  // Kept, not printed: the expected error line would read like a failure in the test output.
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const res = await get(server.port, '/config_dump');
    assert.is(res.status, 500);
    assert.match(String(res.id), UUID);
    assert.is(res.body, `internal error, request id ${res.id}\n`);
    const line = written.find((l) => l.includes(String(res.id)));
    assert.ok(line, 'no log line with the id');
    assert.match(line!, 'GET /config_dump');
    assert.match(line!, 'dump failed: internal detail');
    assert.match(line!, /\n\s+at /);
    assert.is((await get(server.port, '/healthz')).status, 200);
    // Paths that are not URLs a base resolves ("//", "//host") are paths like any other.
    for (const path of ['//', '///x', '//[::1', '/\\\\']) assert.is((await get(server.port, path)).status, 404, path);
  } finally {
    process.stderr.write = write;
    await server.close();
  }
});

admin.run();
