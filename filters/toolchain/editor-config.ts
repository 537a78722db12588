// Editor support for a filter folder wherever it lives: `assembly/tsconfig.json` (AssemblyScript's
// types and the SDK, for the filter's code) and `tsconfig.json` (Node's types, `wasmesh/wasm` and uvu,
// for its tests), with paths from the folder into this wasmesh installation.
//
// A relative path to the installation breaks when the folder moves, so these files carry a marker
// line: `wasmesh filter new` writes them, and `wasmesh filter build` rewrites a marked file whose
// paths no longer fit where the folder and the installation are. Files without the marker are the
// author's and are never touched. Nothing in the build or the tests reads them.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { installRoot as findInstallRoot } from '../../schemas/repo-files.ts';

export const EDITOR_CONFIG_MARKER = '// Written by wasmesh';

const installRoot = findInstallRoot();

/** A path from `fromDir` to `target` for a tsconfig: forward slashes, starting with ./ or ../. */
function rel(fromDir: string, target: string): string {
  const r = path.relative(fromDir, target).split(path.sep).join('/');
  return r.startsWith('.') ? r : `./${r}`;
}

function header(what: string): string {
  return [
    `${EDITOR_CONFIG_MARKER} for this folder and the wasmesh installation at ${installRoot}`,
    `// (${what}). \`wasmesh filter build\` rewrites it when either moves; delete this comment to keep your own.`,
    '// Editors only: the build and the tests do not read it.',
  ].join('\n');
}

/**
 * The files for a filter folder, as they should be now: [path, text]. AssemblyScript: both; a
 * TypeScript filter (a component): the one tsconfig.json, covering src/ and test/.
 */
export function editorConfigs(filterDir: string, lang: 'as' | 'ts' = 'as'): Array<[string, string]> {
  const dir = path.resolve(filterDir);
  const assemblyDir = path.join(dir, 'assembly');
  const nm = path.join(installRoot, 'node_modules');
  const assembly = {
    extends: rel(assemblyDir, path.join(nm, 'assemblyscript/std/assembly.json')),
    compilerOptions: {
      // Setting paths replaces the inherited ones: the standard library's mapping is repeated.
      paths: {
        '*': [rel(assemblyDir, path.join(nm, 'assemblyscript/std/assembly')) + '/*'],
        '@solo-io/proxy-runtime': [rel(assemblyDir, path.join(nm, '@solo-io/proxy-runtime/index.ts'))],
        '@solo-io/proxy-runtime/*': [rel(assemblyDir, path.join(nm, '@solo-io/proxy-runtime')) + '/*'],
      },
    },
    include: ['./**/*.ts'],
  };
  // The same options the wasmesh repository checks its own tests with.
  const tests = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib: ['ES2023', 'DOM'],
      types: ['node'],
      typeRoots: [rel(dir, path.join(nm, '@types'))],
      strict: true,
      allowImportingTsExtensions: true,
      rewriteRelativeImportExtensions: true,
      verbatimModuleSyntax: true,
      skipLibCheck: true,
      noEmit: true,
      paths: {
        'wasmesh/wasm': [rel(dir, path.join(installRoot, 'wasm/src/index.ts'))],
        'wasmesh/component': [rel(dir, path.join(installRoot, 'proxy-host/src/component-filter/index.ts'))],
        uvu: [rel(dir, path.join(nm, 'uvu/index.d.ts'))],
        'uvu/assert': [rel(dir, path.join(nm, 'uvu/assert/index.d.ts'))],
      },
    },
    // The runtime's own declarations (Node's latin1 Buffer methods) come with it.
    include: [...(lang === 'ts' ? ['src/**/*.ts'] : []), 'test/**/*.ts', rel(dir, path.join(installRoot, 'wasm/src/node-buffer.d.ts'))],
  };
  if (lang === 'ts') return [[path.join(dir, 'tsconfig.json'), `${header('the filter and its tests: wasmesh/component, uvu and Node')}\n${JSON.stringify(tests, null, 2)}\n`]];
  return [
    [path.join(assemblyDir, 'tsconfig.json'), `${header('AssemblyScript and the proxy-wasm SDK')}\n${JSON.stringify(assembly, null, 2)}\n`],
    [path.join(dir, 'tsconfig.json'), `${header('the tests: wasmesh/wasm, uvu and Node')}\n${JSON.stringify(tests, null, 2)}\n`],
  ];
}

/** Writes the files (filter new). */
export async function writeEditorConfigs(filterDir: string, lang: 'as' | 'ts' = 'as'): Promise<void> {
  for (const [file, text] of editorConfigs(filterDir, lang)) await writeFile(file, text);
}

/**
 * Rewrites the marked files whose content is out of date (the folder or the installation moved);
 * returns the files rewritten. Unmarked and missing files are left alone.
 */
export async function refreshEditorConfigs(filterDir: string, lang: 'as' | 'ts' = 'as'): Promise<string[]> {
  const rewritten: string[] = [];
  for (const [file, text] of editorConfigs(filterDir, lang)) {
    if (!existsSync(file)) continue;
    const current = await readFile(file, 'utf8').catch(() => '');
    if (!current.startsWith(EDITOR_CONFIG_MARKER) || current === text) continue;
    await writeFile(file, text);
    rewritten.push(file);
  }
  return rewritten;
}
