// `wasmesh run` keeps its sidecar up: when the sidecar exits on its own (non-zero, or killed by a
// signal: its watchdog's SIGKILL, the OOM killer, a crash) while the app runs, it is started again
// with the same arguments, so on the same ports, after a backoff (250 ms, doubling to 10 s; back to
// 250 ms once one ran for 30 s). A sidecar that exits 0 was stopped on purpose and stays stopped.
import type { ChildProcess } from 'node:child_process';

export interface SupervisorOptions {
  /** Starts one sidecar process (same arguments every time). */
  spawn: () => ChildProcess;
  /** A line for the user (restarts). */
  log: (line: string) => void;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** A sidecar that ran this long before exiting restarts after the initial delay again. */
  healthyMs?: number;
}

export class SidecarSupervisor {
  readonly #opts: SupervisorOptions;
  #child: ChildProcess;
  #startedAt = Date.now();
  #delayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #restarting = true;
  #restarts = 0;
  /** Resolved with the exit status (128+n for a signal) of the last sidecar once nothing restarts it. */
  readonly #done: Promise<number>;
  #resolveDone!: (code: number) => void;

  /** Supervises `first` (already running and ready). */
  constructor(first: ChildProcess, opts: SupervisorOptions) {
    this.#opts = opts;
    this.#delayMs = opts.initialDelayMs ?? 250;
    this.#child = first;
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.#watch(first);
  }

  /** The sidecar running now. */
  get child(): ChildProcess {
    return this.#child;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** From now on exits are expected (the app ended, or a signal was forwarded): nothing restarts. */
  stopRestarting(): void {
    this.#restarting = false;
    if (this.#timer !== undefined) {
      // Between a crash and its restart: the last sidecar is already gone.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#resolveDone(statusOf(this.#child));
    }
  }

  /** Resolves once the sidecar has exited and will not be restarted (call stopRestarting first). */
  exited(): Promise<number> {
    return this.#done;
  }

  #watch(child: ChildProcess): void {
    const gone = child.exitCode !== null || child.signalCode !== null;
    if (gone) setImmediate(() => this.#onExit(child, child.exitCode, child.signalCode));
    else child.once('exit', (code, signal) => this.#onExit(child, code, signal));
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.#restarting || code === 0) {
      if (this.#restarting) this.#opts.log('the sidecar stopped (exit 0); not restarting it');
      this.#restarting = false;
      this.#resolveDone(statusOf(child));
      return;
    }
    if (Date.now() - this.#startedAt >= (this.#opts.healthyMs ?? 30_000)) this.#delayMs = this.#opts.initialDelayMs ?? 250;
    const delay = this.#delayMs;
    this.#delayMs = Math.min(delay * 2, this.#opts.maxDelayMs ?? 10_000);
    this.#opts.log(`the sidecar (pid ${child.pid}) exited unexpectedly (${signal ?? `code ${code}`}); starting it again in ${delay} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#restarts++;
      this.#startedAt = Date.now();
      this.#child = this.#opts.spawn();
      this.#opts.log(`the sidecar restarted (pid ${this.#child.pid}, restart ${this.#restarts})`);
      this.#watch(this.#child);
    }, delay);
  }
}

/** Exit status as a shell reports it: the code, or 128 + the signal number. */
export function statusOf(child: ChildProcess): number {
  if (child.exitCode !== null) return child.exitCode;
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };
  return 128 + (child.signalCode ? (numbers[child.signalCode] ?? 15) : 15);
}
