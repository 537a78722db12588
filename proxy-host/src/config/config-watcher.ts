// Watching a standalone proxy's --config (a file, or a directory of *.yaml, *.yml, *.json) for the
// edits people make: writing a file in place (same inode), replacing it by rename (editors, sed -i,
// Kubernetes ConfigMap volumes swapping a symlink), adding and removing files.
//
// Two signals, one decision: filesystem events (fs.watch) for speed, and a poll of the files' stat
// (inode, size, mtime) for filesystems without events and for events that name something else
// (a symlink, an editor's swap file). An event that names a config file reloads; any other signal
// reloads only when the fingerprint of the config files changed. Bursts are debounced, and reloads
// never overlap: one that arrives while `onChange` runs is run again after it, so the last edit
// always wins.

import { statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

const CONFIG_FILE = /\.(ya?ml|json)$/i;

export interface WatchOptions {
  /** Quiet time after the last event before reloading; default 100 ms. */
  debounceMs?: number;
  /** How often the files are stat'ed, whatever the events; default 1000 ms. */
  pollMs?: number;
}

/** Calls `onChange` (debounced, never concurrently) when the config at `path` changes; returns a stop function. */
export function watchConfigFile(path: string, onChange: () => void | Promise<void>, options: WatchOptions | number = {}): () => void {
  const { debounceMs = 100, pollMs = 1000 } = typeof options === 'number' ? { debounceMs: options } : options;
  const full = resolve(path);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let last: Promise<string> = fingerprint(full);

  // `certain`: the event named a config file, so reload without comparing fingerprints (an in-place
  // write within the filesystem's timestamp granularity may leave size and mtime as they were).
  let pendingCertain = false;
  const schedule = (certain: boolean): void => {
    if (stopped) return;
    pendingCertain ||= certain;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void settle(), debounceMs);
  };
  const settle = async (): Promise<void> => {
    timer = undefined;
    if (running) {
      again = true;
      return;
    }
    const certain = pendingCertain;
    pendingCertain = false;
    const previous = await last;
    const now = fingerprint(full);
    last = now;
    if (!certain && (await now) === previous) return;
    if (stopped) return;
    running = Promise.resolve()
      .then(onChange)
      .catch(() => {}) // the caller reports its own failures; a throw must not stop the watching
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          schedule(true);
        }
      });
  };

  let watcher: FSWatcher | undefined;
  const isDir = (() => {
    try {
      return statSync(full).isDirectory();
    } catch {
      return false;
    }
  })();
  try {
    // A directory is watched itself (its files' writes and renames); a file through its folder,
    // because a rename over it replaces the inode a watch on the file would follow.
    watcher = watch(isDir ? full : dirname(full), (_event, name) => {
      const named = name === null ? undefined : String(name);
      schedule(isDir ? named !== undefined && CONFIG_FILE.test(named) : named === basename(full));
    });
    watcher.on('error', () => {}); // the poll still runs
  } catch {
    watcher = undefined;
  }
  const poll = setInterval(() => schedule(false), pollMs);
  poll.unref();

  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    clearInterval(poll);
    watcher?.close();
  };
}

/** Inode, size and mtime of every file loadConfigFile would read at `path`, as one string. */
async function fingerprint(path: string): Promise<string> {
  const one = (s: Stats | undefined): string => (s ? `${s.ino}:${s.size}:${s.mtimeMs}` : 'missing');
  const info = await stat(path).catch(() => undefined);
  if (!info?.isDirectory()) return one(info);
  const names = await readdir(path).catch(() => [] as string[]);
  const files = names.filter((n) => CONFIG_FILE.test(n)).sort();
  const parts = await Promise.all(files.map(async (n) => `${n}=${one(await stat(join(path, n)).catch(() => undefined))}`));
  return parts.join('\n');
}
