import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { EndpointConfig, LoadBalancerConfig } from '../../mesh/src/proxy-config.ts';
import { EndpointState } from '../src/upstream/endpoint.ts';
import { createLoadBalancer, type LbContext, type LoadBalancer } from '../src/upstream/load-balancer.ts';
import { RingHashLoadBalancer } from '../src/upstream/lb/ring-hash.ts';

/** mulberry32: a small seeded PRNG. */
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

/** The load balancers draw from Math.random; swap in a seeded generator so the counts are reproducible. */
function seeded<T>(seed: number, fn: () => T): T {
  const original = Math.random;
  Math.random = prng(seed);
  try {
    return fn();
  } finally {
    Math.random = original;
  }
}

function endpointConfigs(n: number, weights: number[] = []): EndpointConfig[] {
  return Array.from({ length: n }, (_, i) => ({
    address: `10.0.0.${i + 1}`,
    port: 8080,
    labels: {},
    weight: weights[i] ?? 1,
  }));
}

function states(n: number, weights: number[] = []): EndpointState[] {
  return endpointConfigs(n, weights).map((c) => new EndpointState(c));
}

const EMPTY: LbContext = { headers: [] };

function counts(lb: LoadBalancer, picks: number, ctx: LbContext = EMPTY): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < picks; i++) {
    const e = lb.pick(ctx)!;
    out.set(e.key, (out.get(e.key) ?? 0) + 1);
  }
  return out;
}

const RR: LoadBalancerConfig = { simple: 'ROUND_ROBIN' };
const LR: LoadBalancerConfig = { simple: 'LEAST_REQUEST' };
const RANDOM: LoadBalancerConfig = { simple: 'RANDOM' };

test('endpoint state: key, weight default, health epoch', () => {
  const e = new EndpointState({ address: '10.1.2.3', port: 80, labels: {}, weight: 0 });
  assert.is(e.key, '10.1.2.3:80');
  assert.is(e.weight, 1);
  assert.is(e.healthy, true);
  assert.is(e.activeRequests, 0);
  assert.is(new EndpointState({ address: 'fd00::1', port: 80, labels: {}, weight: 3 }).key, '[fd00::1]:80');
  e.reconfigure({ address: '10.1.2.3', port: 80, labels: { v: '2' }, weight: 4 });
  assert.is(e.weight, 4);
  assert.equal(e.config.labels, { v: '2' });
  assert.throws(() => e.reconfigure({ address: '10.1.2.4', port: 80, labels: {}, weight: 1 }));
});

test('empty endpoint list picks nothing', () => {
  for (const c of [RR, LR, RANDOM, { consistentHash: { httpHeaderName: 'x' } }] as LoadBalancerConfig[]) {
    assert.is(createLoadBalancer(c, []).pick({ headers: ['x', 'a'] }), undefined);
  }
});

// --- ROUND_ROBIN ------------------------------------------------------------------------------------

test('ROUND_ROBIN: exact rotation with equal weights', () => {
  const eps = states(3);
  const lb = createLoadBalancer(RR, eps);
  const seq = Array.from({ length: 9 }, () => lb.pick(EMPTY)!);
  const start = eps.indexOf(seq[0]!);
  for (let i = 0; i < 9; i++) assert.is(seq[i], eps[(start + i) % 3]);
});

test('ROUND_ROBIN: weights are honoured exactly per cycle and interleaved (smooth WRR)', () => {
  const eps = states(3, [5, 1, 1]);
  const lb = createLoadBalancer(RR, eps);
  const seq = Array.from({ length: 7 }, () => eps.indexOf(lb.pick(EMPTY)!));
  // nginx's smooth weighted round robin for 5/1/1.
  assert.equal(seq, [0, 0, 1, 0, 2, 0, 0]);
  const c = counts(lb, 7 * 100);
  assert.is(c.get(eps[0]!.key), 500);
  assert.is(c.get(eps[1]!.key), 100);
  assert.is(c.get(eps[2]!.key), 100);
});

test('ROUND_ROBIN: unhealthy endpoints are skipped; panic mode uses all of them', () => {
  const eps = states(3);
  const lb = createLoadBalancer(RR, eps);
  eps[1]!.healthy = false;
  const c = counts(lb, 100);
  assert.is(c.get(eps[1]!.key), undefined);
  assert.is(c.get(eps[0]!.key), 50);
  assert.is(c.get(eps[2]!.key), 50);
  assert.is(lb.panic, false);
  for (const e of eps) e.healthy = false;
  const p = counts(lb, 90);
  assert.is(lb.panic, true);
  for (const e of eps) assert.is(p.get(e.key), 30);
  eps[2]!.healthy = true;
  const back = counts(lb, 10);
  assert.is(back.get(eps[2]!.key), 10);
  assert.is(lb.panic, false);
});

