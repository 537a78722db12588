// Watching a filter's sources for `wasmesh filter dev`, through every way an editor saves: writing
// the file in place, writing a new file and renaming it over the old one (most editors, `sed -i`),
// deleting and creating it, or vim's backup dance (rename to name~, write anew, delete name~).
//
// A watch on a file follows its inode, which a rename replaces: the next save goes unseen. So every
// *directory* is watched instead (its entries' creations, renames and writes), new directories get
// a watch as they appear, and the sources' fingerprint (inode, size, mtime of every file) decides
// whether anything changed: an event only says "look now". A poll looks every second anyway, for
// filesystems without events. Bursts are debounced; `onChange` never runs twice at once, and a change
// during a run is reported once that run ends.
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** Folders never watched: build output, packages, and hidden ones (.git, editor state). */
const SKIPPED_DIRS = new Set(['build', 'node_modules']);
/** Editors' and tools' temporary files: vim (name~, .name.swp, 4913), sed -i (sedXXXXXX), emacs (.#name, #name#), others (*.tmp). */
const TEMPORARY = /(~|\.sw[a-p]|\.tmp)$|^(4913|sed[A-Za-z0-9]{6}|\.#.*|#.*#)$/;

export interface SourceWatcherOptions {
  /** Quiet time after the last event before looking; default 100 ms. */
  debounceMs?: number;
  /** How often the sources are looked at without an event; default 1000 ms. */
  pollMs?: number;
  /** Which files count (relative to their root); default every file but temporary ones. */
  include?: (relativePath: string) => boolean;
}

export interface SourceWatcher {
  /** Resolves once the first look is done: from then on every save is seen (one made before may be taken as the starting point). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** Calls onChange(changedFiles) when files under `roots` change; changedFiles are absolute paths. */
export function watchSources(roots: string[], onChange: (changed: string[]) => void | Promise<void>, opts: SourceWatcherOptions = {}): SourceWatcher {
  const debounceMs = opts.debounceMs ?? 100;
  const include = opts.include ?? (() => true);
  const watchers = new Map<string, FSWatcher>();
  let last: Map<string, string> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  const schedule = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void look(), debounceMs);
  };

  const look = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      const { files, dirs } = await scan(roots, include);
      syncWatchers(dirs);
      const changed = last === undefined ? [] : diff(last, files);
      last = files;
      if (changed.length > 0 && !closed) await onChange(changed);
    })()
      .catch(() => {}) // a failed look (a folder vanished mid-walk) is retried by the next event or poll
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
    await running;
  };

  const syncWatchers = (dirs: Set<string>): void => {
    for (const [dir, w] of watchers) {
      if (!dirs.has(dir)) {
        w.close();
        watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (watchers.has(dir) || closed) continue;
      try {
        const w = watch(dir, () => schedule());
        // A folder deleted under its watch: the next look drops it (and watches a new one of that name).
        w.on('error', () => {
          w.close();
          watchers.delete(dir);
          schedule();
        });
        watchers.set(dir, w);
      } catch {
        // Gone already; the poll will see what is there.
      }
    }
  };

  const ready = look();
  const poll = setInterval(() => schedule(), opts.pollMs ?? 1000);
  poll.unref();
  return {
    ready,
    async close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(poll);
      for (const w of watchers.values()) w.close();
      watchers.clear();
      await running;
    },
  };
}

/** Every directory under the roots and every file that counts, with its fingerprint. */
async function scan(roots: string[], include: (relativePath: string) => boolean): Promise<{ files: Map<string, string>; dirs: Set<string> }> {
  const files = new Map<string, string>();
  const dirs = new Set<string>();
  const walk = async (root: string, dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    dirs.add(dir);
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!SKIPPED_DIRS.has(e.name) && !e.name.startsWith('.')) await walk(root, full);
      } else if (!TEMPORARY.test(e.name) && include(path.relative(root, full))) {
        const s = await stat(full).catch(() => undefined);
        if (s?.isFile()) files.set(full, `${s.ino}:${s.size}:${s.mtimeMs}`);
      }
    }
  };
  for (const root of roots) await walk(root, root);
  return { files, dirs };
}

/** Files added, removed or changed between two scans. */
function diff(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [file, print] of after) if (before.get(file) !== print) changed.push(file);
  for (const file of before.keys()) if (!after.has(file)) changed.push(file);
  return changed.sort();
}
