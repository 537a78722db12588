// wasmesh filter rollback NAME [--to VERSION]: point a WasmPlugin back at an earlier module version.
import { Exit } from '../../orchestrator/src/cli-client/client.ts';
import { connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { parsePluginArgs } from './plugin-args.ts';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import { filterPath, versionLabel } from './filter-render.ts';

export const usage = `usage: wasmesh filter rollback NAME [--to VERSION] [-n NS]

Points WasmPlugin NAME back at an earlier version of its module: --to VERSION, or by default the
version it ran before the current one (from its deploy history). A canary rollout in progress is
aborted first. Proxies swap without dropping a request; the rollback is itself a history entry.

  --to VERSION            the module version to go back to
  -n, --namespace NS      the plugin's namespace (default: default)

${connectionUsage}
Exit codes: 0 rolled back, 1 refused or failed, 2 usage error.
`;

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('filter rollback', usage, io, async () => {
    const args = parsePluginArgs(argv, { to: { type: 'string' } }, usage, io);
    if (!args) return Exit.Ok;
    const { name, namespace } = args;
    const to = args.values.to as string | undefined;
    const res = await args.client.request<FilterStatusBody>('POST', filterPath(namespace, name, '/rollback'), { body: to !== undefined ? { to } : {} });
    io.out.write(`wasmplugin ${namespace}/${name} rolled back to ${versionLabel({ name: res.body.module, ...res.body.current })}\n`);
    return Exit.Ok;
  });
}
