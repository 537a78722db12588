// wasmesh filter dev <filter-dir> --proxy <admin-url>: the author's loop. Builds the filter, swaps it
// into a running standalone proxy through its admin endpoint, and does it again on every save.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FilterBuildError, buildFilter, closeKeptCompiler, commonDirs, readManifest } from '../../filters/toolchain/build.ts';
import { readAdminTokenFile } from '../../proxy-host/src/admin/admin-access.ts';
import { watchSources } from './source-watcher.ts';

import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh filter dev <filter-dir> [--proxy ADMIN_URL] [--plugin NS/NAME] [--admin-token-file FILE] [--once]

Builds the AssemblyScript filter in <filter-dir> and hot-swaps it into a running standalone proxy
(wasmesh proxy --config ...) in place of WasmPlugin --plugin's module, then watches the folder (and
the shared common/ folders it imports) and does it again on every save, however the editor saves
(in place, by rename, sed -i, delete and create); it prints when each build starts and ends. The
proxy compiles and starts the new module before it takes traffic: a module that fails to build or
to start is reported here and the proxy keeps serving the last good one. Streams in flight finish on the version they started on.
The override lasts until the proxy stops or: curl -X DELETE 'ADMIN_URL/filters/module?plugin=NS/NAME'

The proxy must accept admin writes: start it with --admin-writes (loopback, no token) or with
--admin-token-file FILE and give filter dev the same file.

  --proxy URL         the proxy's admin endpoint (default http://127.0.0.1:15000)
  --plugin NAME       the WasmPlugin to replace, NAME or NS/NAME (default: the filter's name in filter.json)
  --admin-token-file FILE  the proxy's admin token (sent as Authorization: Bearer)
  --once              build and swap once, then exit (exit 1 if either failed)
  --debug             build with debug names
`;

interface SwapResult {
  ok: boolean;
  message: string;
}

export async function run(argv: string[], io = { out: process.stdout as { write(t: string): unknown }, err: process.stderr as { write(t: string): unknown } }): Promise<number> {
  let values: { proxy?: string; plugin?: string; 'admin-token-file'?: string; once?: boolean; debug?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { proxy: { type: 'string' }, plugin: { type: 'string' }, 'admin-token-file': { type: 'string' }, once: { type: 'boolean' }, debug: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    io.err.write(`wasmesh filter dev: ${(err as Error).message}\n\n${helpFor(usage, io.err)}`);
    return 2;
  }
  if (values.help) {
    io.out.write(helpFor(usage, io.out));
    return 0;
  }
  const [dir, extra] = positionals;
  if (dir === undefined || extra !== undefined) {
    io.err.write(`wasmesh filter dev: give exactly one filter folder\n\n${helpFor(usage, io.err)}`);
    return 2;
  }
  const admin = (values.proxy ?? 'http://127.0.0.1:15000').replace(/\/+$/, '');
  let plugin = values.plugin;
  const headers: Record<string, string> = { 'content-type': 'application/wasm' };
  try {
    plugin ??= (await readManifest(path.resolve(dir))).name;
    if (values['admin-token-file'] !== undefined) headers.authorization = `Bearer ${readAdminTokenFile(values['admin-token-file'])}`;
  } catch (err) {
    io.err.write(`wasmesh filter dev: ${(err as Error).message}\n`);
    return 1;
  }

  const cycle = async (): Promise<SwapResult> => {
    const started = performance.now();
    let wasmPath: string;
    try {
      // Compiler diagnostics (with code frames) go to stderr as the build prints them.
      wasmPath = (await buildFilter(dir, { quiet: true, force: true, dev: true, debug: values.debug === true, stderr: io.err })).wasmPath;
    } catch (err) {
      if (err instanceof FilterBuildError) return { ok: false, message: `build failed, the proxy keeps the last good module:\n${err.message}` };
      throw err;
    }
    const built = performance.now();
    const bytes = await readFile(wasmPath);
    let res: Response;
    try {
      res = await fetch(`${admin}/filters/module?plugin=${encodeURIComponent(plugin!)}`, { method: 'PUT', body: bytes, headers });
    } catch (err) {
      return { ok: false, message: `cannot reach the proxy's admin endpoint ${admin}: ${(err as Error).cause ?? (err as Error).message}` };
    }
    const body = (await res.json().catch(() => ({}))) as { error?: string; sha256?: string; plugin?: string; loadMs?: number };
    if (!res.ok) return { ok: false, message: `the proxy refused the module (HTTP ${res.status}), it keeps the last good one:\n  ${body.error ?? 'no reason given'}` };
    const total = performance.now() - started;
    return { ok: true, message: `swapped ${body.plugin} to sha256:${body.sha256?.slice(0, 12)} (${bytes.length} bytes) in ${Math.round(total)} ms: build ${Math.round(built - started)} ms, load ${body.loadMs} ms` };
  };

  const stamp = () => new Date().toLocaleTimeString();
  const report = (r: SwapResult) => (r.ok ? io.out : io.err).write(`${stamp()} ${r.message}\n`);
  const absDir = path.resolve(dir);
  const building = (why: string) => io.out.write(`${stamp()} ${why}: building ${path.relative(process.cwd(), absDir) || '.'}\n`);
  building('start');
  const first = await cycle();
  report(first);
  if (values.once) {
    await closeKeptCompiler();
    return first.ok ? 0 : 1;
  }

  // Watch the filter's sources and the shared folders it may import; build output, tests and editor
  // temp files do not count (source-watcher.ts follows renames, deletions and new folders).
  const roots = [absDir, ...commonDirs(absDir)];
  const isSource = (relative: string) => relative === 'filter.json' || (relative.endsWith('.ts') && !/^test[\\/]/.test(relative));
  const watcher = watchSources(roots, async (changed) => {
    const names = changed.map((f) => path.relative(absDir, f));
    building(`${names.slice(0, 3).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''} changed`);
    report(await cycle());
  }, { include: isSource });
  // "watching" means a save from now on is seen: the watcher has its starting point.
  await watcher.ready;
  io.out.write(`watching ${roots.map((r) => path.relative(process.cwd(), r) || '.').join(', ')}; Ctrl-C to stop\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await watcher.close();
  await closeKeptCompiler();
  return 0;
}
