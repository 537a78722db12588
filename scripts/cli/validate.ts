// wasmesh validate: check config files (Istio-style YAML/JSON) against the schemas and the
// cross-document rules, and print one line per problem.
import { parseArgs } from 'node:util';
import { readDocumentFiles } from '../../mesh/src/documents.ts';
import { formatErrors, validateDocuments, type ValidationMode } from '../../mesh/src/validate.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh validate -f <file> [-f <file>...] [--mode standalone|managed]

Validates the documents in the files as one set: each against the JSON Schema of its kind, then
references between them (route hosts and subsets), split weights, durations, regexes, WasmPlugin
urls and duplicate names. Prints "ok: N documents", or one line per error and exits 1.

  -f, --filename <path>   a YAML or JSON file (several documents allowed), a directory of them,
                          or - for standard input; repeatable
  --mode <mode>           standalone (default: WasmPlugin urls must be file://) or managed
                          (what the orchestrator accepts: uploaded modules, module://NAME@VERSION
                          or digest:sha256:HEX)
`;

export interface Output {
  write(text: string): unknown;
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let files: string[];
  let mode: ValidationMode;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        file: { type: 'string', multiple: true },
        mode: { type: 'string', default: 'standalone' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(helpFor(usage, out));
      return 0;
    }
    if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}" (name files with -f)`);
    files = [...(values.filename ?? []), ...(values.file ?? [])];
    if (files.length === 0) throw new Error('no files: name at least one with -f');
    if (values.mode !== 'standalone' && values.mode !== 'managed') throw new Error(`--mode must be standalone or managed, not "${values.mode}"`);
    mode = values.mode;
  } catch (e) {
    err.write(`wasmesh validate: ${(e as Error).message}\n\n${helpFor(usage, err)}`);
    return 2;
  }

  const parsed = await readDocumentFiles(files);
  const result = validateDocuments(parsed.documents, { mode });
  // Parse and validation errors together, in file order then document order.
  const fileOrder = new Map<string, number>();
  for (const d of parsed.documents) if (!fileOrder.has(d.source.file)) fileOrder.set(d.source.file, fileOrder.size);
  for (const e of parsed.errors) if (e.source && !fileOrder.has(e.source.file)) fileOrder.set(e.source.file, fileOrder.size);
  const rank = (e: { source?: { file: string; index: number } }): number =>
    e.source ? (fileOrder.get(e.source.file) ?? 0) * 1e9 + e.source.index : -1;
  const errors = [...parsed.errors, ...result.errors].sort((a, b) => rank(a) - rank(b));
  if (errors.length > 0) {
    err.write(`${formatErrors(errors)}\n`);
    err.write(`${errors.length} error${errors.length === 1 ? '' : 's'} in ${parsed.documents.length} document${parsed.documents.length === 1 ? '' : 's'}\n`);
    return 1;
  }
  out.write(`ok: ${parsed.documents.length} document${parsed.documents.length === 1 ? '' : 's'}\n`);
  return 0;
}
