// wasmesh filter history NAME: a WasmPlugin's deploy history and its module's uploaded versions.
import { parseArgs } from 'node:util';
import { Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, connectionUsage, joinTokenArg, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import { filterPath, renderHistory } from './filter-render.ts';

export const usage = `usage: wasmesh filter history NAME [-n NS] [-o table|json]

Shows every module version WasmPlugin NAME has pointed at (when, by whom, and why: filter deploy,
rollback, a finished rollout) and every uploaded version of its module, marking the one serving.

  -n, --namespace NS      the plugin's namespace (default: default)
  -o, --output FORMAT     table (default) or json

${connectionUsage}`;

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('filter history', usage, io, async () => {
    const { values, positionals } = parseArgs({ args: joinTokenArg(argv), options: { ...connectionOptions, namespace: { type: 'string', short: 'n' }, output: { type: 'string', short: 'o' } }, allowPositionals: true });
    if (values.help) {
      io.out.write(usage);
      return Exit.Ok;
    }
    const [name, extra] = positionals;
    if (name === undefined) throw new UsageError('missing the WasmPlugin NAME');
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
    const output = values.output ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, not "${output}"`);
    const res = await clientFrom(values, io.env).request<FilterStatusBody>('GET', filterPath(values.namespace ?? 'default', name));
    io.out.write(output === 'json' ? JSON.stringify(res.body, null, 2) + '\n' : renderHistory(res.body));
    return Exit.Ok;
  });
}
