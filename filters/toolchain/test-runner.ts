// Runs a filter folder's unit tests (test/*.test.ts) with uvu, in a child Node process that loads
// TypeScript through tsx and resolves `wasmesh/wasm` and uvu from this wasmesh installation
// (test-hooks.mjs), so the same command works for a folder inside this repository or anywhere else.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { installPath } from '../../schemas/repo-files.ts';
import { inEsmPackage } from './scaffold.ts';

// From the installation's root: this module also runs bundled, from dist/ (npm run build).
const HOOKS = pathToFileURL(installPath('filters', 'toolchain', 'test-hooks.mjs')).href;
const UVU_BIN = installPath('node_modules', 'uvu', 'bin.js');
/** The files uvu runs: what the repository's own `npm test` runs in a test/ folder. */
export const TEST_FILE = /\.test\.[mc]?[jt]s$/;

export class FilterTestError extends Error {}

export interface FilterTestOptions {
  /** Only the test files whose path (relative to test/) matches this regular expression. */
  pattern?: string;
  /** Colors in uvu's report (default: when stdout is a terminal). */
  color?: boolean;
  /** Where the report goes; default inherited from this process. */
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
}

/** Runs the tests; resolves with uvu's exit code (0: all passed). Throws FilterTestError when there is nothing to run. */
export async function runFilterTests(filterDir: string, opts: FilterTestOptions = {}): Promise<number> {
  const dir = path.resolve(filterDir);
  const testDir = path.join(dir, 'test');
  if (!existsSync(testDir)) throw new FilterTestError(`${filterDir}: no test/ folder (a filter's unit tests are test/*.test.ts)`);
  let pattern: RegExp;
  try {
    pattern = opts.pattern === undefined ? TEST_FILE : new RegExp(opts.pattern);
  } catch (err) {
    throw new FilterTestError(`--pattern ${JSON.stringify(opts.pattern)} is not a regular expression: ${(err as Error).message}`);
  }
  const files = (await readdir(testDir, { recursive: true })).filter((f) => TEST_FILE.test(f) && pattern.test(f));
  if (files.length === 0) {
    throw new FilterTestError(`${filterDir}: no test file in test/ ${opts.pattern === undefined ? 'ends in .test.ts' : `ends in .test.ts and matches ${opts.pattern}`}`);
  }
  if (!(await inEsmPackage(testDir))) {
    throw new FilterTestError(`${filterDir}: the tests are ES modules, but no package.json above them says "type": "module"; add ${path.join(filterDir, 'package.json')} with {"type": "module"} (wasmesh filter new writes one)`);
  }
  const color = opts.color ?? process.stdout.isTTY === true;
  // uvu reads the pattern as a case-insensitive regular expression over paths relative to test/.
  const uvuPattern = opts.pattern === undefined ? TEST_FILE.source : `^(?=.*(?:${opts.pattern})).*${TEST_FILE.source}`;
  const child = spawn(process.execPath, ['--import', HOOKS, UVU_BIN, 'test', uvuPattern, '--color', String(color)], {
    cwd: dir,
    stdio: ['ignore', opts.stdout ? 'pipe' : 'inherit', opts.stderr ? 'pipe' : 'inherit'],
  });
  if (opts.stdout) child.stdout?.on('data', (d: Buffer) => opts.stdout!.write(d.toString()));
  if (opts.stderr) child.stderr?.on('data', (d: Buffer) => opts.stderr!.write(d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
