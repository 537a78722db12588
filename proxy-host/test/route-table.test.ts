import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RouteAction, RouteConfig, RouteMatch, VirtualHostConfig, WeightedCluster } from '../../mesh/src/proxy-config.ts';
import {
  RouteTable,
  applyHeaderOperations,
  pickWeighted,
  redirectLocation,
  rewritePath,
  type RequestView,
} from '../src/routing/route-table.ts';

/** mulberry32: a small seeded PRNG so the distribution tests are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function forward(cluster: string): RouteAction {
  return { kind: 'forward', destinations: [{ cluster, weight: 100 }], timeoutMs: 0 };
}

function route(name: string, match: RouteMatch[] = []): RouteConfig {
  return { name, match, action: forward(name) };
}

function vhost(name: string, domains: string[], routes: RouteConfig[] = [route(name)]): VirtualHostConfig {
  return { name, domains, routes };
}

function req(partial: Partial<RequestView> = {}): RequestView {
  return { authority: 'svc', path: '/', method: 'GET', headers: [], ...partial };
}

/** Name of the route a single-virtual-host table picks for `r`, or undefined. */
function routeName(match: RouteMatch, r: Partial<RequestView>): string | undefined {
  const table = new RouteTable([vhost('vh', ['svc'], [route('hit', [match])])]);
  return table.match(req(r))?.route.name;
}

// --- domain selection -------------------------------------------------------------------------------

const domainTable = new RouteTable([
  vhost('exact', ['api.example.com']),
  vhost('exact-port', ['api.example.com:8080']),
  vhost('wild-short', ['*.example.com']),
  vhost('wild-long', ['*.eu.example.com']),
  vhost('prefix-wild', ['foo.*']),
  vhost('catch-all', ['*']),
]);

function vhostFor(table: RouteTable, authority: string): string | undefined {
  return table.match(req({ authority }))?.virtualHost.name;
}

test('domains: exact host wins, case-insensitive, port stripped when host:port is not a domain', () => {
  assert.is(vhostFor(domainTable, 'api.example.com'), 'exact');
  assert.is(vhostFor(domainTable, 'API.Example.COM'), 'exact');
  assert.is(vhostFor(domainTable, 'api.example.com:9090'), 'exact');
  assert.is(vhostFor(domainTable, 'api.example.com:8080'), 'exact-port');
  assert.is(domainTable.selectVirtualHost('api.example.com:80')?.name, 'exact');
});

test('domains: longest wildcard suffix, then prefix wildcard, then *', () => {
  assert.is(vhostFor(domainTable, 'x.eu.example.com'), 'wild-long');
  assert.is(vhostFor(domainTable, 'x.us.example.com'), 'wild-short');
  assert.is(vhostFor(domainTable, 'x.us.example.com:443'), 'wild-short');
  // The wildcard stands for at least one character.
  assert.is(vhostFor(domainTable, 'example.com'), 'catch-all');
  assert.is(vhostFor(domainTable, 'eu.example.com'), 'wild-short');
  assert.is(vhostFor(domainTable, 'foo.bar'), 'prefix-wild');
  assert.is(vhostFor(domainTable, 'other.org'), 'catch-all');
});

test('domains: no catch-all means no match; duplicate domain keeps the first virtual host', () => {
  const table = new RouteTable([vhost('a', ['svc', 'Other']), vhost('b', ['svc'])]);
  assert.is(vhostFor(table, 'nope'), undefined);
  assert.is(vhostFor(table, 'svc'), 'a');
  assert.is(vhostFor(table, 'other:81'), 'a');
});

// --- route selection --------------------------------------------------------------------------------

test('uri exact: matches the path without its query', () => {
  const m: RouteMatch = { uri: { exact: '/a/b' } };
  assert.is(routeName(m, { path: '/a/b' }), 'hit');
  assert.is(routeName(m, { path: '/a/b?x=1' }), 'hit');
  assert.is(routeName(m, { path: '/a/bc' }), undefined);
  assert.is(routeName(m, { path: '/a' }), undefined);
});

