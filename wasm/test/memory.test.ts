// Guest memory access: copies taken from guest memory (shared data values, callout bodies, set
// properties) must not change when the module later reuses that memory, and views survive growth.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../src/memory.ts';

test('readCopy is a copy: later writes to guest memory do not show through', () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
  const mem = new GuestMemory(memory);
  new Uint8Array(memory.buffer).set([1, 2, 3, 4], 100);
  const copy = mem.readCopy(100, 4)!;
  new Uint8Array(memory.buffer).fill(9, 100, 104);
  assert.equal([...copy], [1, 2, 3, 4]);
  memory.grow(1);
  assert.equal([...copy], [1, 2, 3, 4], 'growth detaches the old buffer; the copy is unaffected');
});

test('after growth, reads and writes see the new memory and its full size', () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
  const mem = new GuestMemory(memory);
  assert.not.ok(mem.inBounds(65536, 4));
  memory.grow(1);
  assert.ok(mem.inBounds(65536, 4));
  assert.ok(mem.writeU32(65536, 0xdeadbeef));
  assert.is(mem.readU32(65536), 0xdeadbeef);
  assert.is(mem.readCopy(0xfffffff0, 32), undefined, 'out of bounds is refused, not thrown');
});

test.run();
