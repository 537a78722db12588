// Every process a benchmark starts is tracked here and ended when the benchmark exits, fails or is
// interrupted (SIGINT, SIGTERM, SIGHUP). A child spawned with `group: true` leads a process group of
// its own (`wasmesh run` and the sidecar and app it starts, nginx and its workers): it is asked to stop
// first (SIGTERM to the leader, which stops what it started), and whatever is left of its group is
// killed after the grace period, so nothing a benchmark started outlives it.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class Children {
  readonly #live = new Map<ChildProcess, { group: boolean }>();
  readonly #tmpDirs = new Set<string>();
  #interrupted = false;

  /** `name` prefixes the interruption message. */
  constructor(readonly name: string) {}

  get interrupted(): boolean {
    return this.#interrupted;
  }

  get size(): number {
    return this.#live.size;
  }

  /** A temporary directory removed when the benchmark ends, however it ends. */
  tmpDir(prefix: string): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    this.#tmpDirs.add(dir);
    return dir;
  }

  spawn(cmd: string, args: readonly string[], options: SpawnOptions & { group?: boolean } = {}): ChildProcess {
    const { group = false, ...rest } = options;
    return this.track(spawn(cmd, args, { ...rest, detached: group }), group);
  }

  track(cp: ChildProcess, group = false): ChildProcess {
    this.#live.set(cp, { group });
    cp.once('exit', () => {
      // The leader is gone; members of its group that did not stop with it are killed now.
      if (group) killGroup(cp.pid, 'SIGKILL');
      this.#live.delete(cp);
    });
    cp.once('error', () => this.#live.delete(cp));
    return cp;
  }

  /** SIGTERM, then SIGKILL (of the whole group for a group leader) after `graceMs`; resolves once it exited. */
  async stop(cp: ChildProcess, graceMs = 3000): Promise<void> {
    if (cp.exitCode !== null || cp.signalCode !== null || cp.pid === undefined) return;
    const group = this.#live.get(cp)?.group ?? false;
    const exited = new Promise<void>((resolve) => cp.once('exit', () => resolve()));
    cp.kill('SIGTERM');
    const timer = setTimeout(() => (group ? killGroup(cp.pid, 'SIGKILL') : cp.kill('SIGKILL')), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all([...this.#live.keys()].map((cp) => this.stop(cp, graceMs)));
  }

  /** Kills every child (and group) at once and removes the temporary directories: for process exit. */
  killAllSync(): void {
    for (const [cp, { group }] of this.#live) {
      if (group) killGroup(cp.pid, 'SIGKILL');
      else {
        try {
          cp.kill('SIGKILL');
        } catch {}
      }
    }
    for (const dir of this.#tmpDirs) rmSync(dir, { recursive: true, force: true });
    this.#tmpDirs.clear();
  }

  /**
   * On SIGINT, SIGTERM or SIGHUP: stop every child (briefly), clean up and exit 130; on exit: kill
   * what is left. Call once, at start.
   */
  installHandlers(): void {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.#interrupted) return;
      this.#interrupted = true;
      process.stderr.write(`\n${signal}: ${this.name}: stopping ${this.#live.size} child process(es)\n`);
      void Promise.race([this.stopAll(1500), new Promise((r) => setTimeout(r, 2500))]).finally(() => {
        this.killAllSync();
        process.exit(130);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    process.on('exit', () => this.killAllSync());
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already empty
  }
}