test('uri prefix', () => {
  const m: RouteMatch = { uri: { prefix: '/api/' } };
  assert.is(routeName(m, { path: '/api/v1' }), 'hit');
  assert.is(routeName(m, { path: '/api/' }), 'hit');
  assert.is(routeName(m, { path: '/api' }), undefined);
  assert.is(routeName(m, { path: '/x/api/' }), undefined);
  // The prefix has to fit in the path part, not run into the query.
  assert.is(routeName({ uri: { prefix: '/a?b' } }, { path: '/a?b=1' }), undefined);
});

test('uri regex is a full match on the path without query', () => {
  const m: RouteMatch = { uri: { regex: '/users/[0-9]+' } };
  assert.is(routeName(m, { path: '/users/42' }), 'hit');
  assert.is(routeName(m, { path: '/users/42?full=1' }), 'hit');
  assert.is(routeName(m, { path: '/users/42/orders' }), undefined);
  assert.is(routeName(m, { path: '/v2/users/42' }), undefined);
  assert.is(routeName({ uri: { regex: 'a|/b' } }, { path: '/b' }), 'hit');
  assert.is(routeName({ uri: { regex: 'a|/b' } }, { path: '/bb' }), undefined);
});

test('method exact and regex', () => {
  assert.is(routeName({ method: { exact: 'POST' } }, { method: 'POST' }), 'hit');
  assert.is(routeName({ method: { exact: 'POST' } }, { method: 'GET' }), undefined);
  assert.is(routeName({ method: { regex: 'GET|HEAD' } }, { method: 'HEAD' }), 'hit');
  assert.is(routeName({ method: { regex: 'GET|HEAD' } }, { method: 'GETX' }), undefined);
});

test('authority exact and prefix (on the raw :authority)', () => {
  assert.is(routeName({ authority: { exact: 'svc' } }, { authority: 'svc' }), 'hit');
  assert.is(routeName({ authority: { exact: 'svc' } }, { authority: 'svc:80' }), undefined);
  assert.is(routeName({ authority: { prefix: 'svc' } }, { authority: 'svc:80' }), 'hit');
});

test('headers: exact, prefix, regex, present, absent; a repeated header compares its first value', () => {
  const h = ['x-user', 'alice', 'x-tier', 'gold-plus', 'x-multi', 'first', 'x-multi', 'second'];
  assert.is(routeName({ headers: { 'x-user': { exact: 'alice' } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-user': { exact: 'bob' } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-tier': { prefix: 'gold' } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-tier': { prefix: 'silver' } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-tier': { regex: 'gold-.*' } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-tier': { regex: 'gold' } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-user': { present: true } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-none': { present: true } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-none': { present: false } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-user': { present: false } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-none': { exact: '' } } }, { headers: h }), undefined);
  assert.is(routeName({ headers: { 'x-multi': { exact: 'first' } } }, { headers: h }), 'hit');
  assert.is(routeName({ headers: { 'x-multi': { exact: 'second' } } }, { headers: h }), undefined);
  // All conditions of one match must hold.
  const both: RouteMatch = { headers: { 'x-user': { exact: 'alice' }, 'x-tier': { exact: 'bronze' } } };
  assert.is(routeName(both, { headers: h }), undefined);
});

test('headers: pseudo-headers are matched like any other entry', () => {
  assert.is(routeName({ headers: { ':scheme': { exact: 'https' } } }, { headers: [':scheme', 'https'] }), 'hit');
});

test('withoutHeaders: inverted conditions (a string condition needs the header present, as in Istio)', () => {
  const m: RouteMatch = { withoutHeaders: { 'x-canary': { exact: 'true' } } };
  assert.is(routeName(m, { headers: ['x-canary', 'false'] }), 'hit');
  assert.is(routeName(m, { headers: ['x-canary', 'true'] }), undefined);
  assert.is(routeName(m, { headers: [] }), undefined);
  const absent: RouteMatch = { withoutHeaders: { 'x-debug': { present: true } } };
  assert.is(routeName(absent, { headers: [] }), 'hit');
  assert.is(routeName(absent, { headers: ['x-debug', '1'] }), undefined);
  const present: RouteMatch = { withoutHeaders: { 'x-debug': { present: false } } };
  assert.is(routeName(present, { headers: ['x-debug', '1'] }), 'hit');
  assert.is(routeName(present, { headers: [] }), undefined);
  const regex: RouteMatch = { withoutHeaders: { 'user-agent': { regex: '.*bot.*' } } };
  assert.is(routeName(regex, { headers: ['user-agent', 'curl/8'] }), 'hit');
  assert.is(routeName(regex, { headers: ['user-agent', 'googlebot/2'] }), undefined);
});

