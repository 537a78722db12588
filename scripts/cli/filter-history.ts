// wasmesh filter history NAME: a WasmPlugin's deploy history and its module's uploaded versions.
import { Exit } from '../../orchestrator/src/cli-client/client.ts';
import { connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { outputFormat, parsePluginArgs } from './plugin-args.ts';
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
    const args = parsePluginArgs(argv, { output: { type: 'string', short: 'o' } }, usage, io);
    if (!args) return Exit.Ok;
    const output = outputFormat(args.values.output);
    const res = await args.client.request<FilterStatusBody>('GET', filterPath(args.namespace, args.name));
    io.out.write(output === 'json' ? JSON.stringify(res.body, null, 2) + '\n' : renderHistory(res.body));
    return Exit.Ok;
  });
}
