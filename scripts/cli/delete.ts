// wasmesh delete KIND NAME [-n NS] | delete -f <file>: remove resources from the orchestrator.
import { parseArgs } from 'node:util';
import { readDocumentFiles } from '../../mesh/src/documents.ts';
import { formatErrors } from '../../mesh/src/validate.ts';
import { CliError, Exit, UsageError, formatApiError } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, joinTokenArg, connectionUsage, parseKind, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { PLURALS } from '../../orchestrator/src/http/kinds.ts';
import type { ResourceKind } from '../../orchestrator/src/store/types.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh delete KIND NAME [NAME...] [-n NS] [options]
       wasmesh delete -f <file|dir|-> [options]

Deletes resources from the orchestrator: by kind and name, or every resource the documents in the
files name (in reverse order, so what refers to something goes before it). The orchestrator refuses
a delete that would leave other resources invalid (a VirtualService routing to a ServiceEntry's host)
and says which.

  -n, --namespace NS      namespace (default: default, or the documents' own)
  -f, --filename PATH     a YAML or JSON file, a directory of them, or -; repeatable
  --ignore-not-found      a resource that does not exist is not an error

${connectionUsage}
Exit codes: 0 deleted, 1 not found (without --ignore-not-found), refused or failed, 2 usage error.
`;

interface Target {
  kind: ResourceKind;
  namespace: string;
  name: string;
}

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('delete', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: joinTokenArg(argv),
      options: {
        ...connectionOptions,
        namespace: { type: 'string', short: 'n' },
        filename: { type: 'string', short: 'f', multiple: true },
        'ignore-not-found': { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return Exit.Ok;
    }
    const files = values.filename ?? [];
    let targets: Target[];
    if (files.length > 0) {
      if (positionals.length > 0) throw new UsageError(`give KIND NAME or -f, not both (unexpected "${positionals[0]}")`);
      const parsed = await readDocumentFiles(files);
      if (parsed.errors.length > 0) throw new CliError(['cannot read the documents; nothing was deleted', ...formatErrors(parsed.errors).split('\n')]);
      targets = [];
      for (const d of parsed.documents) {
        const v = d.value as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } } | null;
        const where = `${d.source.file}#${d.source.index}`;
        if (!v || typeof v.kind !== 'string' || typeof v.metadata?.name !== 'string') throw new CliError([`${where}: a document to delete needs kind and metadata.name; nothing was deleted`]);
        const kind = (() => {
          try {
            return parseKind(v.kind as string);
          } catch {
            throw new CliError([`${where}: unknown kind "${String(v.kind)}"; nothing was deleted`]);
          }
        })();
        const ns = typeof v.metadata.namespace === 'string' && v.metadata.namespace !== '' ? v.metadata.namespace : (values.namespace ?? 'default');
        targets.push({ kind, namespace: ns, name: v.metadata.name });
      }
      targets.reverse();
      if (targets.length === 0) throw new CliError([`no documents in ${files.join(', ')}; nothing to delete`]);
    } else {
      const [kindArg, ...names] = positionals;
      if (kindArg === undefined) throw new UsageError('missing KIND and NAME (or -f FILE)');
      if (names.length === 0) throw new UsageError(`missing NAME: wasmesh delete ${kindArg} NAME`);
      const kind = parseKind(kindArg);
      targets = names.map((name) => ({ kind, namespace: values.namespace ?? 'default', name }));
    }
    const client = clientFrom(values, io.env);

    let failed = 0;
    for (const t of targets) {
      const label = `${t.kind.toLowerCase()} ${t.namespace}/${t.name}`;
      try {
        const res = await client.request('DELETE', `/apis/${PLURALS[t.kind]}/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.name)}`, { accept: [404] });
        if (res.status === 404) {
          if (values['ignore-not-found']) continue;
          io.err.write(`wasmesh delete: ${label} not found\n`);
          failed++;
          continue;
        }
        io.out.write(`${label} deleted\n`);
      } catch (e) {
        // Connection and auth failures end the run; a refused delete is reported and the rest go on.
        if (!(e instanceof CliError) || e.status === undefined || e.status === 401 || e.status === 403) throw e;
        io.err.write(`wasmesh delete: ${label} refused (${e.status}):\n${e.errors.map((x) => `  ${formatApiError(x)}`).join('\n')}\n`);
        failed++;
      }
    }
    return failed > 0 ? Exit.Failure : Exit.Ok;
  });
}
