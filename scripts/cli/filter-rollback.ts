// wasmesh filter rollback NAME [--to VERSION]: point a WasmPlugin back at an earlier module version.
import { parseArgs } from 'node:util';
import { Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, connectionUsage, joinTokenArg, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
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
    const { values, positionals } = parseArgs({ args: joinTokenArg(argv), options: { ...connectionOptions, namespace: { type: 'string', short: 'n' }, to: { type: 'string' } }, allowPositionals: true });
    if (values.help) {
      io.out.write(usage);
      return Exit.Ok;
    }
    const [name, extra] = positionals;
    if (name === undefined) throw new UsageError('missing the WasmPlugin NAME');
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
    const namespace = values.namespace ?? 'default';
    const res = await clientFrom(values, io.env).request<FilterStatusBody>('POST', filterPath(namespace, name, '/rollback'), { body: values.to !== undefined ? { to: values.to } : {} });
    io.out.write(`wasmplugin ${namespace}/${name} rolled back to ${versionLabel({ name: res.body.module, ...res.body.current })}\n`);
    return Exit.Ok;
  });
}
