// Builds TypeScript filters (filter.json `"lang": "ts"`) into WebAssembly components of the filter
// world (schemas/wit/filter.wit, world http-filter):
//  1. the TypeScript compiler checks src/index.ts and what it imports (the editor's strict options;
//     a type error fails the build with file:line:col, before the slow step), then esbuild bundles
//     them into one ES module;
//  2. componentize-js (its API: its CLI cannot read host directories here) turns the bundle into a
//     component, with every WASI feature off, so the component imports nothing (the proxy refuses
//     a component that imports anything);
//  3. the result is build/<name>.wasm.
// Step 2 takes 20-30 s on a small machine, so its output is kept in a build cache shared by every
// folder (os.tmpdir()/wasmesh-componentize, at most CACHE_ENTRIES entries, by a hash of the bundle,
// the WIT, the world, the features and componentize-js's version): a bundle built before, here or
// in another folder, costs nothing. A build is skipped when the .wasm is newer than every file of
// the folder and was made with the same componentize-js.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { installPath } from '../../schemas/repo-files.ts';
import { FilterBuildError, type BuildOptions, type BuildResult, type FilterManifest } from './build.ts';
import { refreshEditorConfigs } from './editor-config.ts';

export const FILTER_WORLD = 'wasmesh:filter/http-filter@0.1.0';
const WORLD_NAME = 'http-filter';
const DISABLED_FEATURES = ['random', 'stdio', 'clocks', 'http', 'fetch-event'];
const STAMP = '.wasmesh-build.json';
const CACHE_DIR = path.join(tmpdir(), 'wasmesh-componentize');
const CACHE_ENTRIES = 16;
const SKIP_DIRS = new Set(['node_modules', 'build']);

interface Componentize {
  componentize(source: string, opts: { witWorld: string; worldName: string; disableFeatures?: string[] }): Promise<{ component: Uint8Array }>;
}

let componentizeVersion: string | undefined;
async function version(): Promise<string> {
  componentizeVersion ??= (JSON.parse(await readFile(installPath('node_modules', '@bytecodealliance', 'componentize-js', 'package.json'), 'utf8')) as { version: string }).version;
  return componentizeVersion;
}

function display(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? p : rel;
}

/**
 * Type-checks the filter's src/index.ts and what it imports with the TypeScript compiler, with the
 * options of the folder's editor tsconfig (strict; ES2023 and DOM's TextEncoder; `.ts` imports);
 * throws FilterBuildError listing each error at file:line:col. Returns false when the compiler is not
 * installed (a wasmesh installed without its devDependencies): the build goes on unchecked.
 */
export async function checkFilterTypes(dir: string): Promise<boolean> {
  let ts: typeof import('typescript');
  try {
    ts = ((await import('typescript')) as { default?: typeof import('typescript') }).default ?? (await import('typescript'));
  } catch {
    return false;
  }
  const entry = path.join(dir, 'src', 'index.ts');
  if (!existsSync(entry)) throw new FilterBuildError(dir, `${display(dir)}: missing entry file ${display(entry)}`);
  const program = ts.createProgram([entry], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    types: [],
    strict: true,
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    skipLibCheck: true,
    noEmit: true,
  });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length === 0) return true;
  const lines = diagnostics.slice(0, 20).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.start === undefined) return `  error TS${d.code}: ${text}`;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    return `  ${d.file.fileName}:${line + 1}:${character + 1}: error TS${d.code}: ${text}`;
  });
  const more = diagnostics.length > 20 ? [`  ... and ${diagnostics.length - 20} more`] : [];
  throw new FilterBuildError(dir, [`${display(dir)}: type check failed (${diagnostics.length} error${diagnostics.length === 1 ? '' : 's'})`, ...lines, ...more].join('\n'));
}

/** Bundles the filter's src/index.ts into one ES module; throws FilterBuildError with esbuild's messages (file:line:col). */
export async function bundleFilter(dir: string): Promise<string> {
  const entry = path.join(dir, 'src', 'index.ts');
  if (!existsSync(entry)) throw new FilterBuildError(dir, `${display(dir)}: missing entry file ${display(entry)}`);
  const esbuild = await import('esbuild');
  try {
    const out = await esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'neutral', target: 'es2022', write: false, logLevel: 'silent', absWorkingDir: dir });
    return out.outputFiles[0].text;
  } catch (err) {
    const errors = (err as { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }).errors ?? [];
    const lines = errors.map((e) => (e.location ? `  ${path.join(dir, e.location.file)}:${e.location.line}:${e.location.column + 1}: error: ${e.text}` : `  error: ${e.text}`));
    throw new FilterBuildError(dir, [`${display(dir)}: compilation failed (${errors.length || 1} error${errors.length === 1 ? '' : 's'})`, ...(lines.length ? lines : [`  ${(err as Error).message}`])].join('\n'));
  }
}

