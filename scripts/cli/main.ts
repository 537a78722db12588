// The wasmesh command line: a table of `<group> <verb>` subcommands (or single-word commands, whose
// verb is ''), dispatched here.
//
// Adding a command: create scripts/cli/<group>-<verb>.ts exporting
//   export async function run(argv: string[]): Promise<number>   // argv: what follows the verb
// which returns the process exit code (0 ok, 1 failure, 2 usage error) and handles its own --help,
// then add one entry to `commands` below. Modules are imported only when their command runs.

import { readFileSync } from 'node:fs';
import { installPath } from '../../schemas/repo-files.ts';
import { fillLine, fillSynopsis, helpWidth } from '../../orchestrator/src/cli-client/help-text.ts';
import { didYouMean } from '../../mesh/src/suggest.ts';

export interface CommandModule {
  run(argv: string[]): Promise<number>;
}

export interface Command {
  group: string;
  verb: string;
  /** Arguments shown after `wasmesh <group> <verb>` in the usage text. */
  args: string;
  description: string;
  load(): Promise<CommandModule>;
}

export const commands: Command[] = [
  {
    group: 'filter',
    verb: 'build',
    args: '<dir>... | --all [root] [--debug] [--quiet] [--force]',
    description: 'compile AssemblyScript filters to build/<name>.wasm',
    load: () => import('./filter-build.ts'),
  },
  {
    group: 'proxy',
    verb: '',
    args: '--config mesh.yaml [options]',
    description: 'run one sidecar proxy (standalone: config from Istio-style YAML, watched)',
    load: () => import('./proxy.ts'),
  },
  {
    group: 'gateway',
    verb: '',
    args: '--config mesh.yaml | --orchestrator HOST:PORT [options]',
    description: 'run a gateway proxy: the listeners of the Gateways selecting it, routing into the mesh',
    load: () => import('./gateway.ts'),
  },
  {
    group: 'validate',
    verb: '',
    args: '-f <file|dir|-> [-f ...]',
    description: 'validate Istio-style config documents offline (the checks the orchestrator runs)',
    load: () => import('./validate.ts'),
  },
  {
    group: 'orchestrator',
    verb: '',
    args: '[--data-dir DIR] [--store sqlite|etcd://host:port] [--listen HOST:PORT] [--grpc-listen HOST:PORT]',
    description: 'run the control plane: REST API (resources, apply, watch, modules) and config distribution',
    load: () => import('./orchestrator.ts'),
  },
  {
    group: 'ratelimit',
    verb: '',
    args: '--redis redis://HOST:PORT [--config FILE|DIR ...] [--listen HOST:PORT]',
    description: 'run the rate-limit service (Envoy RLS v3 over gRPC, counting in Redis) with the RateLimitPolicies of config files',
    load: () => import('./ratelimit.ts'),
  },
  {
    group: 'apply',
    verb: '',
    args: '-f <file|dir|-> [-f ...] [--server URL]',
    description: 'create or replace resources on the orchestrator, all or nothing',
    load: () => import('./apply.ts'),
  },
  {
    group: 'get',
    verb: '',
    args: 'KIND [NAME] [-n NS | -A] [-o table|yaml|json]',
    description: 'show resources stored in the orchestrator',
    load: () => import('./get.ts'),
  },
  {
    group: 'delete',
    verb: '',
    args: 'KIND NAME [-n NS] | -f <file>',
    description: 'delete resources from the orchestrator',
    load: () => import('./delete.ts'),
  },
  {
    group: 'proxy-status',
    verb: '',
    args: '[-n NS] [-o table|json]',
    description: 'connected proxies: config version, SYNCED / STALE / NACKED (and why), last push',
    load: () => import('./proxy-status.ts'),
  },
  {
    group: 'filter',
    verb: 'deploy',
    args: '<module.wasm> --name NAME --version VERSION [--plugin NAME -n NS]',
    description: 'upload a filter module and point a WasmPlugin at it by digest',
    load: () => import('./filter-deploy.ts'),
  },
  {
    group: 'filter',
    verb: 'history',
    args: 'NAME [-n NS]',
    description: 'the module versions a WasmPlugin has run (who, when, why) and its uploaded versions',
    load: () => import('./filter-history.ts'),
  },
  {
    group: 'filter',
    verb: 'rollback',
    args: 'NAME [--to VERSION] [-n NS]',
    description: 'point a WasmPlugin back at an earlier module version (default: the one before)',
    load: () => import('./filter-rollback.ts'),
  },
  {
    group: 'filter',
    verb: 'rollout',
    args: 'NAME --to VERSION [--steps 5,25,50,100] [--interval 30s]',
    description: 'canary rollout of a module version, rolled back automatically when it does worse',
    load: () => import('./filter-rollout.ts'),
  },
  {
    group: 'filter',
    verb: 'status',
    args: 'NAME [-n NS] [--watch]',
    description: 'what a WasmPlugin serves and its rollout progress',
    load: () => import('./filter-status.ts'),
  },
  {
    group: 'filter',
    verb: 'new',
    args: '<dir> [--template headers|reject|callout|metric] [--name NAME]',
    description: 'create a filter folder from a template (builds, tests and runs as it is)',
    load: () => import('./filter-new.ts'),
  },
  {
    group: 'filter',
    verb: 'test',
    args: '<filter-dir> [--pattern REGEX]',
    description: "build a filter and run its unit tests (test/*.test.ts, uvu, the harness)",
    load: () => import('./filter-test.ts'),
  },
  {
    group: 'filter',
    verb: 'dev',
    args: '<filter-dir> [--proxy ADMIN_URL] [--plugin NAME]',
    description: 'rebuild on save and hot-swap into a running standalone proxy',
    load: () => import('./filter-dev.ts'),
  },
  {
    group: 'token',
    verb: 'create',
    args: '--role admin|viewer|editor|proxy [--namespace NS [--service-account SA]] [--server URL | --data-dir DIR]',
    description: 'create an orchestrator API token and print it (shown once; stored hashed)',
    load: () => import('./token-create.ts'),
  },
  {
    group: 'filter',
    verb: 'run',
    args: '<filter.wasm> [options]',
    description: 'run a request through a filter without a proxy',
    load: () => import('./filter-run.ts'),
  },
  {
    group: 'kube-inject',
    verb: '',
    args: '-f <file|-> [-f ...] [-o FILE] [--orchestrator HOST:PORT] [--image IMAGE]',
    description: 'print Kubernetes YAML with the wasmesh sidecar and iptables init container injected (like istioctl kube-inject)',
    load: () => import('./kube-inject.ts'),
  },
  {
    group: 'inject-webhook',
    verb: '',
    args: '[--listen HOST:PORT] [--cert FILE --key FILE] [--print-config]',
    description: 'serve sidecar injection as a Kubernetes mutating admission webhook (HTTPS, AdmissionReview v1)',
    load: () => import('./inject-webhook.ts'),
  },
  { group: 'run', verb: '', args: '--service NAME --port PORT [options] -- <command...>', description: 'run a local process as a mesh workload under its own sidecar', load: () => import('./run.ts') },
  { group: 'demo', verb: '', args: '[--exit-after-ready]', description: 'a Bookinfo-like demo mesh: orchestrator, services under sidecars, traffic, and a guide', load: () => import('./demo.ts') },
];