test('PASSTHROUGH behaves as ROUND_ROBIN over the configured endpoints', () => {
  const eps = states(4);
  const lb = createLoadBalancer({ simple: 'PASSTHROUGH' }, eps);
  const c = counts(lb, 400);
  for (const e of eps) assert.is(c.get(e.key), 100);
});

// --- LEAST_REQUEST ----------------------------------------------------------------------------------

test('LEAST_REQUEST: a busy endpoint loses every comparison against an idle one', () => {
  seeded(11, () => {
    const eps = states(3);
    eps[0]!.activeRequests = 10;
    const lb = createLoadBalancer(LR, eps);
    const c = counts(lb, 3000);
    // Two distinct candidates out of three always include an idle endpoint.
    assert.is(c.get(eps[0]!.key), undefined);
    assert.ok(Math.abs(c.get(eps[1]!.key)! - 1500) < 150);
  });
});

test('LEAST_REQUEST: prefers idle endpoints among many', () => {
  seeded(12, () => {
    const eps = states(10);
    for (let i = 0; i < 9; i++) eps[i]!.activeRequests = 5;
    const lb = createLoadBalancer(LR, eps);
    const c = counts(lb, 10_000);
    // The idle endpoint is picked whenever it is one of the two candidates: 2/10 of the time,
    // twice its uniform share.
    const idle = c.get(eps[9]!.key)! / 10_000;
    assert.ok(Math.abs(idle - 0.2) < 0.02, `idle share ${idle}`);
  });
});

test('LEAST_REQUEST: in-flight load evens out; idle picks follow weights', () => {
  seeded(13, () => {
    const eps = states(4);
    const lb = createLoadBalancer(LR, eps);
    for (let i = 0; i < 400; i++) lb.pick(EMPTY)!.activeRequests++;
    const active = eps.map((e) => e.activeRequests);
    assert.ok(Math.max(...active) - Math.min(...active) <= 3, `active ${active}`);

    const weighted = states(2, [3, 1]);
    const wlb = createLoadBalancer(LR, weighted);
    const c = counts(wlb, 20_000);
    const heavy = c.get(weighted[0]!.key)! / 20_000;
    assert.ok(Math.abs(heavy - 0.75) < 0.02, `heavy share ${heavy}`);
    // Under load the in-flight count per unit of weight evens out.
    for (let i = 0; i < 400; i++) wlb.pick(EMPTY)!.activeRequests++;
    const ratio = weighted[0]!.activeRequests / weighted[1]!.activeRequests;
    assert.ok(Math.abs(ratio - 3) < 0.2, `ratio ${ratio}`);
  });
});

test('LEAST_REQUEST: skips unhealthy endpoints and panics when none is healthy', () => {
  seeded(14, () => {
    const eps = states(3);
    eps[2]!.healthy = false;
    const lb = createLoadBalancer(LR, eps);
    assert.is(counts(lb, 500).get(eps[2]!.key), undefined);
    for (const e of eps) e.healthy = false;
    const c = counts(lb, 3000);
    assert.is(lb.panic, true);
    for (const e of eps) assert.ok(c.get(e.key)! > 800);
  });
});

// --- RANDOM -----------------------------------------------------------------------------------------

test('RANDOM: roughly uniform, weighted when weights differ', () => {
  seeded(21, () => {
    const eps = states(4);
    const c = counts(createLoadBalancer(RANDOM, eps), 40_000);
    for (const e of eps) assert.ok(Math.abs(c.get(e.key)! / 40_000 - 0.25) < 0.015);
    const w = states(3, [1, 2, 7]);
    const cw = counts(createLoadBalancer(RANDOM, w), 40_000);
    assert.ok(Math.abs(cw.get(w[0]!.key)! / 40_000 - 0.1) < 0.015);
    assert.ok(Math.abs(cw.get(w[1]!.key)! / 40_000 - 0.2) < 0.015);
    assert.ok(Math.abs(cw.get(w[2]!.key)! / 40_000 - 0.7) < 0.015);
  });
});

