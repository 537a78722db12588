// Access-log files shared by every provider and config that names them: one append stream per path,
// lines batched per event-loop turn (one write call per turn, not one per request). /dev/stdout and
// /dev/stderr are the process's own streams. Kept for the proxy's life (a config swap keeps the file
// open), closed at stop.
import { createWriteStream } from 'node:fs';

export class LogSink {
  readonly #out: NodeJS.WritableStream;
  readonly #own: boolean;
  #pending = '';
  #scheduled = false;

  constructor(path: string) {
    if (path === '/dev/stdout' || path === '-') (this.#out = process.stdout), (this.#own = false);
    else if (path === '/dev/stderr') (this.#out = process.stderr), (this.#own = false);
    else {
      const s = createWriteStream(path, { flags: 'a' });
      // A file that cannot be opened or written is logged once by the stream's error; the request path never sees it.
      s.on('error', (err) => process.stderr.write(`wasmesh proxy: access log ${path}: ${err.message}\n`));
      this.#out = s;
      this.#own = true;
    }
  }

  /** Queues one line (ending in "\n"). */
  write(line: string): void {
    this.#pending += line;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const text = this.#pending;
    this.#pending = '';
    this.#out.write(text);
  };

  close(): Promise<void> {
    this.flush();
    if (!this.#own) return Promise.resolve();
    return new Promise((resolve) => (this.#out as NodeJS.WritableStream & { end(cb: () => void): void }).end(() => resolve()));
  }
}

export class LogSinks {
  readonly #sinks = new Map<string, LogSink>();

  get(path: string): LogSink {
    let s = this.#sinks.get(path);
    if (s === undefined) {
      s = new LogSink(path);
      this.#sinks.set(path, s);
    }
    return s;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#sinks.values()].map((s) => s.close()));
    this.#sinks.clear();
  }
}
