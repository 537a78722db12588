// wasmesh apply -f <file|dir|->: send documents to the orchestrator's POST /apply, all or nothing,
// and print what happened to each resource (created, configured, unchanged).
import { parseArgs } from 'node:util';
import { readDocumentFiles, type ConfigDocument } from '../../mesh/src/documents.ts';
import { formatErrors } from '../../mesh/src/validate.ts';
import { CliError, Exit, UsageError, formatApiError } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, joinTokenArg, connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import type { ResourceKind } from '../../orchestrator/src/store/types.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh apply -f <file|dir|-> [-f ...] [options]

Creates or replaces the resources in the files on the orchestrator, all or nothing: if one document
is invalid, nothing is written and every problem is printed, one per line, as
"<document>: <field path>: <reason>". Prints one line per resource: created, configured or unchanged.

  -f, --filename PATH     a YAML or JSON file (several documents allowed), a directory of them, or -
                          for standard input; repeatable
  -n, --namespace NS      namespace for documents that name none (default: default)
  -o, --output FORMAT     text (default) or json (the API's answer)

${connectionUsage}
Exit codes: 0 applied, 1 rejected or failed, 2 usage error.
`;

interface ApplyItem {
  kind: ResourceKind;
  namespace: string;
  name: string;
  action: 'created' | 'configured' | 'unchanged';
}

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('apply', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: joinTokenArg(argv),
      options: {
        ...connectionOptions,
        filename: { type: 'string', short: 'f', multiple: true },
        namespace: { type: 'string', short: 'n' },
        output: { type: 'string', short: 'o', default: 'text' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return Exit.Ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (name files with -f)`);
    const files = values.filename ?? [];
    if (files.length === 0) throw new UsageError('no files: name at least one with -f');
    if (values.output !== 'text' && values.output !== 'json') throw new UsageError(`-o must be text or json, not "${values.output}"`);
    const client = clientFrom(values, io.env);

    const parsed = await readDocumentFiles(files);
    if (parsed.errors.length > 0) {
      throw new CliError([`cannot read the documents; nothing was applied`, ...formatErrors(parsed.errors).split('\n')]);
    }
    const documents = parsed.documents.filter((d) => d.value !== null && d.value !== undefined);
    if (documents.length === 0) throw new CliError([`no documents in ${files.join(', ')}; nothing to apply`]);
    const body = documents.map((d) => withNamespace(d.value, values.namespace));

    let answer: { items: ApplyItem[] };
    try {
      answer = (await client.request<{ items: ApplyItem[] }>('POST', '/apply', { body })).body;
    } catch (e) {
      if (e instanceof CliError && e.status === 400 && e.errors.length > 0) {
        const lines = e.errors.map((x) => formatApiError({ ...x, document: renameSource(x.document, x.path, documents) }));
        throw new CliError([`rejected, nothing was applied (${e.errors.length} error${e.errors.length === 1 ? '' : 's'}):`, ...lines], { status: 400, errors: e.errors });
      }
      throw e;
    }
    if (values.output === 'json') {
      io.out.write(`${JSON.stringify(answer, null, 2)}\n`);
      return Exit.Ok;
    }
    for (const item of answer.items) io.out.write(`${item.kind.toLowerCase()} ${item.namespace}/${item.name} ${item.action}\n`);
    return Exit.Ok;
  });
}

/** The document with metadata.namespace filled in from -n when it names none. */
function withNamespace(value: unknown, namespace: string | undefined): unknown {
  if (namespace === undefined || typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const v = value as { metadata?: unknown };
  if (typeof v.metadata !== 'object' || v.metadata === null || Array.isArray(v.metadata)) return value;
  const metadata = v.metadata as { namespace?: unknown };
  if (metadata.namespace !== undefined && metadata.namespace !== '') return value;
  return { ...v, metadata: { ...metadata, namespace } };
}

/**
 * The API names documents by their place in the request ("VirtualService default/x (apply#3)");
 * say which file, document and line that was instead ("(vs.yaml#1 line 12)"): the line of the
 * field the error is about, when the file is YAML.
 */
function renameSource(document: string, path: string, documents: readonly ConfigDocument[]): string {
  return document.replace(/\bapply#(\d+)\b/g, (whole, n: string) => {
    const d = documents[Number(n) - 1];
    if (!d) return whole;
    const line = (path.startsWith('/') || path === '' ? d.lineOf?.(path) : undefined) ?? d.source.line;
    return `${d.source.file}#${d.source.index}${line !== undefined ? ` line ${line}` : ''}`;
  });
}
