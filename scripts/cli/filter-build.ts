// wasmesh filter build: compiles AssemblyScript filter folders (see filters/toolchain/build.ts).

import path from 'node:path';
import { parseArgs } from 'node:util';
import { FilterBuildError, buildAllFilters, buildFilter, findFilterDirs, type BuildOptions } from '../../filters/toolchain/build.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `Usage:
  wasmesh filter build <dir>... [--debug] [--quiet] [--force] [--keep-going]
  wasmesh filter build --all [root] [--debug] [--quiet] [--force] [--keep-going]

Compiles each filter folder (filter.json + assembly/index.ts) to <dir>/build/<name>.wasm.
With --all, builds every filter folder found under root (default: filters).

Options:
  --all      build every filter under root
  --debug    keep debug names in the .wasm and also write <name>.wat
  --quiet    print only errors
  --force    rebuild even if the .wasm is up to date
  --keep-going
             a filter that does not build is a warning naming its folder and error; the others
             are built and the exit status is 0 (what npm start uses: the demo needs only the
             built-in filters, and checks for them itself)
  -h, --help show this help
`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        all: { type: 'boolean' },
        debug: { type: 'boolean' },
        quiet: { type: 'boolean' },
        force: { type: 'boolean' },
        'keep-going': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`wasmesh filter build: ${(err as Error).message}\n\n${helpFor(usage, process.stderr)}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(helpFor(usage));
    return 0;
  }
  if (!values.all && positionals.length === 0) {
    process.stderr.write(`wasmesh filter build: give filter folders or --all\n\n${helpFor(usage, process.stderr)}`);
    return 2;
  }
  const opts: BuildOptions = { debug: values.debug, quiet: values.quiet, force: values.force };
  if (values['keep-going']) return keepGoing(values.all ? positionals.length > 0 ? positionals : ['filters'] : undefined, positionals, opts);
  try {
    if (values.all) {
      const roots = positionals.length > 0 ? positionals : ['filters'];
      for (const root of roots) await buildAllFilters(root, opts);
    } else {
      for (const dir of positionals) await buildFilter(dir, opts);
    }
    return 0;
  } catch (err) {
    if (err instanceof FilterBuildError) {
      // Diagnostics (with code frames) are already printed; finish with the summary line(s).
      const summary = err.diagnostics.length > 0 ? err.message.split('\n')[0] : err.message;
      process.stderr.write(`wasmesh filter build: ${summary}\n`);
      return 1;
    }
    throw err;
  }
}

/**
 * Builds every folder (under `roots` with --all, else `dirs`), each failure a warning: the
 * compiler's diagnostics are printed as usual, then one line naming the folder and the error.
 */
async function keepGoing(roots: string[] | undefined, dirs: string[], opts: BuildOptions): Promise<number> {
  const folders = roots ? (await Promise.all(roots.map((r) => findFilterDirs(path.resolve(r))))).flat() : dirs;
  if (roots && folders.length === 0 && !opts.quiet) process.stdout.write(`no filters found under ${roots.join(', ')}\n`);
  const failed: string[] = [];
  for (const dir of folders) {
    try {
      await buildFilter(dir, opts);
    } catch (err) {
      if (!(err instanceof FilterBuildError)) throw err;
      const where = path.relative(process.cwd(), path.resolve(dir)) || '.';
      failed.push(where);
      const [first, ...rest] = err.message.split('\n');
      const reason = first!.startsWith(`${where}: `) ? first!.slice(where.length + 2) : first;
      process.stderr.write(`wasmesh filter build: warning: ${where} was not built (--keep-going): ${reason}\n${rest.map((l) => `${l}\n`).join('')}`);
    }
  }
  if (failed.length > 0) process.stderr.write(`wasmesh filter build: warning: ${failed.length} filter${failed.length === 1 ? '' : 's'} not built: ${failed.join(', ')}\n`);
  return 0;
}
