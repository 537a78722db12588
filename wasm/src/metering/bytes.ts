// A cursor over wasm binary bytes and a growable byte sink: just what the metering rewrite needs.
// Every read is bounds-checked and throws MeteringError naming the offset, never a RangeError.

/** The module cannot be metered: malformed, or an instruction the rewriter does not know. */
export class MeteringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeteringError';
  }
}

export class ByteReader {
  readonly bytes: Uint8Array;
  pos: number;
  readonly end: number;

  constructor(bytes: Uint8Array, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw new MeteringError(`unexpected end of data at byte ${this.pos}`);
    return this.bytes[this.pos++];
  }

  /** Unsigned LEB128, up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 28) {
        const last = this.u8();
        if (last & 0x80 || last > 0x0f) throw new MeteringError(`u32 LEB128 too long at byte ${this.pos - 1}`);
        return result + last * 2 ** shift;
      }
    }
  }

  /** Skips a signed LEB128 of at most `bits` bits; returns its value when it fits a double exactly enough (block types, constants). */
  sleb(bits: number): number {
    let result = 0;
    let shift = 0;
    const maxBytes = Math.ceil(bits / 7);
    for (let i = 0; i < maxBytes; i++) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) {
        if (b & 0x40) result -= 2 ** shift;
        return result;
      }
    }
    throw new MeteringError(`signed LEB128 longer than ${bits} bits at byte ${this.pos - 1}`);
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new MeteringError(`${n} bytes at byte ${this.pos} run past the end`);
    this.pos += n;
  }

  /** A length-prefixed name (UTF-8), as the export and import sections hold them. */
  name(): string {
    const len = this.u32();
    const start = this.pos;
    this.skip(len);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, len).toString('utf8');
  }
}

export class ByteWriter {
  #buf: Uint8Array;
  length = 0;

  constructor(capacity = 256) {
    this.#buf = new Uint8Array(capacity);
  }

  #ensure(extra: number): void {
    if (this.length + extra <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.length + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
  }

  u8(b: number): this {
    this.#ensure(1);
    this.#buf[this.length++] = b;
    return this;
  }

  u32(value: number): this {
    do {
      let b = value % 128;
      value = Math.floor(value / 128);
      if (value > 0) b |= 0x80;
      this.u8(b);
    } while (value > 0);
    return this;
  }

  /** Signed LEB128 of a 32-bit integer. */
  s32(value: number): this {
    value |= 0;
    for (;;) {
      const b = value & 0x7f;
      value >>= 7;
      if ((value === 0 && (b & 0x40) === 0) || (value === -1 && (b & 0x40) !== 0)) return this.u8(b);
      this.u8(b | 0x80);
    }
  }

  /** Signed LEB128 of a whole number within ±2^53 (an i64 immediate). */
  s64(value: number): this {
    let v = BigInt(value);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) return this.u8(b);
      this.u8(b | 0x80);
    }
  }

  bytes(data: Uint8Array): this {
    this.#ensure(data.length);
    this.#buf.set(data, this.length);
    this.length += data.length;
    return this;
  }

  name(value: string): this {
    const data = Buffer.from(value, 'utf8');
    return this.u32(data.length).bytes(data);
  }

  /** The bytes written so far (a view: copy before writing more if you keep it). */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}
