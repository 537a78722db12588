// wasmesh filter rollout NAME --to VERSION: a canary rollout with automatic rollback.
import { Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { parsePluginArgs } from './plugin-args.ts';
import type { RolloutStatus } from '../../orchestrator/src/rollout/controller.ts';
import { filterPath, parseDuration, versionLabel } from './filter-render.ts';
import { watchStatus } from './filter-status.ts';

export const usage = `usage: wasmesh filter rollout NAME --to VERSION [--steps 5,25,50,100] [--interval 30s] [options]

Rolls WasmPlugin NAME out to VERSION of its module (uploaded before, e.g. with wasmesh filter deploy
--upload-only) in steps: each step sends that percentage of streams to the new version, picked per
proxy by a stable hash of x-request-id. The orchestrator compares the new version's traps and failed
streams (5xx, resets) with the old one's as the proxies report them, and rolls back on its own when
the new one is worse past a threshold, when a proxy's event loop stalls while it runs the new
version, or when a proxy running it stops reporting; after the last step the new version serves
everything.
Follows the progress (a progress bar) until the rollout ends, unless --no-wait.

  --to VERSION                      the module version to roll out (required)
  --steps LIST                      percentages, increasing, last <= 100 (default 5,25,50,100)
  --interval DURATION               time per step: 30s, 2m, 500ms (default 30s)
  --max-error-rate-increase RATIO   roll back when the new version fails this much more of its
                                    streams, 0..1 (default 0.05)
  --max-trap-rate-increase RATIO    roll back when it traps this much more per stream (default 0.01)
  --min-streams N                   streams of the new version before failure rates are compared (default 20)
  --silent-after DURATION           a proxy running the new version that has not reported for this
                                    long holds the step: it does not advance (default 6s)
  --max-silence DURATION            silent this long (stopped, stuck, disconnected): roll back (default 20s)
  --no-wait                         start it and return
  -n, --namespace NS                the plugin's namespace (default: default)

${connectionUsage}
Exit codes: 0 rolled out (or started, with --no-wait), 1 rolled back, aborted or refused, 2 usage error.
`;

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('filter rollout', usage, io, async () => {
    const args = parsePluginArgs(
      argv,
      {
        to: { type: 'string' },
        steps: { type: 'string' },
        interval: { type: 'string' },
        'max-error-rate-increase': { type: 'string' },
        'max-trap-rate-increase': { type: 'string' },
        'min-streams': { type: 'string' },
        'silent-after': { type: 'string' },
        'max-silence': { type: 'string' },
        'no-wait': { type: 'boolean' },
      },
      usage,
      io,
    );
    if (!args) return Exit.Ok;
    const values = args.values as Record<string, string | undefined> & { 'no-wait'?: boolean };
    const { name, namespace, client } = args;
    if (values.to === undefined) throw new UsageError('--to VERSION is required');
    const ratio = (flag: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!(n >= 0 && n <= 1)) throw new UsageError(`--${flag} must be a ratio between 0 and 1, not "${v}"`);
      return n;
    };
    let steps: number[] | undefined;
    if (values.steps !== undefined) {
      steps = values.steps.split(',').map((x) => Number(x.trim().replace(/%$/, '')));
      if (steps.some((x) => !(x > 0 && x <= 100))) throw new UsageError(`--steps must be percentages in (0, 100], not "${values.steps}"`);
    }
    let minStreams: number | undefined;
    if (values['min-streams'] !== undefined) {
      minStreams = Number(values['min-streams']);
      if (!Number.isInteger(minStreams) || minStreams < 0) throw new UsageError(`--min-streams must be a whole number, not "${values['min-streams']}"`);
    }
    const body = {
      to: values.to,
      ...(steps ? { steps } : {}),
      ...(values.interval !== undefined ? { intervalMs: parseDuration(values.interval, '--interval') } : {}),
      ...(ratio('max-error-rate-increase', values['max-error-rate-increase']) !== undefined ? { maxErrorRateIncrease: Number(values['max-error-rate-increase']) } : {}),
      ...(ratio('max-trap-rate-increase', values['max-trap-rate-increase']) !== undefined ? { maxTrapRateIncrease: Number(values['max-trap-rate-increase']) } : {}),
      ...(minStreams !== undefined ? { minStreams } : {}),
      ...(values['silent-after'] !== undefined ? { silentAfterMs: parseDuration(values['silent-after'], '--silent-after') } : {}),
      ...(values['max-silence'] !== undefined ? { maxSilenceMs: parseDuration(values['max-silence'], '--max-silence') } : {}),
    };
    const started = (await client.request<RolloutStatus>('POST', filterPath(namespace, name, '/rollout'), { body })).body;
    io.out.write(`rollout of ${namespace}/${name} to ${versionLabel(started.to)} started: steps ${started.steps.join(',')}%, ${started.intervalMs / 1000}s each\n`);
    if (values['no-wait']) return Exit.Ok;
    const final = await watchStatus(client, namespace, name, io);
    const phase = final.rollout?.phase;
    io.out.write(phase === 'Succeeded' ? `${namespace}/${name} now runs ${versionLabel(final.rollout!.to)}\n` : `rollout ${phase ?? 'ended'}: ${final.rollout?.message ?? ''}\n`);
    return phase === 'Succeeded' ? Exit.Ok : Exit.Failure;
  });
}