test('RANDOM: unhealthy skipped, panic over all', () => {
  seeded(22, () => {
    const eps = states(3);
    const lb = createLoadBalancer(RANDOM, eps);
    eps[0]!.healthy = false;
    assert.is(counts(lb, 1000).get(eps[0]!.key), undefined);
    for (const e of eps) e.healthy = false;
    const c = counts(lb, 3000);
    assert.is(lb.panic, true);
    for (const e of eps) assert.ok(c.get(e.key)! > 800);
  });
});

// --- consistent hash --------------------------------------------------------------------------------

const BY_HEADER: LoadBalancerConfig = { consistentHash: { httpHeaderName: 'X-User' } };

function userCtx(i: number): LbContext {
  return { headers: ['x-user', `user-${i}`] };
}

function assignment(lb: LoadBalancer, keys: number): string[] {
  return Array.from({ length: keys }, (_, i) => lb.pick(userCtx(i))!.key);
}

test('ring hash: ring size is minimumRingSize per weight unit', () => {
  assert.is(new RingHashLoadBalancer({ httpHeaderName: 'x' }, states(1)).ringSize, 1024);
  assert.is(new RingHashLoadBalancer({ httpHeaderName: 'x' }, states(3)).ringSize, 3 * 1024);
  assert.is(new RingHashLoadBalancer({ httpHeaderName: 'x', minimumRingSize: 64 }, states(3)).ringSize, 3 * 64);
  // Weights are reduced by their GCD: 20/40/60 is 1/2/3.
  assert.is(new RingHashLoadBalancer({ httpHeaderName: 'x' }, states(3, [20, 40, 60])).ringSize, 6 * 1024);
});

test('ring hash: same key, same endpoint, across calls and rebuilds (in any endpoint order)', () => {
  const lb = createLoadBalancer(BY_HEADER, states(5));
  const first = assignment(lb, 2000);
  assert.equal(assignment(lb, 2000), first);
  const rebuilt = createLoadBalancer(BY_HEADER, states(5).reverse());
  assert.equal(assignment(rebuilt, 2000), first);
  // Header names are matched lowercase; a repeated header hashes its first value.
  assert.is(lb.pick({ headers: ['x-user', 'user-7', 'x-user', 'other'] })!.key, first[7]);
});

test('ring hash: keys spread evenly, and by weight', () => {
  const eps = states(4);
  const c = new Map<string, number>();
  for (const k of assignment(createLoadBalancer(BY_HEADER, eps), 20_000)) c.set(k, (c.get(k) ?? 0) + 1);
  for (const e of eps) assert.ok(Math.abs(c.get(e.key)! / 20_000 - 0.25) < 0.03, `${e.key} ${c.get(e.key)}`);
  const w = states(2, [1, 3]);
  const cw = new Map<string, number>();
  for (const k of assignment(createLoadBalancer(BY_HEADER, w), 20_000)) cw.set(k, (cw.get(k) ?? 0) + 1);
  assert.ok(Math.abs(cw.get(w[1]!.key)! / 20_000 - 0.75) < 0.03);
});

test('ring hash: removing one of N endpoints moves only its keys (~1/N)', () => {
  const n = 5;
  const keys = 10_000;
  const before = assignment(createLoadBalancer(BY_HEADER, states(n)), keys);
  const removed = states(n)[2]!.key;
  const after = assignment(createLoadBalancer(BY_HEADER, states(n).filter((e) => e.key !== removed)), keys);
  let moved = 0;
  for (let i = 0; i < keys; i++) {
    if (before[i] !== after[i]) {
      moved++;
      assert.is(before[i], removed, 'only keys of the removed endpoint move');
    }
  }
  assert.ok(Math.abs(moved / keys - 1 / n) < 0.04, `moved ${moved / keys}`);
  // Adding it back restores the original assignment.
  assert.equal(assignment(createLoadBalancer(BY_HEADER, states(n)), keys), before);
});

test('ring hash: an unhealthy endpoint hands over its keys only; panic keeps the ring', () => {
  const eps = states(4);
  const lb = createLoadBalancer(BY_HEADER, eps);
  const before = assignment(lb, 4000);
  eps[1]!.healthy = false;
  const during = assignment(lb, 4000);
  for (let i = 0; i < 4000; i++) {
    if (before[i] === eps[1]!.key) assert.is.not(during[i], eps[1]!.key);
    else assert.is(during[i], before[i]);
  }
  for (const e of eps) e.healthy = false;
  assert.equal(assignment(lb, 4000), before);
  assert.is(lb.panic, true);
  for (const e of eps) e.healthy = true;
  assert.equal(assignment(lb, 4000), before);
});

