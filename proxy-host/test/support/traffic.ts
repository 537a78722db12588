// Traffic for the isolation tests and benchmark: single requests that report failures instead of
// throwing, good traffic (open-loop at a fixed rate, or a few closed-loop clients; bounded in count and
// time; each request's status and latency kept), and a poller of the admin /ready endpoint.
import http from 'node:http';

export interface Outcome {
  /** 0 when no response came (reset, refused, timed out). */
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Why the exchange failed (the response may have started). */
  error?: string;
  /** When it was sent (performance.now()) and how long until the answer (or the failure). */
  startMs: number;
  latencyMs: number;
}

export interface SendOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  agent?: http.Agent;
  timeoutMs?: number;
}

/** One HTTP/1.1 request to 127.0.0.1:port; never rejects. */
export function send(port: number, options: SendOptions = {}): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Omit<Outcome, 'latencyMs' | 'startMs'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...o, startMs: started, latencyMs: performance.now() - started });
    };
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, agent: options.agent ?? false },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', (err) => done({ status: res.statusCode ?? 0, headers: res.headers, body, error: err.message }));
        res.on('aborted', () => done({ status: res.statusCode ?? 0, headers: res.headers, body, error: 'aborted' }));
      },
    );
    req.on('error', (err) => done({ status: 0, headers: {}, body: '', error: err.message }));
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

export interface SteadyOptions {
  port: number;
  /** Requests per second, sent open-loop: on schedule whether or not earlier ones have answered. */
  rate: number;
  /** Stops after this many requests ... */
  maxRequests: number;
  /** ... or this long, whichever comes first. */
  maxMs: number;
  /**
   * At most this many requests in flight: a request due while that many are waiting is not sent (and
   * counted in `skipped`), so a machine too busy to keep up gets a lower rate, not a growing queue.
   * Default: no bound.
   */
  maxInFlight?: number;
  request?: SendOptions;
}

/**
 * Good traffic at a steady rate until stop() (or its bounds). finished() resolves with every outcome
 * once the last request answered.
 */
export class SteadyTraffic {
  readonly outcomes: Outcome[] = [];
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  readonly #pending = new Set<Promise<void>>();
  readonly #options: SteadyOptions;
  readonly #timer: NodeJS.Timeout;
  readonly #started = performance.now();
  #sent = 0;
  #due = 0;
  /** Requests that were due while maxInFlight were waiting, and were not sent. */
  skipped = 0;
  #stopped = false;
  #resolveStopped!: () => void;
  readonly #stoppedPromise = new Promise<void>((resolve) => (this.#resolveStopped = resolve));

  constructor(options: SteadyOptions) {
    this.#options = options;
    // Timers coalesce on a busy machine: each tick sends whatever the schedule says is due by now.
    this.#timer = setInterval(() => this.#tick(), 2);
    this.#tick();
  }

  get sent(): number {
    return this.#sent;
  }

  #tick(): void {
    if (this.#stopped) return;
    const elapsed = performance.now() - this.#started;
    if (elapsed >= this.#options.maxMs) return this.stop();
    const due = Math.min(this.#options.maxRequests, Math.floor((elapsed / 1000) * this.#options.rate) + 1);
    const maxInFlight = this.#options.maxInFlight ?? Infinity;
    while (this.#due < due) {
      this.#due++;
      if (this.#pending.size >= maxInFlight) {
        this.skipped++;
        continue;
      }
      this.#sent++;
      const p = send(this.#options.port, { ...this.#options.request, agent: this.#agent }).then((o) => {
        this.outcomes.push(o);
        this.#pending.delete(p);
      });
      this.#pending.add(p);
    }
    if (this.#due >= this.#options.maxRequests) this.stop();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#resolveStopped();
  }

  /** Waits for the traffic to stop (stop() or its bounds) and every request to answer. */
  async finished(): Promise<Outcome[]> {
    await this.#stoppedPromise;
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    this.#agent.destroy();
    return this.outcomes;
  }
}

export interface ClosedLoopOptions {
  port: number;
  /** Clients, each sending its next request when the last one answered. */
  clients: number;
  /** Stops after this many requests in all ... */
  maxRequests: number;
  /** ... or this long, whichever comes first. */
  maxMs: number;
  request?: SendOptions;
}

/**
 * Good traffic from a few clients that each wait for an answer before asking again: it adapts to how
 * fast the machine is, so a busy machine slows it down instead of queueing it up.
 */
export class ClosedLoopTraffic {
  readonly outcomes: Outcome[] = [];
  readonly #agent = new http.Agent({ keepAlive: true });
  readonly #clients: Promise<void>;
  #stopped = false;

  constructor(options: ClosedLoopOptions) {
    const deadline = performance.now() + options.maxMs;
    let started = 0;
    const client = async (): Promise<void> => {
      while (!this.#stopped && started < options.maxRequests && performance.now() < deadline) {
        started++;
        this.outcomes.push(await send(options.port, { ...options.request, agent: this.#agent }));
      }
    };
    this.#clients = Promise.all(Array.from({ length: options.clients }, client)).then(() => undefined);
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Waits for the clients to stop (stop() or their bounds) and their last requests to answer. */
  async finished(): Promise<Outcome[]> {
    await this.#clients;
    this.#agent.destroy();
    return this.outcomes;
  }
}

/** Polls GET /ready on the admin port every `everyMs` until stop(); records each status (0: no answer). */
export class ReadyPoller {
  readonly statuses: number[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(adminPort: number, everyMs = 25) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        const r = await send(adminPort, { path: '/ready', timeoutMs: 5000 });
        this.statuses.push(r.status);
        await new Promise((resolve) => setTimeout(resolve, everyMs));
      }
    })();
  }

  async stop(): Promise<number[]> {
    this.#stopped = true;
    await this.#loop;
    return this.statuses;
  }
}

/** The p-th percentile (0..100) of `values` (nearest rank); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
