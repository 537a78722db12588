// wasmesh filter test <dir>: builds a filter (unless it is up to date) and runs its unit tests
// (test/*.test.ts, uvu, the harness), for a folder inside this repository or anywhere else.
import { parseArgs } from 'node:util';
import { FilterBuildError, buildFilter } from '../../filters/toolchain/build.ts';
import { FilterTestError, runFilterTests } from '../../filters/toolchain/test-runner.ts';

export const usage = `usage: wasmesh filter test <filter-dir> [--pattern REGEX] [--no-build]

Builds the filter in <filter-dir> (skipped when build/<name>.wasm is up to date), then runs every
test/*.test.ts with uvu. The tests load the module in the runtime the proxy uses:
  import { FilterHarness } from 'wasmesh/wasm';
wasmesh/wasm, uvu and TypeScript support come from this wasmesh installation, so nothing needs to
be installed in the filter's folder. Exit code 0 when every test passed, 1 otherwise.

  --pattern REGEX   only the test files (paths under test/) that match
  --no-build        run the tests against the module as it is
`;

export async function run(argv: string[]): Promise<number> {
  let values: { pattern?: string; 'no-build'?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { pattern: { type: 'string' }, 'no-build': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    process.stderr.write(`wasmesh filter test: ${(e as Error).message}\n\n${usage}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const [dir, extra] = positionals;
  if (dir === undefined || extra !== undefined) {
    process.stderr.write(`wasmesh filter test: give exactly one filter folder\n\n${usage}`);
    return 2;
  }
  try {
    if (!values['no-build']) await buildFilter(dir);
    return await runFilterTests(dir, { pattern: values.pattern });
  } catch (e) {
    if (e instanceof FilterBuildError) {
      const summary = e.diagnostics.length > 0 ? e.message.split('\n')[0] : e.message;
      process.stderr.write(`wasmesh filter test: ${summary}\n`);
      return 1;
    }
    if (e instanceof FilterTestError) {
      process.stderr.write(`wasmesh filter test: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