/** The component for a bundle: from the build cache, or made by componentize-js now (and cached). */
export async function componentizeCached(source: string, dir: string): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const wit = await readFile(installPath('schemas', 'wit', 'filter.wit'), 'utf8');
  const key = createHash('sha256').update(JSON.stringify({ componentize: await version(), source, wit, world: WORLD_NAME, features: DISABLED_FEATURES })).digest('hex').slice(0, 40);
  const file = path.join(CACHE_DIR, `${key}.wasm`);
  if (existsSync(file)) {
    const now = new Date();
    await utimes(file, now, now).catch(() => undefined);
    return { bytes: new Uint8Array(await readFile(file)), cached: true };
  }
  const { componentize } = (await import('@bytecodealliance/componentize-js')) as unknown as Componentize;
  let component: Uint8Array;
  try {
    // The WIT goes in as text: the splicer inside is WASI-compiled and sees no host directories.
    ({ component } = await componentize(source, { witWorld: wit, worldName: WORLD_NAME, disableFeatures: DISABLED_FEATURES }));
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    throw new FilterBuildError(dir, `${display(dir)}: componentize-js could not make a ${FILTER_WORLD} component of src/index.ts: ${message.split('\n').slice(0, 8).join('\n  ')}`);
  }
  await mkdir(CACHE_DIR, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, component, { mode: 0o600 });
  await rename(tmp, file);
  await boundCache();
  return { bytes: new Uint8Array(component), cached: false };
}

async function boundCache(): Promise<void> {
  const entries: Array<{ file: string; mtime: number }> = [];
  for (const name of await readdir(CACHE_DIR)) {
    if (!name.endsWith('.wasm')) continue;
    const s = await stat(path.join(CACHE_DIR, name)).catch(() => undefined);
    if (s) entries.push({ file: path.join(CACHE_DIR, name), mtime: s.mtimeMs });
  }
  entries.sort((a, b) => b.mtime - a.mtime);
  for (const e of entries.slice(CACHE_ENTRIES)) await rm(e.file, { force: true });
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && SKIP_DIRS.has(entry.name)) continue;
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? await newestMtime(p) : (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Builds a TypeScript filter folder into build/<name>.wasm. Throws FilterBuildError naming the folder. */
export async function buildComponentFilter(absDir: string, manifest: FilterManifest, opts: BuildOptions = {}): Promise<BuildResult> {
  const out = opts.stdout ?? process.stdout;
  const name = manifest.name;
  if (manifest.world !== undefined && manifest.world !== FILTER_WORLD) {
    throw new FilterBuildError(absDir, `${display(path.join(absDir, 'filter.json'))}: "world" is ${JSON.stringify(manifest.world)}; this wasmesh builds ${FILTER_WORLD}`);
  }
  const buildDir = path.join(absDir, 'build');
  const wasmPath = path.join(buildDir, `${name}.wasm`);
  // Editor configs written for another place of the folder (or of wasmesh) are brought up to date first.
  for (const file of await refreshEditorConfigs(absDir, 'ts')) {
    if (!opts.quiet) out.write(`${name}: rewrote ${display(file)} for where this folder and wasmesh are now\n`);
  }
  const stampKey = JSON.stringify({ componentize: await version(), world: FILTER_WORLD, features: DISABLED_FEATURES });
  if (!opts.force && existsSync(wasmPath)) {
    const stamp = await readFile(path.join(buildDir, STAMP), 'utf8').catch(() => '');
    if (stamp.trim() === stampKey && (await stat(wasmPath)).mtimeMs > (await newestMtime(absDir))) {
      const bytes = (await stat(wasmPath)).size;
      if (!opts.quiet) out.write(`${name}: up to date (${display(wasmPath)})\n`);
      return { name, wasmPath, bytes, skipped: true };
    }
  }
  const started = Date.now();
  if (!(await checkFilterTypes(absDir)) && !opts.quiet) out.write(`${name}: types not checked (the typescript package is not installed)\n`);
  const source = await bundleFilter(absDir);
  const built = await componentizeCached(source, absDir);
  await mkdir(buildDir, { recursive: true });
  await writeFile(wasmPath, built.bytes);
  await writeFile(path.join(buildDir, STAMP), `${stampKey}\n`);
  if (!opts.quiet) {
    const how = built.cached ? 'component from the build cache' : 'componentize-js';
    out.write(`${name}: built ${display(wasmPath)} (${built.bytes.byteLength} bytes, ${how}, ${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
  }
  return { name, wasmPath, bytes: built.bytes.byteLength };
}
