// Export off the request path, shared by span and access-log exporters: finished items go into a
// bounded queue (a full queue drops the item and counts it), a timer or a full batch sends them in one
// export, one export in flight per provider, each with a timeout; a failed or refused export drops its
// batch and counts it, and items a receiver reports as rejected (OTLP partial_success) are counted as
// dropped too. The request path only pushes into an array.
//
// Transports: an HTTP POST (node:http, one keep-alive socket) or a gRPC unary call (@grpc/grpc-js,
// loaded on the first gRPC exporter: most sidecars never export over gRPC, and the library costs
// megabytes). Messages are encoded by the caller; the gRPC call passes the bytes through.
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import type * as Grpc from '@grpc/grpc-js';
import type { Metric } from '../../../wasm/src/index.ts';
import { readPartialSuccess } from './otlp-protobuf.ts';

export const MAX_QUEUED = 2048;
export const MAX_BATCH = 512;
export const FLUSH_INTERVAL_MS = 1000;

/** What one export did: ok (2xx / gRPC OK), and how many items the receiver said it rejected. */
export interface ExportResult {
  ok: boolean;
  rejected: number;
}

/** Sends one encoded batch. */
export interface Transport {
  send(body: Buffer): Promise<ExportResult>;
  close(): void;
}

export interface QueueMetrics {
  exported: Metric;
  dropped: Metric;
  failures: Metric;
  queued: Metric;
}

export class BatchExporter<T> {
  readonly #queue: T[] = [];
  readonly #timer: NodeJS.Timeout;
  #inFlight = false;
  #closed = false;

  constructor(
    readonly metrics: QueueMetrics,
    readonly encode: (batch: readonly T[]) => Buffer,
    readonly transport: Transport,
  ) {
    this.#timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Queues an item; never blocks, never grows past MAX_QUEUED. */
  push(item: T): void {
    if (this.#closed || this.#queue.length >= MAX_QUEUED) {
      this.metrics.dropped.increment(1);
      return;
    }
    this.#queue.push(item);
    this.metrics.queued.increment(1);
    if (this.#queue.length >= MAX_BATCH && !this.#inFlight) setImmediate(() => void this.flush());
  }

  get queueLength(): number {
    return this.#queue.length;
  }

  /** Sends one batch if none is in flight; resolves when that export ends. */
  async flush(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, MAX_BATCH);
    const m = this.metrics;
    m.queued.increment(-batch.length);
    this.#inFlight = true;
    let result: ExportResult;
    try {
      result = await this.transport.send(this.encode(batch));
    } catch {
      result = { ok: false, rejected: 0 };
    }
    this.#inFlight = false;
    if (result.ok) {
      const rejected = Math.min(batch.length, Math.max(0, result.rejected));
      if (batch.length - rejected > 0) m.exported.increment(batch.length - rejected);
      if (rejected > 0) m.dropped.increment(rejected);
    } else {
      m.failures.increment(1);
      m.dropped.increment(batch.length);
    }
  }

  /** Sends what is queued (bounded: at most a few batches), then stops. */
  async close(): Promise<void> {
    for (let i = 0; i < 4 && this.#queue.length > 0; i++) {
      await this.flush();
      if (this.#inFlight) break;
    }
    this.#closed = true;
    clearInterval(this.#timer);
    this.transport.close();
  }
}

/** An HTTP POST per batch; a 2xx is success (a protobuf answer's partial_success is read). */
export function httpTransport(o: { host: string; port: number; path: string; contentType: string; headers: readonly (readonly [string, string])[]; timeoutMs: number }): Transport {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return {
    send: (body) =>
      new Promise<ExportResult>((resolve) => {
        let settled = false;
        const done = (r: ExportResult): void => {
          if (settled) return;
          settled = true;
          resolve(r);
        };
        const headers: Record<string, string> = { 'content-type': o.contentType, 'content-length': String(body.length) };
        for (const [k, v] of o.headers) headers[k] = v;
        const req = request({ host: o.host, port: o.port, path: o.path, method: 'POST', headers, agent, timeout: o.timeoutMs }, (res) => {
          const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
          const protobuf = ok && String(res.headers['content-type'] ?? '').startsWith('application/x-protobuf');
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            // A response is a few bytes; anything past 64 KiB is not read.
            if (protobuf && size < 65536) chunks.push(c);
            size += c.length;
          });
          res.on('end', () => done({ ok, rejected: protobuf ? (readPartialSuccess(Buffer.concat(chunks))?.rejected ?? 0) : 0 }));
          res.on('error', () => done({ ok: false, rejected: 0 }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => done({ ok: false, rejected: 0 }));
        req.end(body);
      }),
    close: () => agent.destroy(),
  };
}

let grpcModule: typeof Grpc | undefined;
function grpcLibrary(): typeof Grpc {
  return (grpcModule ??= createRequire(import.meta.url)('@grpc/grpc-js') as typeof Grpc);
}

const passThrough = (b: Buffer): Buffer => b;

/** A gRPC unary call per batch to `method` (`/package.Service/Export`), plaintext (h2c), with a deadline. */
export function grpcTransport(o: { host: string; port: number; method: string; metadata: readonly (readonly [string, string])[]; timeoutMs: number }): Transport {
  const grpc = grpcLibrary();
  const address = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`;
  // A reconnect after a failure waits at most 5 s, so a collector that comes back is used soon.
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_reconnect_backoff_ms': 5000, 'grpc.initial_reconnect_backoff_ms': 500 });
  return {
    send: (body) =>
      new Promise<ExportResult>((resolve) => {
        const md = new grpc.Metadata();
        for (const [k, v] of o.metadata) md.add(k.toLowerCase(), v);
        client.makeUnaryRequest<Buffer, Buffer>(o.method, passThrough, passThrough, body, md, { deadline: Date.now() + o.timeoutMs }, (err, response) => {
          if (err) resolve({ ok: false, rejected: 0 });
          else resolve({ ok: true, rejected: response ? (readPartialSuccess(response)?.rejected ?? 0) : 0 });
        });
      }),
    close: () => client.close(),
  };
}
