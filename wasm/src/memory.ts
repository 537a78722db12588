// Bounds-checked access to a VM's linear memory. Views are rebuilt only when memory.buffer changes
// (growth detaches the old one), so the per-call path reuses them.

import { readLatin1, readLowerLatin1 } from './latin1.ts';

const utf8 = new TextDecoder('utf-8', { fatal: false });

export class GuestMemory {
  #memory: WebAssembly.Memory;
  #buffer: ArrayBuffer;
  /** A Buffer over the whole memory: latin1Slice/latin1Write without copies. */
  bytes: Buffer;
  view: DataView;

  constructor(memory: WebAssembly.Memory) {
    this.#memory = memory;
    this.#buffer = memory.buffer;
    this.bytes = Buffer.from(this.#buffer);
    this.view = new DataView(this.#buffer);
  }

  /**
   * Call before touching `bytes`/`view`: the module may have grown memory since the last look. Growth
   * detaches the old ArrayBuffer, which makes our views read as empty: that is the cheap check, and
   * only then is memory.buffer (a slower getter) read again.
   */
  refresh(): void {
    if (this.bytes.length !== 0) return;
    const buffer = this.#memory.buffer;
    if (buffer !== this.#buffer) {
      this.#buffer = buffer;
      this.bytes = Buffer.from(buffer);
      this.view = new DataView(buffer);
    }
  }

  get size(): number {
    return this.#memory.buffer.byteLength;
  }

  /** True when [ptr, ptr+len) lies inside memory. ptr and len are treated as unsigned. */
  inBounds(ptr: number, len: number): boolean {
    this.refresh();
    return (ptr >>> 0) + (len >>> 0) <= this.bytes.length;
  }

  readLatin1(ptr: number, len: number): string | undefined {
    ptr >>>= 0;
    len >>>= 0;
    this.refresh();
    if (ptr + len > this.bytes.length) return undefined;
    return readLatin1(this.bytes, ptr, len);
  }

  /** A header name from the guest: latin1 with ASCII letters lowercased. */
  readHeaderName(ptr: number, len: number): string | undefined {
    ptr >>>= 0;
    len >>>= 0;
    this.refresh();
    if (ptr + len > this.bytes.length) return undefined;
    return readLowerLatin1(this.bytes, ptr, len);
  }

  readUtf8(ptr: number, len: number): string | undefined {
    ptr >>>= 0;
    len >>>= 0;
    this.refresh();
    if (ptr + len > this.bytes.length) return undefined;
    return utf8.decode(this.bytes.subarray(ptr, ptr + len));
  }

  /** A copy of the bytes (the guest may overwrite its memory after the call). */
  readCopy(ptr: number, len: number): Uint8Array | undefined {
    ptr >>>= 0;
    len >>>= 0;
    this.refresh();
    if (ptr + len > this.bytes.length) return undefined;
    // Buffer#slice is a view, not a copy: the bytes must not follow later writes to guest memory.
    return Uint8Array.prototype.slice.call(this.bytes, ptr, ptr + len) as Uint8Array;
  }

  writeU32(ptr: number, value: number): boolean {
    ptr >>>= 0;
    this.refresh();
    if (ptr + 4 > this.bytes.length) return false;
    this.view.setUint32(ptr, value >>> 0, true);
    return true;
  }

  writeU64(ptr: number, value: bigint): boolean {
    ptr >>>= 0;
    this.refresh();
    if (ptr + 8 > this.bytes.length) return false;
    this.view.setBigUint64(ptr, BigInt.asUintN(64, value), true);
    return true;
  }

  readU32(ptr: number): number | undefined {
    ptr >>>= 0;
    this.refresh();
    if (ptr + 4 > this.bytes.length) return undefined;
    return this.view.getUint32(ptr, true);
  }

  write(ptr: number, data: Uint8Array): boolean {
    ptr >>>= 0;
    this.refresh();
    if (ptr + data.length > this.bytes.length) return false;
    this.bytes.set(data, ptr);
    return true;
  }
}
