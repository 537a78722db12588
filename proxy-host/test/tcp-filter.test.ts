// The L4 filter seam (tcp/tcp-filter.ts) and the ClientHello reader: the chain's order, pause and
// resume, rewrites, close and failures, first on the chain alone, then in a proxy on real sockets.
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { Proxy } from '../src/proxy.ts';
import { parseClientHello } from '../src/tcp/client-hello.ts';
import { CLOSE, CONTINUE, PAUSE, TcpFilterChain, type TcpFilter, type TcpFilterCallbacks, type TcpFilterFactory, type TcpFilterStatus } from '../src/tcp/tcp-filter.ts';
import { cluster, proxyConfig } from './support/config.ts';

type Emitted = { direction: string; data: string; end: boolean };

function harness(filters: TcpFilter[]): { chain: TcpFilterChain; out: Emitted[]; closed: string[] } {
  const out: Emitted[] = [];
  const closed: string[] = [];
  const factories: TcpFilterFactory[] = filters.map((f, i) => ({ name: `f${i}`, create: () => f }));
  const chain = new TcpFilterChain(factories, { emit: (direction, data, end) => out.push({ direction, data: data.toString(), end }), close: (r) => closed.push(r) });
  return { chain, out, closed };
}

const tag = (t: string) => (data: Buffer): TcpFilterStatus => ({ action: 'continue', data: Buffer.from(`${data}${t}`) });
const INFO = { direction: 'outbound', downstreamAddress: '', downstreamPort: 0, localAddress: '', localPort: 0, serverName: undefined, route: undefined, cluster: undefined, upstreamAddress: undefined, peerPrincipal: undefined } as const;

test('downstream data runs the filters first to last, upstream data last to first; no filters pass bytes as they are', () => {
  const { chain, out } = harness([
    { onDownstreamData: tag('a'), onUpstreamData: tag('a') },
    { onDownstreamData: tag('b'), onUpstreamData: tag('b') },
  ]);
  chain.data('downstream', Buffer.from('x'), false);
  chain.data('upstream', Buffer.from('y'), true);
  assert.equal(out, [
    { direction: 'downstream', data: 'xab', end: false },
    { direction: 'upstream', data: 'yba', end: true },
  ]);
  const empty = harness([]);
  empty.chain.data('downstream', Buffer.from('z'), true);
  assert.equal(empty.out, [{ direction: 'downstream', data: 'z', end: true }]);
});

test('pause holds the bytes and gives them again with the next chunk; resume lets them go without a new call', () => {
  const calls: string[] = [];
  let callbacks: TcpFilterCallbacks | undefined;
  const lines: TcpFilter = {
    onNewConnection: (cb) => {
      callbacks = cb;
      return 'continue';
    },
    // Holds bytes until a full line is there.
    onDownstreamData: (data, end) => {
      calls.push(data.toString());
      return data.includes('\n') || end ? CONTINUE : PAUSE;
    },
  };
  const { chain, out } = harness([lines, { onDownstreamData: tag('!') }]);
  assert.ok(chain.newConnection(INFO));
  chain.data('downstream', Buffer.from('hel'), false);
  chain.data('downstream', Buffer.from('lo\nwor'), false);
  assert.equal(calls, ['hel', 'hello\nwor']);
  assert.equal(out, [{ direction: 'downstream', data: 'hello\nwor!', end: false }]);
  chain.data('downstream', Buffer.from('ld'), false);
  assert.is(chain.held('downstream'), 2);
  callbacks!.resumeDownstream();
  assert.equal(out[1], { direction: 'downstream', data: 'ld!', end: false });
  assert.is(chain.held('downstream'), 0);
});

test('close from a callback, from onNewConnection, or a throwing filter closes the connection', () => {
  const a = harness([{ onDownstreamData: () => CLOSE }]);
  a.chain.data('downstream', Buffer.from('x'), false);
  assert.is(a.closed.length, 1);
  assert.is(a.out.length, 0);
  const b = harness([{ onNewConnection: () => 'close' }]);
  assert.is(b.chain.newConnection(INFO), false);
  assert.is(b.closed.length, 1);
  const c = harness([
    {
      onUpstreamData: () => {
        throw new Error('boom');
      },
    },
  ]);
  c.chain.data('upstream', Buffer.from('x'), false);
  assert.match(c.closed[0]!, /boom/);
});

test('the ClientHello reader: SNI and ALPN from a real ClientHello, also split byte by byte; other bytes are not TLS', async () => {
  const server = net.createServer((s) => {
    s.once('data', (first: Buffer) => {
      helloBytes = first;
      s.destroy();
    });
  });
  let helloBytes: Buffer = Buffer.alloc(0);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => {
    const c = tls.connect({ host: '127.0.0.1', port, servername: 'Api.Example.com', ALPNProtocols: ['h2', 'istio'] });
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  });
  server.close();
  const r = parseClientHello(helloBytes);
  assert.equal(r, { kind: 'tls', serverName: 'api.example.com', alpn: ['h2', 'istio'] });
  for (let n = 1; n < helloBytes.length; n += 37) assert.is(parseClientHello(helloBytes.subarray(0, n)).kind, 'incomplete');
  assert.is(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'not-tls');
  const bad = Buffer.from(helloBytes);
  bad[5] = 0x02; // a ServerHello, not a ClientHello
  assert.is(parseClientHello(bad).kind, 'not-tls');
});

test('in a proxy: a filter rewrites client bytes, sees the upstream answer, and closes on QUIT', async () => {
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (c: Buffer) => s.write(`echo:${c}`));
    s.on('end', () => s.end());
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const appPort = (app.address() as net.AddressInfo).port;
  const events: string[] = [];
  const upper: TcpFilterFactory = {
    name: 'upper',
    create: () => ({
      onNewConnection: () => (events.push('new'), 'continue'),
      onDownstreamData: (data) => (data.includes('QUIT') ? CLOSE : { action: 'continue', data: Buffer.from(data.toString().toUpperCase()) }),
      onUpstreamData: (data) => (events.push(`up:${data}`), CONTINUE),
      onDownstreamClose: (kind) => void events.push(`down-close:${kind}`),
      onDone: () => void events.push('done'),
    }),
  };
  const name = 'outbound|7000||db';
  const base = proxyConfig({ clusters: [cluster(name, [{ port: appPort }])] });
  const config: ProxyConfig = { ...base, tcp: { outbound: [{ port: 7000, tlsRoutes: [], tcpRoutes: [{ name: 'db', match: [], destinations: [{ cluster: name, weight: 100 }] }] }] } };
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', tcpOutbound: [{ port: 7000, listenPort: 0 }], tcpFilters: () => [upper] }, config);
  try {
    const s = net.connect({ host: '127.0.0.1', port: proxy.tcpOutboundPorts().get(7000)! });
    let got = '';
    s.on('data', (c: Buffer) => (got += c));
    s.write('hello');
    for (let i = 0; i < 100 && got !== 'echo:HELLO'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.is(got, 'echo:HELLO');
    const closed = new Promise((resolve) => s.on('close', resolve));
    s.write('QUIT');
    await closed;
    for (let i = 0; i < 50 && !events.includes('done'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(events, ['new', 'up:echo:HELLO', 'down-close:local', 'done']);
  } finally {
    await proxy.stop(100);
    app.close();
  }
});

test.run();
