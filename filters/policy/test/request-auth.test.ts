// requestPrincipals and request.auth.* conditions, evaluated from the JWT payload the authn filter
// leaves in the stream's filter state (`wasmesh.jwt_payload`). The end-to-end path (a real token
// verified by filters/authn, then this filter) is in filters/authn/test/proxy.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { allow, decide, deny } from './support.ts';

const payload = {
  iss: 'https://accounts.example.com',
  sub: 'alice',
  aud: ['bookinfo', 'https://api.example.com'],
  azp: 'web-client',
  groups: ['readers', 'dev'],
  org: { team: 'books', roles: ['admin'] },
  email_verified: true,
};
const withJwt = (p: object = payload) => ({ properties: { 'wasmesh.jwt_payload': JSON.stringify(p) } });
const from = (source: object) => [allow([{ from: [{ source }] }])];
const when = (c: object) => [allow([{ when: [c] }])];

test('requestPrincipals: exact iss/sub, *, prefix and suffix forms; absent without a payload', async () => {
  for (const p of ['https://accounts.example.com/alice', '*', 'https://accounts.example.com/*', '*/alice']) {
    assert.is(await decide(from({ requestPrincipals: [p] }), {}, withJwt()), 200, p);
    assert.is(await decide(from({ requestPrincipals: [p] })), 403, `${p} without a token`);
  }
  assert.is(await decide(from({ requestPrincipals: ['https://accounts.example.com/bob'] }), {}, withJwt()), 403);
  assert.is(await decide(from({ requestPrincipals: ['*'] }), {}, withJwt({ iss: 'x' })), 403, 'no sub: no principal');
  assert.is(await decide(from({ requestPrincipals: ['*'] }), {}, { properties: { 'wasmesh.jwt_payload': '' } }), 403, 'the authn filter clears it: empty');
  assert.is(await decide(from({ requestPrincipals: ['*'] }), {}, { properties: { 'wasmesh.jwt_payload': 'not json' } }), 403);
});

test('notRequestPrincipals: DENY requests without a principal (Istio\'s require-JWT pattern)', async () => {
  const policies = [deny([{ from: [{ source: { notRequestPrincipals: ['*'] } }] }])];
  assert.is(await decide(policies), 403);
  assert.is(await decide(policies, {}, withJwt()), 200);
  const notAlice = [deny([{ from: [{ source: { notRequestPrincipals: ['*/alice'] } }] }])];
  assert.is(await decide(notAlice, {}, withJwt()), 200);
  assert.is(await decide(notAlice, {}, withJwt({ ...payload, sub: 'bob' })), 403);
});

test('request.auth.principal, audiences (a list), presenter', async () => {
  assert.is(await decide(when({ key: 'request.auth.principal', values: ['https://accounts.example.com/alice'] }), {}, withJwt()), 200);
  assert.is(await decide(when({ key: 'request.auth.audiences', values: ['https://api.example.com'] }), {}, withJwt()), 200, 'any of a list');
  assert.is(await decide(when({ key: 'request.auth.audiences', values: ['other'] }), {}, withJwt()), 403);
  assert.is(await decide(when({ key: 'request.auth.audiences', values: ['bookinfo'] }), {}, withJwt({ ...payload, aud: 'bookinfo' })), 200, 'a string aud');
  assert.is(await decide(when({ key: 'request.auth.presenter', values: ['web-*'] }), {}, withJwt()), 200);
  assert.is(await decide(when({ key: 'request.auth.presenter', notValues: ['web-client'] }), {}, withJwt()), 403);
});

test('request.auth.claims: strings, list claims (any element), nested claims; other types never match', async () => {
  assert.is(await decide(when({ key: 'request.auth.claims[groups]', values: ['dev'] }), {}, withJwt()), 200);
  assert.is(await decide(when({ key: 'request.auth.claims[groups]', values: ['ops'] }), {}, withJwt()), 403);
  assert.is(await decide(when({ key: 'request.auth.claims[groups]', notValues: ['dev'] }), {}, withJwt()), 403, 'notValues: no element may match');
  assert.is(await decide(when({ key: 'request.auth.claims[org][team]', values: ['books'] }), {}, withJwt()), 200);
  assert.is(await decide(when({ key: 'request.auth.claims[org][roles]', values: ['admin'] }), {}, withJwt()), 200);
  assert.is(await decide(when({ key: 'request.auth.claims[org][missing]', values: ['*'] }), {}, withJwt()), 403);
  assert.is(await decide(when({ key: 'request.auth.claims[org]', values: ['*'] }), {}, withJwt()), 403, 'an object is no string');
  assert.is(await decide(when({ key: 'request.auth.claims[email_verified]', values: ['true'] }), {}, withJwt()), 403, 'a boolean is no string');
  assert.is(await decide(when({ key: 'request.auth.claims[sub]', values: ['alice'] }), {}, withJwt()), 200);
});

test('a header cannot stand in for the payload', async () => {
  assert.is(await decide(from({ requestPrincipals: ['*'] }), { headers: { 'wasmesh.jwt_payload': JSON.stringify(payload), 'x-jwt-payload': 'e30' } }), 403);
});

test.run();
