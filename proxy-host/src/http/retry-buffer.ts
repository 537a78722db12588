// A copy of the request body, kept up to a bound, so a retry (or a mirror) can send it again. Once
// the body grows past the bound the copy is dropped and `overflowed` stays true: such a request is
// no longer replayable.
import { PassThrough } from 'node:stream';

export class RequestBodyBuffer {
  readonly limit: number;
  #chunks: Buffer[] = [];
  #bytes = 0;
  overflowed = false;
  ended = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  get bytes(): number {
    return this.#bytes;
  }

  append(chunk: Uint8Array): void {
    if (this.overflowed || chunk.length === 0) return;
    this.#bytes += chunk.length;
    if (this.#bytes > this.limit) {
      this.overflowed = true;
      this.#chunks = [];
      return;
    }
    // Copy: the caller may reuse its buffer (wasm memory views, pooled chunks).
    this.#chunks.push(Buffer.from(chunk));
  }

  end(): void {
    this.ended = true;
  }

  /** The whole body so far (only meaningful while not overflowed). */
  concat(): Buffer {
    return this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
  }

  /** A new stream starting with what was received so far; ended when the body already ended. */
  replay(): PassThrough {
    const out = new PassThrough();
    for (const c of this.#chunks) out.write(c);
    if (this.ended) out.end();
    return out;
  }
}
