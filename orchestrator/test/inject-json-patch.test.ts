import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createPatch, escapePointerToken, pointer, unescapePointerToken } from '../src/inject/json-patch.ts';
import { applyPatch } from './support/json-patch-apply.ts';

test('RFC 6901 escaping: "~" before "/", and back', () => {
  assert.is(escapePointerToken('sidecar.istio.io/inject'), 'sidecar.istio.io~1inject');
  assert.is(escapePointerToken('a~/b'), 'a~0~1b');
  assert.is(escapePointerToken('~1'), '~01', 'a literal "~1" is not read back as "/"');
  assert.is(unescapePointerToken('~01'), '~1');
  assert.is(pointer(['metadata', 'annotations', 'wasmesh.io/status']), '/metadata/annotations/wasmesh.io~1status');
});

test('equal values give no operations', () => {
  assert.equal(createPatch({ a: [1, { b: 'c' }], d: null }, { d: null, a: [1, { b: 'c' }] }), []);
  assert.equal(createPatch({ a: 1, u: undefined }, { a: 1 }), [], 'undefined properties count as absent');
});

test('object keys: add, remove, replace; missing objects are created whole', () => {
  const before = { metadata: { name: 'p', labels: { app: 'a' } }, spec: { n: 1 } };
  const after = { metadata: { name: 'p', labels: { app: 'b' }, annotations: { 'x/y': '1', 'a~b': '2' } }, spec: {} };
  const ops = createPatch(before, after);
  assert.equal(ops, [
    { op: 'replace', path: '/metadata/labels/app', value: 'b' },
    { op: 'add', path: '/metadata/annotations', value: { 'x/y': '1', 'a~b': '2' } },
    { op: 'remove', path: '/spec/n' },
  ]);
  assert.equal(applyPatch(before, ops), after);
});

test('arrays: appends as "/-", elements compared in place, surplus removed from the end', () => {
  const before = { containers: [{ name: 'app', image: 'a:1' }], volumes: [1, 2, 3, 4] };
  const after = { containers: [{ name: 'app', image: 'a:2' }, { name: 'wasmesh-proxy' }], volumes: [1, 9] };
  const ops = createPatch(before, after);
  assert.equal(ops, [
    { op: 'replace', path: '/containers/0/image', value: 'a:2' },
    { op: 'add', path: '/containers/-', value: { name: 'wasmesh-proxy' } },
    { op: 'replace', path: '/volumes/1', value: 9 },
    { op: 'remove', path: '/volumes/3' },
    { op: 'remove', path: '/volumes/2' },
  ]);
  assert.equal(applyPatch(before, ops), after);
});

test('type changes replace whole; a different root replaces ""', () => {
  assert.equal(createPatch({ a: [1] }, { a: { 0: 1 } }), [{ op: 'replace', path: '/a', value: { 0: 1 } }]);
  assert.equal(createPatch([1], { a: 1 }), [{ op: 'replace', path: '', value: { a: 1 } }]);
  assert.equal(applyPatch([1], createPatch([1], 'x')), 'x');
});

test('operations do not share objects with the value they came from', () => {
  const after = { a: { b: [1] } };
  const ops = createPatch({}, after);
  after.a.b.push(2);
  assert.equal(ops, [{ op: 'add', path: '/a', value: { b: [1] } }]);
});

// Random JSON pairs: applying the diff (with an apply written separately) always gives `after`.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomJson(r: () => number, depth: number): unknown {
  const keys = ['a', 'b', 'c/d', 'e~f', '~1', '', '0', '-'];
  const x = r();
  if (depth <= 0 || x < 0.3) return [null, true, false, 0, 1.5, 'x', 'y', ''][Math.floor(r() * 8)];
  if (x < 0.65) return Array.from({ length: Math.floor(r() * 4) }, () => randomJson(r, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 4); i > 0; i--) o[keys[Math.floor(r() * keys.length)]!] = randomJson(r, depth - 1);
  return o;
}

function mutateRandomly(r: () => number, v: unknown, depth: number): unknown {
  if (r() < 0.2) return randomJson(r, depth);
  if (Array.isArray(v)) {
    const out = v.map((x) => mutateRandomly(r, x, depth - 1));
    if (r() < 0.3) out.push(randomJson(r, 2));
    if (r() < 0.3) out.splice(0, Math.floor(r() * out.length));
    return out;
  }
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (r() > 0.2) out[k] = mutateRandomly(r, x, depth - 1);
    if (r() < 0.3) out[['new', 'a/b', '~'][Math.floor(r() * 3)]!] = randomJson(r, 2);
    return out;
  }
  return v;
}

test('apply(diff(a, b), a) equals b on 2000 random pairs', () => {
  const r = rng(42);
  for (let i = 0; i < 2000; i++) {
    const a = randomJson(r, 4);
    const b = mutateRandomly(r, a, 4);
    const ops = createPatch(a, b);
    assert.equal(applyPatch(a, ops), b, `pair ${i}: ${JSON.stringify(a)} -> ${JSON.stringify(b)} via ${JSON.stringify(ops)}`);
  }
});

test.run();