/**
 * The command list, wrapped to `width` (by default the terminal's, see helpWidth): each command's
 * synopsis (continued under its arguments), then its description indented below it.
 */
export function usage(group?: string, width = helpWidth(process.stdout)): string {
  const shown = commands.filter((c) => group === undefined || c.group === group);
  const lines: string[] = [];
  for (const c of shown) {
    const name = `  wasmesh ${c.group}${c.verb ? ` ${c.verb}` : ''} `;
    const hang = name.length <= width / 2 ? name.length : 8;
    lines.push(...fillSynopsis(name, c.args, hang, width));
    lines.push(...fillLine('      ', c.description, 6, width));
  }
  return [
    'Usage: wasmesh <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    ...fillLine('', 'Run `wasmesh <group> <verb> --help` for the options of a command.', 0, width),
    '',
  ].join('\n');
}

function version(): string {
  const pkg = JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function isHelp(arg: string | undefined): boolean {
  return arg === '--help' || arg === '-h' || arg === 'help';
}

/** Runs the CLI with the arguments after `wasmesh`; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [group, verb, ...rest] = argv;
  if (group === undefined) {
    process.stderr.write(usage(undefined, helpWidth(process.stderr)));
    return 2;
  }
  if (isHelp(group)) {
    process.stdout.write(usage());
    return 0;
  }
  if (group === '--version' || group === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const inGroup = commands.filter((c) => c.group === group);
  if (inGroup.length === 0) {
    process.stderr.write(`wasmesh: unknown command "${group}"${didYouMean(group, new Set(commands.map((c) => c.group)))}\n\n${usage(undefined, helpWidth(process.stderr))}`);
    return 2;
  }
  const single = inGroup.find((c) => c.verb === '');
  if (single) return runCommand(single, verb === undefined ? [] : [verb, ...rest], group);
  if (verb === undefined || isHelp(verb)) {
    if (verb === undefined) {
      process.stderr.write(`wasmesh ${group}: missing subcommand\n\n${usage(group, helpWidth(process.stderr))}`);
      return 2;
    }
    process.stdout.write(usage(group));
    return 0;
  }
  const command = inGroup.find((c) => c.verb === verb);
  if (command === undefined) {
    process.stderr.write(`wasmesh: unknown command "${group} ${verb}"${didYouMean(verb, inGroup.map((c) => c.verb))}\n\n${usage(group, helpWidth(process.stderr))}`);
    return 2;
  }
  return runCommand(command, rest, `${group} ${verb}`);
}

async function runCommand(command: Command, rest: string[], name: string): Promise<number> {
  const group = name;
  const file = command.verb ? `scripts/cli/${command.group}-${command.verb}.ts` : `scripts/cli/${command.group}.ts`;
  let mod: CommandModule;
  try {
    mod = await command.load();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && typeof e.message === 'string' && e.message.includes(file.replace('scripts/cli/', ''))) {
      process.stderr.write(`wasmesh ${group}: not available in this checkout (${file} is missing)\n`);
      return 1;
    }
    throw err;
  }
  if (typeof mod.run !== 'function') {
    process.stderr.write(`wasmesh ${group}: ${file} does not export run(argv)\n`);
    return 1;
  }
  try {
    return await mod.run(rest);
  } catch (err) {
    process.stderr.write(`wasmesh ${group}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