test('queryParams: exact, regex, present and absent on the decoded query', () => {
  assert.is(routeName({ queryParams: { v: { exact: '2' } } }, { path: '/p?a=1&v=2' }), 'hit');
  assert.is(routeName({ queryParams: { v: { exact: '2' } } }, { path: '/p?v=3' }), undefined);
  assert.is(routeName({ queryParams: { v: { exact: '2' } } }, { path: '/p' }), undefined);
  assert.is(routeName({ queryParams: { q: { exact: 'a b/c' } } }, { path: '/p?q=a%20b%2Fc' }), 'hit');
  assert.is(routeName({ queryParams: { q: { exact: 'a b' } } }, { path: '/p?q=a+b' }), 'hit');
  assert.is(routeName({ queryParams: { 'my key': { exact: 'x' } } }, { path: '/p?my%20key=x' }), 'hit');
  assert.is(routeName({ queryParams: { id: { regex: '[0-9]+' } } }, { path: '/p?id=123' }), 'hit');
  assert.is(routeName({ queryParams: { id: { regex: '[0-9]+' } } }, { path: '/p?id=12a' }), undefined);
  assert.is(routeName({ queryParams: { debug: { present: true } } }, { path: '/p?debug' }), 'hit');
  assert.is(routeName({ queryParams: { debug: { present: true } } }, { path: '/p?nodebug=1' }), undefined);
  assert.is(routeName({ queryParams: { debug: { present: false } } }, { path: '/p?x=1' }), 'hit');
  assert.is(routeName({ queryParams: { debug: { present: false } } }, { path: '/p?debug=0' }), undefined);
  // First value of a repeated parameter; a fragment is not part of the query.
  assert.is(routeName({ queryParams: { v: { exact: '1' } } }, { path: '/p?v=1&v=2' }), 'hit');
  assert.is(routeName({ queryParams: { v: { exact: '2' } } }, { path: '/p?v=1&v=2' }), undefined);
  assert.is(routeName({ queryParams: { v: { exact: '1' } } }, { path: '/p?v=1#frag' }), 'hit');
  // Malformed percent-encoding is compared raw.
  assert.is(routeName({ queryParams: { v: { exact: '%zz' } } }, { path: '/p?v=%zz' }), 'hit');
});

test('port', () => {
  assert.is(routeName({ port: 8080 }, { port: 8080 }), 'hit');
  assert.is(routeName({ port: 8080 }, { port: 9090 }), undefined);
  assert.is(routeName({ port: 8080 }, {}), undefined);
});

test('first match wins; any match of a route passes; matchIndex; -1 without conditions', () => {
  const table = new RouteTable([
    vhost('vh', ['svc'], [
      route('v2', [{ headers: { 'x-v': { exact: '2' } } }, { uri: { prefix: '/v2/' } }]),
      route('api', [{ uri: { prefix: '/api' } }]),
      route('api-more-specific', [{ uri: { prefix: '/api/users' } }]),
      route('default'),
    ]),
  ]);
  let hit = table.match(req({ path: '/api/users' }))!;
  assert.is(hit.route.name, 'api');
  assert.is(hit.matchIndex, 0);
  hit = table.match(req({ path: '/v2/x' }))!;
  assert.is(hit.route.name, 'v2');
  assert.is(hit.matchIndex, 1);
  hit = table.match(req({ path: '/api', headers: ['x-v', '2'] }))!;
  assert.is(hit.route.name, 'v2');
  assert.is(hit.matchIndex, 0);
  hit = table.match(req({ path: '/other' }))!;
  assert.is(hit.route.name, 'default');
  assert.is(hit.matchIndex, -1);
  assert.is(hit.virtualHost.name, 'vh');
  // Hits are built at construction: the same object comes back for the same route and match.
  assert.is(table.match(req({ path: '/other' })), hit);
});

test('no route matching gives undefined; an empty RouteMatch matches everything', () => {
  const table = new RouteTable([vhost('vh', ['svc'], [route('only', [{ method: { exact: 'PUT' } }])])]);
  assert.is(table.match(req()), undefined);
  assert.is(routeName({}, { path: '/anything?x' }), 'hit');
});

