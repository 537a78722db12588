// Builds AssemblyScript proxy-wasm filters.
//
// A filter folder holds `filter.json` (the manifest) and `assembly/index.ts` (the entry). The build
// compiles it with the AssemblyScript compiler API (never a global `asc`), against the patched
// @solo-io/proxy-runtime SDK (see patches/README.md), into `<dir>/build/<name>.wasm`, then checks that
// the module is something a proxy-wasm host can load. A build is skipped when the .wasm is newer than
// every file of the folder, of the SDK and of every shared `common/` folder on the way up (see
// commonDirs), and was made with the same compiler and flags.
//
// Code shared by filters lives in the nearest `common/` folder (filters/common/assembly/json.ts),
// imported by relative path. A `common/` folder is never a filter: discovery does not enter it.

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { refreshEditorConfigs } from './editor-config.ts';
import { buildComponentFilter } from './component-build.ts';
import { addProducers } from '../../wasm/src/producers.ts';
import { installRoot } from '../../schemas/repo-files.ts';

export interface BuildOptions {
  /** Print nothing but errors. */
  quiet?: boolean;
  /** Add debug info (name section) to the .wasm and also write a .wat next to it. */
  debug?: boolean;
  /** Rebuild even if the output is up to date. */
  force?: boolean;
  /**
   * The author's loop (wasmesh filter dev): a lighter optimization level and one compiler kept loaded
   * between builds, so a save reaches the proxy in about a second instead of several.
   */
  dev?: boolean;
  /** Where progress, warnings and diagnostics go (defaults: process.stdout / process.stderr). */
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
}

export interface BuildResult {
  name: string;
  wasmPath: string;
  bytes: number;
  /** True when the existing .wasm was up to date and nothing was compiled. */
  skipped?: boolean;
}

/** The manifest fields the build relies on (filter.json may carry more). */
export interface FilterManifest {
  id: string;
  name: string;
  version?: string;
  abi?: string;
  rootId?: string;
  status?: string;
  capabilities?: string[];
  /** "as" (AssemblyScript, proxy-wasm: the default) or "ts" (TypeScript, a component: component-build.ts). */
  lang?: 'as' | 'ts';
  /** For "ts": the world the component implements (wasmesh:filter/http-filter@0.1.0). */
  world?: string;
}

/** A compiler diagnostic with a resolved location. */
export interface BuildDiagnostic {
  severity: 'error' | 'warning' | 'info';
  code: number;
  message: string;
  /** Absolute path of the file, when the diagnostic has a location. */
  file?: string;
  line?: number;
  column?: number;
}

/** Thrown when a filter does not build; the diagnostics have already been printed. */
export class FilterBuildError extends Error {
  readonly dir: string;
  readonly diagnostics: BuildDiagnostic[];
  constructor(dir: string, message: string, diagnostics: BuildDiagnostic[] = []) {
    super(message);
    this.name = 'FilterBuildError';
    this.dir = dir;
    this.diagnostics = diagnostics;
  }
}

const repoRoot = installRoot();
const nodeModules = path.join(repoRoot, 'node_modules');
const sdkDir = path.join(nodeModules, '@solo-io', 'proxy-runtime');
const stdDir = path.join(nodeModules, 'assemblyscript', 'std', 'assembly');
const STAMP = '.wasmesh-build.json';
const SKIP_DIRS = new Set(['node_modules', 'build']);
/** Folders of code shared by the filters beside and below them; never built as filters themselves. */
const COMMON_DIR = 'common';
const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * The compiler flags every filter is built with:
 * - `--exportStart _initialize`: top-level code runs from an exported `_initialize` (a WASI reactor,
 *   what proxy-wasm hosts call first), not from a start section that runs during instantiation;
 * - `--use abort=abort_proc_exit`: AS aborts go to the SDK's handler (log + wasi proc_exit) instead
 *   of an `env.abort` import that proxies do not provide;
 * - `--runtime incremental`: the default GC; the SDK pins what it hands to the host;
 * - `--path <repo>/node_modules`: finds the SDK even for folders outside this repository.
 * The host-facing exports (malloc, proxy_on_*, proxy_abi_version_0_2_1) come from the filter's
 * `export * from "@solo-io/proxy-runtime/proxy"`.
 */
