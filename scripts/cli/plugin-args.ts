// The arguments every per-WasmPlugin command takes (filter history, rollback, status, rollout):
// connection options, -n NAMESPACE, exactly one NAME, --help; plus the command's own options.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError, type ApiClient } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, joinTokenArg, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface PluginArgs<V> {
  /** The command's own option values (and the connection ones). */
  values: V;
  name: string;
  namespace: string;
  client: ApiClient;
}

/** Parses the arguments; undefined when --help was asked for (the usage is printed). */
export function parsePluginArgs<O extends Options>(argv: string[], own: O, usage: string, io: Io): PluginArgs<Record<string, string | boolean | undefined>> | undefined {
  const options: Options = { ...connectionOptions, namespace: { type: 'string', short: 'n' }, ...own };
  const { values, positionals } = parseArgs({ args: joinTokenArg(argv), options, allowPositionals: true });
  const v = values as Record<string, string | boolean | undefined>;
  if (v.help) {
    io.out.write(helpFor(usage, io.out));
    return undefined;
  }
  const [name, extra] = positionals;
  if (name === undefined) throw new UsageError('missing the WasmPlugin NAME');
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
  return { values: v, name, namespace: (v.namespace as string | undefined) ?? 'default', client: clientFrom(v as { server?: string; token?: string; 'data-dir'?: string }, io.env) };
}

/** -o table|json. */
export function outputFormat(value: unknown): 'table' | 'json' {
  const output = (value as string | undefined) ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, not "${output}"`);
  return output;
}
