// Notices a stuck event loop from outside it. The main thread beats (Atomics.add on a shared
// Int32Array) on a short, unref'd timer; a worker thread (thread-source.ts) watches the beat. A loop
// blocked past stallMs is a stall: counted (wasmesh_proxy_event_loop_stalls_total), and /ready fails
// until the loop has run recoveryMs without another, so a load balancer stops sending to a process
// that just froze and may freeze again. Past exitMs the thread kills the process (SIGKILL), so its
// supervisor starts a fresh one. Nothing here keeps the process alive.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';
import { logError } from '../log.ts';
import { WATCHDOG_THREAD_SOURCE } from './thread-source.ts';

export interface WatchdogOptions {
  /** The loop blocked this long is a stall (ms). */
  stallMs: number;
  /** The loop blocked this long: the process is killed (ms); 0 never. */
  exitMs: number;
  /** After a stall, /ready fails until the loop has run this long without another (ms). */
  recoveryMs: number;
  /** Put before the thread's log lines ("worker 3: "). */
  label?: string;
}

/**
 * Defaults: a stall is 1 s, five times the worst a filter can block the loop under its CPU budget
 * (about 0.2 s for the default budget); 10 s of it and the process is replaced; ready 5 s after.
 */
export const DEFAULT_WATCHDOG: WatchdogOptions = { stallMs: 2000, exitMs: 15_000, recoveryMs: 5000 };

/** Indices into the shared Int32Array (thread-source.ts uses the same). */
const BEAT = 0;
const STALLS = 1;
const STALLED = 2;
const STALL_MS = 3;
const STOP = 4;
const SLOTS = 5;

/** Checks the options: a message naming the bad one, or undefined. */
export function watchdogOptionsError(o: WatchdogOptions): string | undefined {
  if (!(Number.isInteger(o.stallMs) && o.stallMs >= 20)) return `stall threshold must be a whole number of ms, at least 20, got ${o.stallMs}`;
  if (!(Number.isInteger(o.exitMs) && o.exitMs >= 0)) return `stall exit must be a whole number of ms (0: never), got ${o.exitMs}`;
  if (o.exitMs !== 0 && o.exitMs <= o.stallMs) return `stall exit (${o.exitMs} ms) must be longer than the stall threshold (${o.stallMs} ms)`;
  if (!(Number.isInteger(o.recoveryMs) && o.recoveryMs >= 0)) return `stall recovery must be a whole number of ms, got ${o.recoveryMs}`;
  return undefined;
}

export class EventLoopWatchdog {
  readonly options: WatchdogOptions;
  readonly #shared: Int32Array;
  readonly #thread: Worker;
  readonly #beat: NodeJS.Timeout;
  readonly #counter: Metric | undefined;
  /** Stalls already counted in the metric and noticed here. */
  #seen = 0;
  /** performance.now() when this thread last found a stall over (it runs again). */
  #recoveredAt: number | undefined;
  #stopped = false;

  private constructor(options: WatchdogOptions, shared: Int32Array, thread: Worker, metrics: MetricsRegistry | undefined) {
    this.options = options;
    this.#shared = shared;
    this.#thread = thread;
    this.#counter = metrics?.counter('wasmesh_proxy_event_loop_stalls_total', `Times the event loop was blocked longer than the stall threshold (${options.stallMs} ms)`);
    const beatMs = Math.min(100, Math.max(5, Math.floor(options.stallMs / 5)));
    this.#beat = setInterval(() => {
      Atomics.add(shared, BEAT, 1);
      this.#sync();
    }, beatMs);
    this.#beat.unref();
  }

  /** Starts the thread; resolves once it runs (a thread still starting could not notice anything). */
  static async start(options: WatchdogOptions, metrics?: MetricsRegistry): Promise<EventLoopWatchdog> {
    const invalid = watchdogOptionsError(options);
    if (invalid) throw new Error(`watchdog: ${invalid}`);
    const shared = new Int32Array(new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT));
    const pollMs = Math.min(50, Math.max(5, Math.floor(options.stallMs / 5)));
    const thread = new Worker(WATCHDOG_THREAD_SOURCE, {
      eval: true,
      workerData: { buffer: shared.buffer, stallMs: options.stallMs, exitMs: options.exitMs, pollMs, label: options.label ?? '' },
      // It needs next to nothing; keep a runaway from eating the process's memory.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
    thread.on('error', (err) => logError('watchdog', `the watchdog thread failed: ${err.message}; stalls are not noticed any more`));
    await once(thread, 'online');
    // Referenced while it starts (whoever awaits this may have nothing else keeping the loop up), never after.
    thread.unref();
    return new EventLoopWatchdog(options, shared, thread, metrics);
  }

  /** Stalls since start. */
  stalls(): number {
    this.#sync();
    return this.#seen;
  }

  /** Why the process should not take traffic now (a recent stall), or undefined. */
  notReadyReason(): string | undefined {
    this.#sync();
    if (this.#recoveredAt === undefined) return undefined;
    const healthyFor = performance.now() - this.#recoveredAt;
    if (healthyFor >= this.options.recoveryMs) return undefined;
    const blocked = Atomics.load(this.#shared, STALL_MS);
    return `event loop blocked for ${blocked} ms (${this.#seen} stall${this.#seen === 1 ? '' : 's'} since start); ready again after ${this.options.recoveryMs} ms without a stall (${Math.ceil(this.options.recoveryMs - healthyFor)} ms to go)`;
  }

  /** Stops the beat and the thread. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#beat);
    Atomics.store(this.#shared, STOP, 1);
    Atomics.notify(this.#shared, STOP);
    await this.#thread.terminate();
  }

  /** This thread runs: any stall the watchdog counted (or still believes in) is over now. */
  #sync(): void {
    const stalls = Atomics.load(this.#shared, STALLS);
    if (stalls > this.#seen) {
      this.#counter?.increment(stalls - this.#seen);
      this.#seen = stalls;
      this.#recoveredAt = performance.now();
    } else if (Atomics.load(this.#shared, STALLED) === 1) {
      // Not seen the beat move yet: the stall ended just now.
      this.#recoveredAt = performance.now();
    }
  }
}
