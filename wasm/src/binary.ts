// Just enough of the wasm binary format to bound a module's memory before compiling it.
import { ErrorCode, WasmeshWasmError } from './errors.ts';

const MEMORY_SECTION = 5;

export function readLeb(bytes: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= bytes.length) throw new WasmeshWasmError(ErrorCode.NotWasm, 'truncated module (LEB128 runs past the end)');
    const b = bytes[pos++];
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 35) throw new WasmeshWasmError(ErrorCode.NotWasm, 'malformed LEB128 in module');
  }
}

export function writeLeb(value: number, out: number[]): void {
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) b |= 0x80;
    out.push(b);
  } while (value > 0);
}

export function hasWasmMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0x00 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
}

/**
 * Rewrites the memory section so every defined memory has a maximum of at most `maxPages`; then
 * memory.grow past the bound fails inside the guest instead of taking the host's memory.
 * Returns the original bytes when nothing needs changing. Throws if the initial size is over the bound.
 */
export function boundMemory(bytes: Uint8Array, maxPages: number): Uint8Array {
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, contentStart] = readLeb(bytes, pos + 1);
    const end = contentStart + size;
    if (end > bytes.length) throw new WasmeshWasmError(ErrorCode.NotWasm, `truncated module (section ${id} runs past the end)`);
    if (id !== MEMORY_SECTION) {
      pos = end;
      continue;
    }
    let p = contentStart;
    const [count, afterCount] = readLeb(bytes, p);
    p = afterCount;
    const content: number[] = [];
    writeLeb(count, content);
    let changed = false;
    for (let i = 0; i < count; i++) {
      const flags = bytes[p++];
      if (flags & 0x04) throw new WasmeshWasmError(ErrorCode.MemoryLimit, 'memory64 modules are not supported');
      const [min, afterMin] = readLeb(bytes, p);
      p = afterMin;
      let max: number | undefined;
      if (flags & 0x01) {
        const [m, afterMax] = readLeb(bytes, p);
        max = m;
        p = afterMax;
      }
      if (min > maxPages) {
        throw new WasmeshWasmError(
          ErrorCode.MemoryLimit,
          `module needs ${min} pages (${min * 64} KiB) of initial memory, over the VM memory limit of ${maxPages} pages (${maxPages * 64} KiB)`,
        );
      }
      const newMax = max === undefined ? maxPages : Math.min(max, maxPages);
      if (newMax !== max) changed = true;
      content.push(flags | 0x01);
      writeLeb(min, content);
      writeLeb(newMax, content);
    }
    if (!changed) return bytes;
    const header: number[] = [MEMORY_SECTION];
    writeLeb(content.length, header);
    const out = new Uint8Array(pos + header.length + content.length + (bytes.length - end));
    out.set(bytes.subarray(0, pos), 0);
    out.set(header, pos);
    out.set(content, pos + header.length);
    out.set(bytes.subarray(end), pos + header.length + content.length);
    return out;
  }
  return bytes;
}