function compilerArgs(entry: string, outFile: string, debug: boolean, dev = false): string[] {
  const args = [
    entry,
    '--outFile', outFile,
    '--optimizeLevel', dev ? '0' : '3',
    '--shrinkLevel', '0',
    '--exportStart', '_initialize',
    '--use', 'abort=abort_proc_exit',
    '--runtime', 'incremental',
    '--path', nodeModules,
    '--noColors',
  ];
  if (debug) args.push('--debug', '--textFile', outFile.replace(/\.wasm$/, '.wat'));
  return args;
}

function display(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? p : rel;
}

export async function readManifest(dir: string): Promise<FilterManifest> {
  const file = path.join(dir, 'filter.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new FilterBuildError(dir, `${display(dir)}: no filter.json (not a filter folder)`);
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    throw new FilterBuildError(dir, `${display(file)}: invalid JSON: ${(err as Error).message}`);
  }
  const m = manifest as Partial<FilterManifest> | null;
  if (!m || typeof m !== 'object' || Array.isArray(m)) {
    throw new FilterBuildError(dir, `${display(file)}: expected a JSON object`);
  }
  if (typeof m.name !== 'string' || !NAME_RE.test(m.name)) {
    throw new FilterBuildError(dir, `${display(file)}: "name" must be a lowercase file-name-safe string (got ${JSON.stringify(m.name)})`);
  }
  if (typeof m.id !== 'string' || m.id === '') {
    throw new FilterBuildError(dir, `${display(file)}: "id" must be a non-empty string`);
  }
  if (m.abi !== undefined && typeof m.abi !== 'string') {
    throw new FilterBuildError(dir, `${display(file)}: "abi" must be a string such as "0.2.1"`);
  }
  if (m.lang !== undefined && m.lang !== 'as' && m.lang !== 'ts') {
    throw new FilterBuildError(dir, `${display(file)}: "lang" must be "as" (AssemblyScript) or "ts" (TypeScript, a component), got ${JSON.stringify(m.lang)}`);
  }
  return m as FilterManifest;
}

