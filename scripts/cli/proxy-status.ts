// wasmesh proxy-status: the proxies connected to the orchestrator and whether they run its config.
import { parseArgs } from 'node:util';
import { Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { age, clientFrom, connectionOptions, joinTokenArg, connectionUsage, runCommand, shortVersion, table, type Io } from '../../orchestrator/src/cli-client/common.ts';
import type { ProxyStatusItem } from '../../orchestrator/src/http/proxy-status.ts';
import { formatPath } from '../../mesh/src/validate.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh proxy-status [-n NS] [-o table|json] [options]

Lists the proxies connected to this orchestrator replica (each replica reports its own streams):
the config version it holds for each, and whether the proxy runs it:
  SYNCED   the proxy ACKed the latest config the orchestrator built for it
  STALE    a push is in flight or waiting (a proxy should not stay STALE for long), or the
           orchestrator cannot build the proxy's latest config: the reason is printed under the row
  NACKED   the proxy refused the current version and keeps its previous config; the reason is
           printed under the row. Fix the config (wasmesh get / apply) and it is pushed again.
Under any row, "problem:" lines name resources the proxy's config does not carry as written (a
WasmPlugin whose module cannot be served is left out, or denies its requests, by its failStrategy;
an AuthorizationPolicy rule the policy filter cannot evaluate fails closed) and why. The rest of
the config still reaches the proxy.

  -n, --namespace NS      only proxies in this namespace
  -o, --output FORMAT     table (default) or json

${connectionUsage}
Exit codes: 0 listed (even if some proxy is NACKED or STALE), 1 failed, 2 usage error.
`;

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('proxy-status', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: joinTokenArg(argv),
      options: {
        ...connectionOptions,
        namespace: { type: 'string', short: 'n' },
        output: { type: 'string', short: 'o', default: 'table' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return Exit.Ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (values.output !== 'table' && values.output !== 'json') throw new UsageError(`-o must be table or json, not "${values.output}"`);
    const client = clientFrom(values, io.env);
    const res = await client.request<{ discovery?: boolean; items: ProxyStatusItem[] }>('GET', '/proxy-status', { query: { namespace: values.namespace } });
    const items = res.body.items.filter((p) => values.namespace === undefined || p.namespace === values.namespace);
    if (values.output === 'json') {
      io.out.write(`${JSON.stringify({ items }, null, 2)}\n`);
      return Exit.Ok;
    }
    if (items.length === 0) {
      io.err.write(
        res.body.discovery === false
          ? `No proxies: the orchestrator at ${client.server} runs no discovery service.\n`
          : `No proxies connected to ${client.server}${values.namespace ? ` in namespace ${values.namespace}` : ''}.\n`,
      );
      return Exit.Ok;
    }
    const now = Date.now();
    const header = ['PROXY', 'NAMESPACE', 'VERSION', 'STATUS', 'LAST PUSH', 'CONNECTED', 'NODE'];
    const rows = items.map((p) => [
      p.workload || p.node,
      p.namespace,
      shortVersion(p.latest ?? p.sent?.version ?? p.acked),
      p.status,
      p.lastPush ? `${age(p.lastPush, now)} ago` : '-',
      age(p.connectedSince, now),
      p.node,
    ]);
    // The table, then under each NACKED row why, and what the proxy still runs.
    const lines = table(header, rows).trimEnd().split('\n');
    io.out.write(`${lines[0]}\n`);
    items.forEach((p, i) => {
      io.out.write(`${lines[i + 1]}\n`);
      if (p.status === 'NACKED' && p.nacked) {
        io.out.write(`  NACK ${shortVersion(p.nacked.version)}: ${oneLine(p.nacked.message)}\n`);
        io.out.write(`  still running ${shortVersion(p.acked)}\n`);
      } else if (p.status === 'STALE' && p.reason) {
        io.out.write(`  STALE: ${oneLine(p.reason)}\n`);
      }
      for (const problem of p.problems ?? []) {
        io.out.write(`  problem: ${problem.resource}${problem.path ? ` ${formatPath(problem.path)}` : ''}: ${oneLine(problem.message)}\n`);
      }
    });
    return Exit.Ok;
  });
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}
