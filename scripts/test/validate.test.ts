// wasmesh validate (scripts/cli/validate.ts): the command around mesh/src/validate.ts, whose own
// tests are mesh/test/validate.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../cli/validate.ts';

const EXAMPLES = fileURLToPath(new URL('../../schemas/examples/', import.meta.url));

function capture(): { out: { write(t: string): void }; text(): string } {
  let text = '';
  return { out: { write: (t: string) => void (text += t) }, text: () => text };
}

test('wasmesh validate: ok on the examples', async () => {
  const out = capture();
  const err = capture();
  const code = await run(['-f', EXAMPLES], out.out, err.out);
  assert.is(code, 0, err.text());
  assert.match(out.text(), /^ok: \d+ documents\n$/);
});

test('wasmesh validate: prints formatted errors and exits 1', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'wasmesh-validate-'));
  try {
    const file = `${tmp}/mesh.yaml`;
    await writeFile(
      file,
      [
        'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\nspec: {hosts: [reviews.default.svc.cluster.local], ports: [{number: 9080, name: http}]}',
        'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: [{name: v1}, {name: v2}]}',
        'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 80}\n    - {destination: {host: reviews, subset: v2}, weight: 10}',
      ].join('\n---\n'),
    );
    const out = capture();
    const err = capture();
    assert.is(await run(['-f', file], out.out, err.out), 1);
    assert.is(out.text(), '');
    assert.is(
      err.text(),
      `${file}#3 line 19 VirtualService default/reviews: spec.http[0].route[1].weight: weights add up to 90, not 100\n1 error in 3 documents\n`,
    );
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('wasmesh validate: usage errors exit 2', async () => {
  const err = capture();
  assert.is(await run([], capture().out, err.out), 2);
  assert.match(err.text(), 'no files');
  assert.is(await run(['-f', 'x.yaml', '--mode', 'cloud'], capture().out, capture().out), 2);
  const out = capture();
  assert.is(await run(['--help'], out.out, capture().out), 0);
  assert.match(out.text(), 'usage: wasmesh validate -f <file>');
});

test.run();