/** Builds one filter folder. Throws FilterBuildError (naming the folder) if it does not build. */
export async function buildFilter(dir: string, opts: BuildOptions = {}): Promise<BuildResult> {
  const out = opts.stdout ?? process.stdout;
  const err = opts.stderr ?? process.stderr;
  const absDir = path.resolve(dir);
  const manifest = await readManifest(absDir);
  if (manifest.lang === 'ts') return buildComponentFilter(absDir, manifest, opts);
  const name = manifest.name;
  const entry = path.join(absDir, 'assembly', 'index.ts');
  if (!existsSync(entry)) {
    throw new FilterBuildError(absDir, `${display(absDir)}: compilation failed: missing entry file ${display(entry)}`);
  }
  const buildDir = path.join(absDir, 'build');
  const wasmPath = path.join(buildDir, `${name}.wasm`);
  const watPath = path.join(buildDir, `${name}.wat`);
  const debug = opts.debug === true;
  const args = compilerArgs('assembly/index.ts', `build/${name}.wasm`, debug, opts.dev === true);

  // Editor configs written for another place of the folder (or of wasmesh) are brought up to date first.
  for (const file of await refreshEditorConfigs(absDir)) {
    if (!opts.quiet) out.write(`${name}: rewrote ${display(file)} for where this folder and wasmesh are now\n`);
  }
  // `producers` changes when what the build writes into the module's producers section changes.
  const stampKey = JSON.stringify({ asc: await compilerVersion(), args, producers: PRODUCERS_FORMAT });
  if (!opts.force && (await isUpToDate(absDir, wasmPath, stampKey))) {
    const bytes = (await stat(wasmPath)).size;
    if (!opts.quiet) out.write(`${name}: up to date (${display(wasmPath)})\n`);
    return { name, wasmPath, bytes, skipped: true };
  }

  const started = Date.now();
  const result = opts.dev ? await compileKeepingCompiler([...args, '--baseDir', absDir]) : await compile([...args, '--baseDir', absDir]);
  const outputs = new Map<string, Uint8Array | string>();
  for (const o of result.outputs) outputs.set(path.resolve(o.baseDir, o.filename), o.contents);
  const diagnostics: BuildDiagnostic[] = [];
  for (const d of result.diagnostics) diagnostics.push(await locate(absDir, d));
  const ascStderr = result.stderr;

  const errors = diagnostics.filter((d) => d.severity === 'error');
  const warnings = diagnostics.filter((d) => d.severity === 'warning');
  if (!opts.quiet) for (const w of warnings) err.write(`${formatDiagnostic(w)}\n${await codeFrame(w)}`);
  if (result.error !== null || errors.length > 0) {
    for (const e of errors) err.write(`${formatDiagnostic(e)}\n${await codeFrame(e)}`);
    if (errors.length === 0) err.write(ascStderr.endsWith('\n') || ascStderr === '' ? ascStderr : `${ascStderr}\n`);
    const count = errors.length > 0 ? `${errors.length} error${errors.length === 1 ? '' : 's'}` : (result.error ?? 'unknown error');
    const shown = errors.slice(0, 10).map((e) => `  ${formatDiagnostic(e)}`);
    if (errors.length > shown.length) shown.push(`  ... and ${errors.length - shown.length} more`);
    throw new FilterBuildError(absDir, [`${display(absDir)}: compilation failed (${count})`, ...shown].join('\n'), diagnostics);
  }

  const wasm = outputs.get(wasmPath);
  if (!(wasm instanceof Uint8Array)) {
    throw new FilterBuildError(absDir, `${display(absDir)}: compilation failed: the compiler produced no ${display(wasmPath)}`);
  }
  const problems = await verifyFilterModule(wasm, manifest);
  if (problems.length > 0) {
    throw new FilterBuildError(absDir, `${display(absDir)}: the built module is not a loadable proxy-wasm filter:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
  // The module says how it was made (language, compiler, SDK), as the tool conventions' producers
  // section; asc writes none. Uploads and proxies read it back (wasm/src/producers.ts).
  const stamped = addProducers(wasm, await buildProducers());
  outputs.set(wasmPath, stamped);

  await mkdir(buildDir, { recursive: true });
  for (const [file, contents] of outputs) await writeFile(file, contents);
  if (!debug) await rm(watPath, { force: true });
  await writeFile(path.join(buildDir, STAMP), `${stampKey}\n`);
  if (!opts.quiet) {
    out.write(`${name}: built ${display(wasmPath)} (${stamped.byteLength} bytes, ${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
  }
  return { name, wasmPath, bytes: stamped.byteLength };
}

/** Finds every filter folder (one holding filter.json) under root and builds each, in path order. */
export async function buildAllFilters(root = 'filters', opts: BuildOptions = {}): Promise<BuildResult[]> {
  const dirs = await findFilterDirs(path.resolve(root));
  if (dirs.length === 0 && !opts.quiet) (opts.stdout ?? process.stdout).write(`no filters found under ${display(path.resolve(root))}\n`);
  const results: BuildResult[] = [];
  const failed: FilterBuildError[] = [];
  for (const dir of dirs) {
    try {
      results.push(await buildFilter(dir, opts));
    } catch (e) {
      if (!(e instanceof FilterBuildError)) throw e;
      failed.push(e); // keep going: report every broken filter at once
    }
  }
  if (failed.length === 1) throw failed[0];
  if (failed.length > 1) {
    throw new FilterBuildError(path.resolve(root), `${failed.length} filters failed to build:\n${failed.map((f) => f.message).join('\n')}`);
  }
  return results;
}

export async function findFilterDirs(root: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    if (entries.some((e) => e.isFile() && e.name === 'filter.json')) found.push(dir);
    for (const e of entries) {
      if (e.isDirectory() && !SKIP_DIRS.has(e.name) && e.name !== COMMON_DIR && !e.name.startsWith('.')) await walk(path.join(dir, e.name));
    }
  }
  await walk(root);
  return found.sort();
}

/**
 * Checks a built module against what proxy-wasm hosts need. Returns the problems found (empty: ok).
 * Exported so other tools can check prebuilt filters too.
 */
export async function verifyFilterModule(bytes: Uint8Array, manifest?: Pick<FilterManifest, 'abi'>): Promise<string[]> {
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    return [`not valid WebAssembly: ${(e as Error).message}`];
  }
  const problems: string[] = [];
  const exports = WebAssembly.Module.exports(module);
  const imports = WebAssembly.Module.imports(module);
  const exported = (name: string, kind: string) => exports.some((e) => e.name === name && e.kind === kind);
  if (!exported('_initialize', 'function')) problems.push('missing export _initialize (build with --exportStart _initialize)');
  if (!exported('memory', 'memory')) problems.push('missing export memory');
  if (!exported('malloc', 'function') && !exported('proxy_on_memory_allocate', 'function')) {
    problems.push('missing export malloc (add `export * from "@solo-io/proxy-runtime/proxy"` to assembly/index.ts)');
  }
  const markers = exports.filter((e) => e.kind === 'function' && e.name.startsWith('proxy_abi_version_')).map((e) => e.name);
  if (markers.length === 0) {
    problems.push('missing proxy_abi_version_* export (add `export * from "@solo-io/proxy-runtime/proxy"` to assembly/index.ts)');
  } else if (manifest?.abi !== undefined && markers[0] !== `proxy_abi_version_${manifest.abi.replace(/\./g, '_')}`) {
    problems.push(`filter.json says abi ${manifest.abi} but the module exports ${markers[0]}`);
  }
  if (imports.some((i) => i.module === 'env' && i.name === 'abort')) {
    problems.push('imports env.abort (build with --use abort=abort_proc_exit)');
  }
  if (hasStartSection(bytes)) problems.push('has a start section (top-level code must run from _initialize)');
  return problems;
}

/** Walks the section headers of a wasm binary looking for the start section (id 8). */
function hasStartSection(bytes: Uint8Array): boolean {
  let p = 8; // magic + version
  while (p < bytes.length) {
    const id = bytes[p++];
    let size = 0;
    let scale = 1;
    let b: number;
    do {
      b = bytes[p++] ?? 0;
      size += (b & 0x7f) * scale;
      scale *= 128;
    } while (b & 0x80);
    if (id === 8) return true;
    p += size;
  }
  return false;
}

interface RawDiagnostic {
  code: number;
  category: number;
  message: string;
  file?: string;
  start?: number;
}

interface CompileResult {
  error: string | null;
  stderr: string;
  outputs: { filename: string; baseDir: string; contents: Uint8Array | string }[];
  diagnostics: RawDiagnostic[];
}

// Runs asc.main (the compiler's programmatic API, from this repository's node_modules) on a worker
// thread. Why a worker: under tsx's loader hooks (the CLI, the tests) importing the compiler costs
// ~6 s, because tsx inspects Binaryen's 13 MB of JavaScript; a worker loads it in ~0.4 s without them.
// Outputs stay in memory so nothing is written unless the module also passes verification.
// One compile with the AssemblyScript compiler API, as worker source: outputs and diagnostics are
// collected, nothing is written (the caller writes after checking the module).
const COMPILE_ONCE_SOURCE = `
async function compileOnce(asc, args) {
  const outputs = [];
  const diagnostics = [];
  let stderr = '';
  const decoder = new TextDecoder();
  let error = null;
  try {
    const result = await asc.main(args, {
      stdout: { write() {} },
      stderr: { write(chunk) { stderr += typeof chunk === 'string' ? chunk : decoder.decode(chunk); } },
      writeFile(filename, contents, baseDir) { outputs.push({ filename, baseDir, contents }); },
      reportDiagnostic(d) {
        diagnostics.push({ code: d.code, category: d.category, message: d.message,
          file: d.range ? d.range.source.normalizedPath : undefined, start: d.range ? d.range.start : undefined });
      },
    });
    if (result.error) error = String(result.error.message || result.error);
  } catch (e) {
    error = String(e && e.stack || e);
  }
  return { error, stderr, outputs, diagnostics };
}
`;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
${COMPILE_ONCE_SOURCE}
(async () => {
  const { default: asc } = await import(workerData.ascUrl);
  parentPort.postMessage(await compileOnce(asc, workerData.args));
})();
`;

function compile(args: string[]): Promise<CompileResult> {
  const ascUrl = pathToFileURL(path.join(nodeModules, 'assemblyscript', 'dist', 'asc.js')).href;
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ascUrl, args } });
    let settled = false;
    worker.once('message', (message: CompileResult) => {
      settled = true;
      resolve(message);
      void worker.terminate();
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`the AssemblyScript compiler worker exited with code ${code}`));
    });
  });
}

// The same compile, in a worker that stays loaded and takes one build after another (filter dev).
const PERSISTENT_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
${COMPILE_ONCE_SOURCE}
const ascLoaded = import(workerData.ascUrl);
parentPort.on('message', async ({ id, args }) => {
  const { default: asc } = await ascLoaded;
  parentPort.postMessage({ id, result: await compileOnce(asc, args) });
});
`;

let keptCompiler: { worker: Worker; pending: Map<number, { resolve: (r: CompileResult) => void; reject: (e: Error) => void }>; next: number } | undefined;

function compileKeepingCompiler(args: string[]): Promise<CompileResult> {
  if (keptCompiler === undefined) {
    const ascUrl = pathToFileURL(path.join(nodeModules, 'assemblyscript', 'dist', 'asc.js')).href;
    const worker = new Worker(PERSISTENT_WORKER_SOURCE, { eval: true, workerData: { ascUrl } });
    const kept = { worker, pending: new Map<number, { resolve: (r: CompileResult) => void; reject: (e: Error) => void }>(), next: 0 };
    worker.on('message', ({ id, result }: { id: number; result: CompileResult }) => {
      kept.pending.get(id)?.resolve(result);
      kept.pending.delete(id);
      if (kept.pending.size === 0) worker.unref();
    });
    const fail = (err: Error) => {
      for (const p of kept.pending.values()) p.reject(err);
      kept.pending.clear();
      if (keptCompiler === kept) keptCompiler = undefined;
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the AssemblyScript compiler worker exited with code ${code}`)));
    keptCompiler = kept;
  }
  const kept = keptCompiler;
  return new Promise((resolve, reject) => {
    const id = kept.next++;
    kept.pending.set(id, { resolve, reject });
    kept.worker.ref();
    kept.worker.postMessage({ id, args });
  });
}

/** Stops the compiler kept by dev builds (if any). */
export async function closeKeptCompiler(): Promise<void> {
  const kept = keptCompiler;
  keptCompiler = undefined;
  if (kept) await kept.worker.terminate();
}

const PRODUCERS_FORMAT = 1;
let sdkVersion: string | undefined;
/** The producers section of every filter built here: AssemblyScript, asc, and the proxy-wasm SDK (patched, see patches/). */
async function buildProducers(): Promise<Record<string, { name: string; version: string }[]>> {
  const asc = await compilerVersion();
  sdkVersion ??= (JSON.parse(await readFile(path.join(nodeModules, '@solo-io', 'proxy-runtime', 'package.json'), 'utf8')) as { version: string }).version;
  return {
    language: [{ name: 'AssemblyScript', version: asc }],
    'processed-by': [{ name: 'asc', version: asc }],
    sdk: [{ name: '@solo-io/proxy-runtime', version: sdkVersion }],
  };
}

let ascVersion: string | undefined;
async function compilerVersion(): Promise<string> {
  ascVersion ??= (JSON.parse(await readFile(path.join(nodeModules, 'assemblyscript', 'package.json'), 'utf8')) as { version: string }).version;
  return ascVersion;
}

async function isUpToDate(dir: string, wasmPath: string, stampKey: string): Promise<boolean> {
  let wasmTime: number;
  try {
    wasmTime = (await stat(wasmPath)).mtimeMs;
    const stamp = await readFile(path.join(path.dirname(wasmPath), STAMP), 'utf8');
    if (stamp.trim() !== stampKey) return false;
  } catch {
    return false;
  }
  let newest = Math.max(await newestMtime(dir), await newestMtime(sdkDir));
  for (const common of commonDirs(dir)) newest = Math.max(newest, await newestMtime(common));
  return wasmTime > newest;
}

/**
 * The shared `common/` folders a filter can import from: `<ancestor>/common` for every ancestor of
 * the filter folder, up to the project root (the first folder holding package.json) or the
 * filesystem root. For filters/examples/add-header: filters/examples/common, filters/common, common.
 */
export function commonDirs(filterDir: string): string[] {
  const found: string[] = [];
  let dir = path.resolve(filterDir);
  while (true) {
    const parent = path.dirname(dir);
    if (parent === dir) break;
    const common = path.join(parent, COMMON_DIR);
    if (existsSync(common)) found.push(common);
    if (existsSync(path.join(parent, 'package.json'))) break;
    dir = parent;
  }
  return found;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.name.startsWith('.') || SKIP_DIRS.has(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (e.isFile()) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Turns an asc diagnostic (path relative to baseDir or ~lib/..., offset) into file:line:col. */
async function locate(baseDir: string, d: RawDiagnostic): Promise<BuildDiagnostic> {
  // AssemblyScript's DiagnosticCategory: 0 pedantic, 1 info, 2 warning, 3 error.
  const severity = d.category >= 3 ? 'error' : d.category === 2 ? 'warning' : 'info';
  const diag: BuildDiagnostic = { severity, code: d.code, message: d.message };
  if (d.file === undefined) return diag;
  diag.file = resolveSource(baseDir, d.file);
  if (d.start !== undefined) {
    const text = await readFile(diag.file, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const before = text.slice(0, d.start);
      const lineStart = before.lastIndexOf('\n') + 1;
      diag.line = before.split('\n').length;
      diag.column = d.start - lineStart + 1;
    }
  }
  return diag;
}

function resolveSource(baseDir: string, normalizedPath: string): string {
  if (normalizedPath.startsWith('~lib/')) {
    // The standard library, or a package from node_modules (the SDK comes through --path).
    const rest = normalizedPath.slice('~lib/'.length);
    for (const candidate of [path.join(stdDir, rest), path.join(baseDir, 'node_modules', rest)]) {
      if (existsSync(candidate)) return candidate;
    }
    return path.join(nodeModules, rest);
  }
  return path.resolve(baseDir, normalizedPath);
}

export function formatDiagnostic(d: BuildDiagnostic): string {
  const where = d.file === undefined ? '' : `${display(d.file)}${d.line === undefined ? '' : `:${d.line}:${d.column}`}: `;
  return `${where}${d.severity} TS${d.code}: ${d.message}`;
}

async function codeFrame(d: BuildDiagnostic): Promise<string> {
  if (d.file === undefined || d.line === undefined || d.column === undefined) return '';
  const text = await readFile(d.file, 'utf8').catch(() => undefined);
  const line = text?.split('\n')[d.line - 1];
  if (line === undefined) return '';
  const gutter = String(d.line);
  const caret = line.slice(0, d.column - 1).replace(/[^\t]/g, ' ');
  return `  ${gutter} | ${line.replace(/\r$/, '')}\n  ${' '.repeat(gutter.length)} | ${caret}^\n`;
}