test('query parsing state does not leak between requests', () => {
  const table = new RouteTable([
    vhost('vh', ['svc'], [route('q', [{ queryParams: { a: { exact: '1' } } }]), route('rest')]),
  ]);
  assert.is(table.match(req({ path: '/?a=1' }))?.route.name, 'q');
  assert.is(table.match(req({ path: '/?a=2' }))?.route.name, 'rest');
  assert.is(table.match(req({ path: '/' }))?.route.name, 'rest');
  assert.is(table.match(req({ path: '/x?b=0&a=1' }))?.route.name, 'q');
});

// --- weighted split ---------------------------------------------------------------------------------

function share(destinations: WeightedCluster[], picks: number, seed: number): Map<string, number> {
  const rand = prng(seed);
  const counts = new Map<string, number>();
  for (let i = 0; i < picks; i++) {
    const d = pickWeighted(destinations, rand());
    counts.set(d.cluster, (counts.get(d.cluster) ?? 0) + 1);
  }
  for (const [k, v] of counts) counts.set(k, (100 * v) / picks);
  return counts;
}

test('pickWeighted: 90/10 over 20,000 picks within 1.5 points', () => {
  const s = share([{ cluster: 'stable', weight: 90 }, { cluster: 'canary', weight: 10 }], 20_000, 1);
  assert.ok(Math.abs(s.get('stable')! - 90) <= 1.5, `stable ${s.get('stable')}`);
  assert.ok(Math.abs(s.get('canary')! - 10) <= 1.5, `canary ${s.get('canary')}`);
});

test('pickWeighted: three-way split and zero weights', () => {
  const s = share(
    [
      { cluster: 'a', weight: 50 },
      { cluster: 'off', weight: 0 },
      { cluster: 'b', weight: 30 },
      { cluster: 'c', weight: 20 },
    ],
    20_000,
    7,
  );
  assert.ok(Math.abs(s.get('a')! - 50) <= 1.5);
  assert.ok(Math.abs(s.get('b')! - 30) <= 1.5);
  assert.ok(Math.abs(s.get('c')! - 20) <= 1.5);
  assert.is(s.get('off'), undefined);
});

test('pickWeighted: boundaries', () => {
  const d: WeightedCluster[] = [{ cluster: 'a', weight: 90 }, { cluster: 'b', weight: 10 }];
  assert.is(pickWeighted(d, 0).cluster, 'a');
  assert.is(pickWeighted(d, 0.8999).cluster, 'a');
  assert.is(pickWeighted(d, 0.9).cluster, 'b');
  assert.is(pickWeighted(d, 0.999999).cluster, 'b');
  assert.is(pickWeighted([{ cluster: 'only', weight: 100 }], 0.5).cluster, 'only');
  assert.throws(() => pickWeighted([], 0.5));
});

// --- header operations ------------------------------------------------------------------------------

test('applyHeaderOperations: remove drops every occurrence', () => {
  const h = ['a', '1', 'x-drop', '2', 'b', '3', 'x-drop', '4'];
  applyHeaderOperations(h, { remove: ['X-Drop'] });
  assert.equal(h, ['a', '1', 'b', '3']);
});

test('applyHeaderOperations: set replaces the first occurrence, drops the rest, appends when missing', () => {
  const h = ['x-v', 'old1', 'a', '1', 'x-v', 'old2'];
  applyHeaderOperations(h, { set: { 'x-v': 'new', 'X-New': 'n' } });
  assert.equal(h, ['x-v', 'new', 'a', '1', 'x-new', 'n']);
});

test('applyHeaderOperations: add appends even when present', () => {
  const h = ['x-a', '1'];
  applyHeaderOperations(h, { add: { 'x-a': '2' } });
  assert.equal(h, ['x-a', '1', 'x-a', '2']);
});

test('applyHeaderOperations: order is remove, set, add', () => {
  const h = ['x-r', 'gone', 'x-s', 'old', 'keep', 'k'];
  applyHeaderOperations(h, {
    add: { 'x-s': 'added', 'x-r': 'readded' },
    set: { 'x-s': 'set', 'x-r': 'set-after-remove' },
    remove: ['x-r', 'x-s'],
  });
  assert.equal(h, ['keep', 'k', 'x-s', 'set', 'x-r', 'set-after-remove', 'x-s', 'added', 'x-r', 'readded']);
});

