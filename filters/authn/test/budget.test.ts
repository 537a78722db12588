// Signature checks count in the callback's CPU budget: the host prices each jws_verify call in fuel
// (by algorithm and key size) before doing it, so a budget that covers an ES256 check stops an ES512
// one (priced 13x higher), and a filter cannot verify more than its budget pays for.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ISSUER, jwks, load, mint, send, signingKey, status } from './support.ts';

test('a budget that pays for ES256 does not pay for ES512: the VM traps (cpu_budget) and FAIL_CLOSE answers 503', async () => {
  const es256 = await signingKey('ES256', 'a');
  const es512 = await signingKey('ES512', 'b');
  const config = { rules: [{ issuer: ISSUER, jwks: jwks(es256, es512) }] };
  // 2.5 M units: ES256 costs 0.24 M (+0.16 M for the first import), ES512 3.2 M.
  const h = await load(config, { cpuBudget: 2_500_000, failStrategy: 'FAIL_CLOSE' });
  try {
    assert.is(status(await send(h, { authorization: `Bearer ${await mint(es256)}` })), 200);
    const r = await send(h, { authorization: `Bearer ${await mint(es512)}` });
    assert.is(status(r), 503);
    assert.ok(r.logs.some((l) => /CPU budget exceeded/.test(l.message)), JSON.stringify(r.logs));
  } finally {
    await h.close();
  }
  const roomy = await load(config, { cpuBudget: 20_000_000 });
  try {
    assert.is(status(await send(roomy, { authorization: `Bearer ${await mint(es512)}` })), 200, 'with room for it, ES512 verifies');
  } finally {
    await roomy.close();
  }
});

test.run();
