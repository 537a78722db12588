// One JSON line per request (Istio's JSON access log fields), to stdout or a file. Lines are batched
// per event-loop turn so a busy proxy makes one write call per turn, not one per request.
import { createWriteStream, type WriteStream } from 'node:fs';

export interface AccessLogEntry {
  start_time: string;
  method: string;
  path: string;
  protocol: string;
  response_code: number;
  response_flags: string;
  response_code_details: string;
  bytes_received: number;
  bytes_sent: number;
  duration: number;
  upstream_host: string;
  upstream_cluster: string;
  x_forwarded_for: string;
  user_agent: string;
  request_id: string;
  authority: string;
  downstream_remote_address: string;
  route_name: string;
  /** Upstream tries (1 + retries); 0 when nothing went upstream. Envoy %UPSTREAM_REQUEST_ATTEMPT_COUNT%. */
  upstream_request_attempt_count?: number;
  direction: 'inbound' | 'outbound';
}

export class AccessLog {
  readonly #out: NodeJS.WritableStream | WriteStream | undefined;
  #pending: string[] = [];
  #scheduled = false;

  /** target: "stdout", "off", or a file path (appended). */
  constructor(target: string) {
    if (target === 'off') this.#out = undefined;
    else if (target === 'stdout' || target === '-') this.#out = process.stdout;
    else this.#out = createWriteStream(target, { flags: 'a' });
  }

  get enabled(): boolean {
    return this.#out !== undefined;
  }

  write(entry: AccessLogEntry): void {
    this.writeRecord(entry);
  }

  /** Any record (the telemetry filter's, through the wasmesh_access_log foreign function). */
  writeRecord(entry: object): void {
    if (!this.#out) return;
    this.#pending.push(JSON.stringify(entry));
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (!this.#out || this.#pending.length === 0) return;
    const text = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#out.write(text);
  }

  close(): Promise<void> {
    this.flush();
    const out = this.#out;
    if (!out || out === process.stdout) return Promise.resolve();
    return new Promise((resolve) => (out as WriteStream).end(() => resolve()));
  }
}