test('applyHeaderOperations: undefined and empty ops are no-ops; pseudo-headers are left alone', () => {
  const h = [':path', '/', 'a', '1'];
  applyHeaderOperations(h, undefined);
  applyHeaderOperations(h, {});
  assert.equal(h, [':path', '/', 'a', '1']);
  applyHeaderOperations(h, { remove: [':path'], set: { ':path': '/x' }, add: { ':method': 'PUT' } });
  assert.equal(h, [':path', '/', 'a', '1']);
});

// --- rewrites and redirects -------------------------------------------------------------------------

test('rewritePath: prefix match replaces the prefix and keeps the rest and the query', () => {
  const m: RouteMatch = { uri: { prefix: '/api/v1' } };
  assert.is(rewritePath('/api/v1/users?id=3', m, '/v2'), '/v2/users?id=3');
  assert.is(rewritePath('/api/v1', m, '/v2'), '/v2');
  assert.is(rewritePath('/api/v1/x', { uri: { prefix: '/api/v1/' } }, '/'), '/x');
  assert.is(rewritePath('/api/v1', m, ''), '/');
});

test('rewritePath: exact, regex or no uri match replaces the whole path and keeps the query', () => {
  assert.is(rewritePath('/old?x=1', { uri: { exact: '/old' } }, '/new'), '/new?x=1');
  assert.is(rewritePath('/u/42?x=1', { uri: { regex: '/u/[0-9]+' } }, '/user'), '/user?x=1');
  assert.is(rewritePath('/a/b', undefined, '/c'), '/c');
  assert.is(rewritePath('/a/b?q', { headers: { x: { exact: 'y' } } }, '/c'), '/c?q');
});

const redirectBase = { kind: 'redirect', status: 301 } as const;
const incoming = { scheme: 'http', authority: 'shop.example.com', path: '/cart?item=1' };

test('redirectLocation: uri replaces the path and keeps the query unless it brings its own', () => {
  assert.is(redirectLocation({ ...redirectBase, uri: '/basket' }, incoming), 'http://shop.example.com/basket?item=1');
  assert.is(redirectLocation({ ...redirectBase, uri: '/basket?new=2' }, incoming), 'http://shop.example.com/basket?new=2');
  assert.is(redirectLocation({ ...redirectBase }, incoming), 'http://shop.example.com/cart?item=1');
});

test('redirectLocation: authority, scheme and port', () => {
  assert.is(redirectLocation({ ...redirectBase, authority: 'new.example.com' }, incoming), 'http://new.example.com/cart?item=1');
  assert.is(redirectLocation({ ...redirectBase, scheme: 'https' }, incoming), 'https://shop.example.com/cart?item=1');
  assert.is(
    redirectLocation({ ...redirectBase, scheme: 'https' }, { ...incoming, authority: 'shop.example.com:80' }),
    'https://shop.example.com/cart?item=1',
  );
  assert.is(
    redirectLocation({ ...redirectBase, scheme: 'https' }, { ...incoming, authority: 'shop.example.com:8080' }),
    'https://shop.example.com:8080/cart?item=1',
  );
  assert.is(redirectLocation({ ...redirectBase, port: 8443 }, incoming), 'http://shop.example.com:8443/cart?item=1');
  assert.is(
    redirectLocation({ ...redirectBase, port: 9000 }, { ...incoming, authority: 'shop.example.com:8080' }),
    'http://shop.example.com:9000/cart?item=1',
  );
  assert.is(redirectLocation({ ...redirectBase, scheme: 'https', port: 443 }, incoming), 'https://shop.example.com/cart?item=1');
  assert.is(
    redirectLocation({ ...redirectBase, authority: 'x.io', scheme: 'https', uri: '/' }, { ...incoming, path: '/' }),
    'https://x.io/',
  );
  assert.is(
    redirectLocation({ ...redirectBase, port: 8080 }, { ...incoming, authority: '[::1]:80' }),
    'http://[::1]:8080/cart?item=1',
  );
});

test.run();
