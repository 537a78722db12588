// `wasmesh filter new`: a filter folder from one of the templates in filters/templates/. Each template
// is itself a filter of this repository (built by `filter build --all`, its tests run by `npm test`),
// named template-<t>; a new folder gets a copy with that name replaced by the author's, the shared
// files (filters/templates/shared: the example app, .gitignore), its own copy of the JSON reader
// (filters/common/assembly/json.ts, so the folder does not depend on where this repository is), and
// editor configs written for where it is (editor-config.ts). Build output is never copied.
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { installPath } from '../../schemas/repo-files.ts';
import { writeEditorConfigs } from './editor-config.ts';

// From the installation's root: this module also runs bundled, from dist/ (npm run build).
const TEMPLATES_DIR = installPath('filters', 'templates');
const SHARED_DIR = path.join(TEMPLATES_DIR, 'shared');
const JSON_READER = installPath('filters', 'common', 'assembly', 'json.ts');
/** How the templates import the shared JSON reader, and what a new folder imports instead. */
const JSON_IMPORT = '"../../../common/assembly/json"';
const JSON_IMPORT_LOCAL = '"./json"';
/** Never copied: build output, installed packages, and the editor configs written afresh. */
const SKIPPED = new Set(['build', 'node_modules', path.join('assembly', 'tsconfig.json'), 'tsconfig.json', 'package.json']);

export const TEMPLATES: Record<string, string> = {
  headers: 'set and remove request and response headers, replace text in response bodies',
  reject: 'answer 401 without a valid x-api-key; count the rejections in a metric',
  callout: 'ask a service about each request (HTTP callout): let it through or answer 403',
  metric: 'count responses by status class (labeled metric); log a summary on a timer',
};
export const DEFAULT_TEMPLATE = 'headers';
/** Templates of TypeScript filters (components of the filter world), folder filters/templates/ts-<t>. */
export const TS_TEMPLATES: Record<string, string> = {
  headers: 'set and remove request and response headers, replace text in response bodies',
};
export const LANGS = ['as', 'ts'] as const;
export type Lang = (typeof LANGS)[number];

/** A filter name: what filter.json, the .wasm, the WasmPlugin and (in snake case) the metrics are named by. */
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export class ScaffoldError extends Error {}

export interface NewFilterOptions {
  template?: string;
  /** as: AssemblyScript, a proxy-wasm module (default); ts: TypeScript, a component of the filter world. */
  lang?: string;
  /** Default: the folder's name. */
  name?: string;
}

export interface NewFilter {
  dir: string;
  name: string;
  template: string;
  lang: Lang;
  /** Paths relative to dir, sorted. */
  files: string[];
}

/** What a filter name becomes in root ids and metric names: lowercase, `_` for `-`. */
export function snakeName(name: string): string {
  return name.replace(/-/g, '_');
}

export async function createFilter(targetDir: string, opts: NewFilterOptions = {}): Promise<NewFilter> {
  const lang = (opts.lang ?? 'as') as Lang;
  if (!LANGS.includes(lang)) throw new ScaffoldError(`--lang ${JSON.stringify(opts.lang)} is not a language; choose as (AssemblyScript) or ts (TypeScript)`);
  const template = opts.template ?? DEFAULT_TEMPLATE;
  const templates = lang === 'ts' ? TS_TEMPLATES : TEMPLATES;
  if (!Object.hasOwn(templates, template)) {
    throw new ScaffoldError(`--template ${JSON.stringify(template)} is not a${lang === 'ts' ? ' TypeScript' : ''} template; choose one of: ${Object.keys(templates).join(', ')}`);
  }
  const dir = path.resolve(targetDir);
  const name = opts.name ?? path.basename(dir);
  if (!NAME.test(name)) {
    const what = opts.name === undefined ? `the folder name ${JSON.stringify(name)}` : `--name ${JSON.stringify(name)}`;
    throw new ScaffoldError(`${what} is not a filter name: use lowercase letters, digits and "-", starting with a letter (at most 63)${opts.name === undefined ? ', or give --name' : ''}`);
  }
  if (existsSync(dir)) {
    if (!(await stat(dir)).isDirectory()) throw new ScaffoldError(`${targetDir} exists and is not a folder`);
    if ((await readdir(dir)).length > 0) throw new ScaffoldError(`${targetDir} already exists and is not empty: give a new folder`);
  }

  const folder = lang === 'ts' ? `ts-${template}` : template;
  const from = `template-${folder}`;
  const rename = (text: string) => text.replaceAll(from, name).replaceAll(snakeName(from), snakeName(name)).replaceAll(JSON_IMPORT, JSON_IMPORT_LOCAL);
  const files: string[] = [];
  const copy = async (srcRoot: string, sub = ''): Promise<void> => {
    for (const entry of await readdir(path.join(srcRoot, sub), { withFileTypes: true })) {
      const relative = path.join(sub, entry.name);
      if (SKIPPED.has(relative) || SKIPPED.has(entry.name)) continue;
      if (entry.isDirectory()) {
        await copy(srcRoot, relative);
        continue;
      }
      const target = rename(relative);
      await mkdir(path.dirname(path.join(dir, target)), { recursive: true });
      await writeFile(path.join(dir, target), rename(await readFile(path.join(srcRoot, relative), 'utf8')));
      files.push(target);
    }
  };
  await mkdir(dir, { recursive: true });
  await copy(path.join(TEMPLATES_DIR, folder));
  await copy(SHARED_DIR);

  const manifestPath = path.join(dir, 'filter.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, unknown>;
  manifest.id = `filters.http.${snakeName(name)}`;
  manifest.version = '0.1.0';
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  if (lang === 'as') {
    const reader = await readFile(JSON_READER, 'utf8');
    await writeFile(
      path.join(dir, 'assembly', 'json.ts'),
      `// Copied from wasmesh's filters/common/assembly/json.ts by \`wasmesh filter new\`: this folder's own copy,\n// yours to change. assembly/config.ts imports it as "./json".\n${reader}`,
    );
    files.push(path.join('assembly', 'json.ts'));
    await writeEditorConfigs(dir);
    files.push(path.join('assembly', 'tsconfig.json'), 'tsconfig.json');
  } else {
    await writeEditorConfigs(dir, 'ts');
    files.push('tsconfig.json');
  }
  // The tests are ES modules: outside a package that says so (this repository does), the folder says it itself.
  if (!(await inEsmPackage(dir))) {
    const what = lang === 'ts' ? 'A wasmesh filter component in TypeScript' : 'A proxy-wasm filter';
    await writeFile(path.join(dir, 'package.json'), `${JSON.stringify({ name: name, private: true, type: 'module', description: `${what} (wasmesh filter new): build and test it with wasmesh filter build|test` }, null, 2)}\n`);
    files.push('package.json');
  }
  return { dir, name, template, lang, files: files.sort() };
}

/** The nearest package.json above `dir` says "type": "module" (Node then loads the tests as ES modules). */
export async function inEsmPackage(dir: string): Promise<boolean> {
  for (let at = path.resolve(dir); ; ) {
    const file = path.join(at, 'package.json');
    if (existsSync(file)) {
      try {
        return (JSON.parse(await readFile(file, 'utf8')) as { type?: unknown }).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(at);
    if (parent === at) return false;
    at = parent;
  }
}
