// Errors in YAML text point at the line of the offending field, not the document's first line, and
// a misspelt field or kind gets a "did you mean".
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocuments } from '../src/documents.ts';
import { closest, didYouMean } from '../src/suggest.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';

const TEXT = `# three documents; the errors are deep inside the last two
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews.example.com]
  ports: [{ number: 80, name: http, protocol: HTTP }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews.example.com]
  http:
    - route:
        - destination: { host: reviews.example.com }
          wieght: 60
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: split }
spec:
  hosts: [reviews.example.com]
  http:
    - route:
        - destination: { host: reviews.example.com }
          weight: 60
        - destination:
            host: reviews.example.com
          weight: 30
`;

test('schema and cross-document errors carry the line of their field, and formatErrors prints it', () => {
  const parsed = parseDocuments(TEXT, 'mesh.yaml');
  assert.equal(parsed.errors, []);
  assert.is(parsed.documents[1]!.source.line, 9, 'the document starts at line 9');
  const errors = validateDocuments(parsed.documents).errors;
  assert.equal(errors.map((e) => [e.path, e.line]), [
    ['/spec/http/0/route/0/wieght', 18],
    ['/spec/http/0/route/1/weight', 31],
  ]);
  assert.is(
    formatErrors(errors),
    [
      'mesh.yaml#2 line 18 VirtualService default/reviews: spec.http[0].route[0].wieght: unsupported field "wieght" (did you mean "weight"?)',
      'mesh.yaml#3 line 31 VirtualService default/split: spec.http[0].route[1].weight: weights add up to 90, not 100',
    ].join('\n'),
  );
});

test('errors carry the column of their field’s key too, and YAML syntax errors their line and column (the console marks them)', () => {
  const errors = validateDocuments(parseDocuments(TEXT, 'mesh.yaml').documents).errors;
  // "          wieght: 60" and "          weight: 30": the key starts in column 11.
  assert.equal(errors.map((e) => [e.line, e.column]), [
    [18, 11],
    [31, 11],
  ]);
  const list = validateDocuments(parseDocuments('kind: List\nitems:\n  - apiVersion: networking.istio.io/v1\n    kind: ServiceEntry\n    metadata: { name: a }\n    spec: { hosts: [a.example.com], prots: [] }\n', 'l.yaml').documents).errors;
  const typo = list.find((e) => e.path === '/spec/prots')!;
  assert.equal([typo.line, typo.column], [6, 37]);
  const bad = parseDocuments('kind: ServiceEntry\nmetadata: { name: a }\nspec:\n  hosts: [a\n', 'bad.yaml').errors;
  assert.ok(bad.length > 0);
  assert.ok(bad.every((e) => e.line !== undefined && e.column !== undefined), JSON.stringify(bad));
  assert.match(bad[0]!.message, `at line ${bad[0]!.line}, column ${bad[0]!.column}:`);
});

test('a missing field points at the line of the object it is missing from; a document-level error at the document', () => {
  const text = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r }
spec:
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
---
- 1
`;
  const parsed = parseDocuments(text, 'dr.yaml');
  const errors = validateDocuments(parsed.documents).errors;
  const missing = errors.find((e) => e.path === '/spec')!;
  assert.match(missing.message, 'missing required field "host"');
  assert.is(missing.line, 4);
  const notObject = errors.find((e) => e.source?.index === 2)!;
  assert.is(notObject.line, 8);
});

test('documents of a List or a top-level array are looked up under their place in the file', () => {
  const text = `kind: List
items:
  - apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: { name: a }
    spec:
      hosts: [a.example.com]
      ports: [{ number: 80, name: http, protocol: HTTP }]
  - apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: { name: b }
    spec:
      hosts: [b.example.com]
      prots: [{ number: 80, name: http, protocol: HTTP }]
`;
  const errors = validateDocuments(parseDocuments(text, 'list.yaml').documents).errors;
  const typo = errors.find((e) => e.path === '/spec/prots')!;
  assert.is(typo.line, 14);
  assert.is(typo.message, 'unsupported field "prots" (did you mean "ports"?)');
});

test('an unknown kind suggests the closest supported one; far-off names get no suggestion', () => {
  const text = `apiVersion: networking.istio.io/v1
kind: VirtualServce
metadata: { name: x }
spec: {}
---
apiVersion: networking.istio.io/v1
kind: EnvoyFilter
metadata: { name: g }
spec: {}
`;
  const [typo, gateway] = validateDocuments(parseDocuments(text, 'k.yaml').documents).errors;
  assert.is(typo!.line, 2);
  assert.match(typo!.message, /^unsupported kind "VirtualServce": did you mean "VirtualService"\? supported kinds are ServiceEntry, /);
  assert.match(gateway!.message, /^unsupported kind "EnvoyFilter": supported kinds are /);
});

test('closest: case, swapped letters and small typos, never a far-off name', () => {
  assert.is(closest('virtualservice', ['ServiceEntry', 'VirtualService']), 'VirtualService');
  assert.is(closest('wieght', ['weight', 'headers']), 'weight');
  assert.is(closest('hots', ['hosts', 'ports']), 'hosts');
  assert.is(closest('destinaton', ['destination', 'subset']), 'destination');
  assert.is(closest('corsPolicy', ['route', 'match', 'headers', 'fault']), undefined);
  assert.is(closest('ab', ['xy']), undefined);
  assert.is(didYouMean('aply', ['apply', 'get']), ' (did you mean "apply"?)');
  assert.is(didYouMean('zzz', ['apply']), '');
});

test.run();