test('ring hash: a request without the key gets a random endpoint', () => {
  seeded(31, () => {
    const eps = states(4);
    const c = counts(createLoadBalancer(BY_HEADER, eps), 4000, { headers: ['other', 'x'] });
    for (const e of eps) assert.ok(c.get(e.key)! > 800);
  });
});

test('ring hash by source IP and by query parameter', () => {
  const eps = states(5);
  const byIp = createLoadBalancer({ consistentHash: { useSourceIp: true } }, eps);
  const ip = byIp.pick({ headers: [], sourceIp: '192.168.1.10' })!;
  for (let i = 0; i < 20; i++) assert.is(byIp.pick({ headers: [], sourceIp: '192.168.1.10' }), ip);
  const ips = new Set(Array.from({ length: 200 }, (_, i) => byIp.pick({ headers: [], sourceIp: `10.9.${i}.1` })!.key));
  assert.is(ips.size, 5);

  const byQuery = createLoadBalancer({ consistentHash: { httpQueryParameterName: 'session' } }, eps);
  const q = byQuery.pick({ headers: [], path: '/p?a=1&session=abc&b=2' })!;
  for (let i = 0; i < 20; i++) {
    assert.is(byQuery.pick({ headers: [], path: `/other?session=abc&n=${i}` }), q);
    assert.is(byQuery.pick({ headers: [], path: '/p?session=abc#top' }), q);
  }
  // Same value, same endpoint, whatever the key: the header hash of "abc" equals the query hash.
  const byHeader = createLoadBalancer({ consistentHash: { httpHeaderName: 'session' } }, eps);
  assert.is(byHeader.pick({ headers: ['session', 'abc'] }), q);
  // "sessionx" is another parameter.
  const values = new Set(
    Array.from({ length: 200 }, (_, i) => byQuery.pick({ headers: [], path: `/p?sessionx=abc&session=${i}` })!.key),
  );
  assert.is(values.size, 5);
});

test('ring hash by cookie: present cookie is the key; missing cookie is generated with ttl and path', () => {
  const eps = states(5);
  const lb = createLoadBalancer({ consistentHash: { httpCookie: { name: 'sid', path: '/app', ttlSeconds: 3600 } } }, eps);
  const withCookie = lb.pick({ headers: ['cookie', 'theme=dark; sid=abc123; lang=en'] })!;
  assert.is(lb.lastSetCookie, undefined);
  for (let i = 0; i < 10; i++) {
    assert.is(lb.pick({ headers: ['cookie', 'sid=abc123'] }), withCookie);
    assert.is(lb.pick({ headers: ['cookie', 'a=1', 'cookie', 'sid="abc123"'] }), withCookie);
  }
  // "xsid" is not "sid".
  lb.pick({ headers: ['cookie', 'xsid=abc123'] });
  assert.ok(lb.lastSetCookie !== undefined);

  const first = lb.pick({ headers: [] })!;
  const setCookie = lb.lastSetCookie!;
  const m = /^sid="([0-9a-f]{16})"; Max-Age=3600; Path=\/app; HttpOnly$/.exec(setCookie);
  assert.ok(m, setCookie);
  // The client sends the cookie back and stays on the same endpoint.
  for (let i = 0; i < 10; i++) {
    assert.is(lb.pick({ headers: ['cookie', `sid=${m![1]}`] }), first);
    assert.is(lb.lastSetCookie, undefined);
  }
  // Generated cookies spread new clients over the endpoints.
  const spread = new Set(Array.from({ length: 200 }, () => lb.pick(EMPTY)!.key));
  assert.is(spread.size, 5);
});

test('ring hash by cookie: ttl 0 is a session cookie, no ttl generates nothing', () => {
  const session = createLoadBalancer({ consistentHash: { httpCookie: { name: 'sid', ttlSeconds: 0 } } }, states(3));
  session.pick(EMPTY);
  assert.match(session.lastSetCookie!, /^sid="[0-9a-f]{16}"; HttpOnly$/);
  const none = createLoadBalancer({ consistentHash: { httpCookie: { name: 'sid' } } }, states(3));
  assert.ok(none.pick(EMPTY));
  assert.is(none.lastSetCookie, undefined);
});

test('createLoadBalancer: hash config without a key source picks at random', () => {
  seeded(41, () => {
    const eps = states(3);
    const c = counts(createLoadBalancer({ consistentHash: {} }, eps), 3000);
    for (const e of eps) assert.ok(c.get(e.key)! > 800);
  });
});

test.run();
