// Istio's push debounce: run after `quietMs` without a new trigger, but no later than `maxMs` after
// the first trigger of a burst. Runs never overlap: a trigger during a run starts the next burst,
// which runs once the current one has finished.

export interface DebounceOptions {
  /** Quiet period (PILOT_DEBOUNCE_AFTER; 100 ms). */
  quietMs: number;
  /** Longest delay after the first trigger of a burst (PILOT_DEBOUNCE_MAX; ours is 1 s). */
  maxMs: number;
}

export class Debouncer {
  readonly #run: () => Promise<void>;
  readonly #options: DebounceOptions;
  #timer: NodeJS.Timeout | undefined;
  /** When the current burst began, or undefined when none is pending. */
  #burstStart: number | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  /** `run` must not reject (errors are the caller's to log). */
  constructor(run: () => Promise<void>, options: DebounceOptions) {
    this.#run = run;
    this.#options = options;
  }

  trigger(): void {
    if (this.#stopped) return;
    const now = Date.now();
    this.#burstStart ??= now;
    if (this.#running) return; // the timer is armed when the run ends
    this.#arm(now);
  }

  /** Resolves when no run is pending or in progress. */
  async idle(): Promise<void> {
    while (this.#running || this.#burstStart !== undefined) {
      if (this.#running) await this.#running;
      else await new Promise((r) => setTimeout(r, 5));
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#burstStart = undefined;
  }

  #arm(now: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    const deadline = Math.min(now + this.#options.quietMs, this.#burstStart! + this.#options.maxMs);
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, deadline - now));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#burstStart = undefined;
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#burstStart !== undefined && !this.#stopped) this.#arm(Date.now());
    });
  }
}
