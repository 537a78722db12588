// wasmesh filter new <dir> [--template T] [--name N]: a new filter folder from a template
// (filters/toolchain/scaffold.ts) that builds, passes its own tests and runs under `filter dev` as
// it is, wherever it is created.
import { parseArgs } from 'node:util';
import { DEFAULT_TEMPLATE, ScaffoldError, TEMPLATES, TS_TEMPLATES, createFilter } from '../../filters/toolchain/scaffold.ts';

const width = Math.max(...Object.keys(TEMPLATES).map((t) => t.length));
export const usage = `usage: wasmesh filter new <dir> [--lang as|ts] [--template TEMPLATE] [--name NAME]

Creates <dir> (it must not exist, or be empty) with a filter that builds, passes its own tests and
runs under \`wasmesh filter dev\` as it is: filter.json, assembly/index.ts (AssemblyScript against
the proxy-wasm SDK), test/filter.test.ts (uvu and the harness), example/mesh.yaml and
example/app.mjs (a proxy and an app for the dev loop), and a README with every command. It may be
anywhere, inside this repository or not; the SDK and the compiler come from this wasmesh.

  --lang L       as (default): AssemblyScript, a proxy-wasm module.
                 ts: TypeScript, a WebAssembly component of the filter world
                 (wasmesh:filter/http-filter@0.1.0) built with componentize-js: src/index.ts and
                 src/world.ts instead of assembly/, tests with ComponentHarness (wasmesh/component).
                 About 12 MB and far slower per request than AssemblyScript (docs/authoring.md).
  --template T   what the filter does to start with (default ${DEFAULT_TEMPLATE}):
${Object.entries(TEMPLATES).map(([t, what]) => `      ${t.padEnd(width)}  ${what}`).join('\n')}
                 with --lang ts: ${Object.keys(TS_TEMPLATES).join(', ')}
  --name NAME    the filter's name (default: the folder's name): lowercase letters, digits and "-",
                 starting with a letter. The .wasm, the WasmPlugin and the metrics are named by it.

The guide: docs/authoring.md in the wasmesh repository.
`;

export interface Output {
  write(text: string): unknown;
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let values: { template?: string; name?: string; lang?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { template: { type: 'string', short: 't' }, name: { type: 'string' }, lang: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    err.write(`wasmesh filter new: ${(e as Error).message}\n\n${usage}`);
    return 2;
  }
  if (values.help) {
    out.write(usage);
    return 0;
  }
  const [dir, extra] = positionals;
  if (dir === undefined || extra !== undefined) {
    err.write(`wasmesh filter new: give exactly one folder to create\n\n${usage}`);
    return 2;
  }
  try {
    const created = await createFilter(dir, { template: values.template, name: values.name, lang: values.lang });
    const shown = dir.replace(/\/+$/, '') || '/';
    out.write(`created ${shown}/ (filter ${created.name}, from the ${created.lang === 'ts' ? 'TypeScript ' : ''}${created.template} template):\n`);
    for (const file of created.files) out.write(`  ${file}\n`);
    out.write(`next:\n  wasmesh filter build ${shown}\n  wasmesh filter test ${shown}\n${shown}/README.md has the dev loop (wasmesh filter dev) and how to deploy it.\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof ScaffoldError)) throw e;
    err.write(`wasmesh filter new: ${e.message}\n`);
    return 2;
  }
}
