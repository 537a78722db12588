// wasmesh filter build: compiles AssemblyScript filter folders (see filters/toolchain/build.ts).

import { parseArgs } from 'node:util';
import { FilterBuildError, buildAllFilters, buildFilter, type BuildOptions } from '../../filters/toolchain/build.ts';

const USAGE = `Usage:
  wasmesh filter build <dir>... [--debug] [--quiet] [--force]
  wasmesh filter build --all [root] [--debug] [--quiet] [--force]

Compiles each filter folder (filter.json + assembly/index.ts) to <dir>/build/<name>.wasm.
With --all, builds every filter folder found under root (default: filters).

Options:
  --all      build every filter under root
  --debug    keep debug names in the .wasm and also write <name>.wat
  --quiet    print only errors
  --force    rebuild even if the .wasm is up to date
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
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`wasmesh filter build: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!values.all && positionals.length === 0) {
    process.stderr.write(`wasmesh filter build: give filter folders or --all\n\n${USAGE}`);
    return 2;
  }
  const opts: BuildOptions = { debug: values.debug, quiet: values.quiet, force: values.force };
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
