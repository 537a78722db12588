// wasmesh filter status NAME: what a WasmPlugin runs, and its rollout's progress (--watch follows it).
import { Exit } from '../../orchestrator/src/cli-client/client.ts';
import { connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { outputFormat, parsePluginArgs } from './plugin-args.ts';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import type { ApiClient } from '../../orchestrator/src/cli-client/client.ts';
import { filterPath, renderStatus } from './filter-render.ts';

export const usage = `usage: wasmesh filter status NAME [-n NS] [--watch] [-o table|json]

Shows the module version WasmPlugin NAME serves, its canary (share of streams), and the rollout:
phase, a progress bar, and the old and new versions' streams, failures and traps as the proxies
report them.

  -n, --namespace NS      the plugin's namespace (default: default)
  -w, --watch             refresh every second until the rollout ends
  -o, --output FORMAT     table (default) or json

${connectionUsage}`;

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('filter status', usage, io, async () => {
    const args = parsePluginArgs(argv, { watch: { type: 'boolean', short: 'w' }, output: { type: 'string', short: 'o' } }, usage, io);
    if (!args) return Exit.Ok;
    const output = outputFormat(args.values.output);
    const { client, namespace, name } = args;
    if (!args.values.watch) {
      const s = (await client.request<FilterStatusBody>('GET', filterPath(namespace, name))).body;
      io.out.write(output === 'json' ? JSON.stringify(s, null, 2) + '\n' : renderStatus(s));
      return Exit.Ok;
    }
    const final = await watchStatus(client, namespace, name, io);
    return final.rollout === undefined || final.rollout.phase === 'Succeeded' || final.rollout.phase === 'Progressing' ? Exit.Ok : Exit.Failure;
  });
}

/**
 * Prints the status every second until no rollout is in progress. On a terminal the block is redrawn
 * in place; otherwise a new block is printed only when the step or phase changes.
 */
export async function watchStatus(client: ApiClient, namespace: string, name: string, io: Io, intervalMs = 1000): Promise<FilterStatusBody> {
  const tty = (io.out as { isTTY?: boolean }).isTTY === true;
  let drawn = 0;
  let lastKey = '';
  for (;;) {
    const s = (await client.request<FilterStatusBody>('GET', filterPath(namespace, name))).body;
    const text = renderStatus(s);
    if (tty) {
      if (drawn > 0) io.out.write(`\x1b[${drawn}A\x1b[J`);
      io.out.write(text);
      drawn = text.split('\n').length - 1;
    } else {
      const key = `${s.rollout?.phase}/${s.rollout?.step}/${s.rollout?.weight}`;
      if (key !== lastKey) io.out.write(text);
      lastKey = key;
    }
    if (s.rollout?.phase !== 'Progressing') return s;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
