// wasmesh kube-inject: Kubernetes YAML in, the same YAML out with the wasmesh sidecar injected into
// every workload's pod template (istioctl kube-inject).
import { readFile, stat, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { CliError, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { runCommand, type Output } from '../../orchestrator/src/cli-client/common.ts';
import { injectArgOptions, injectOptionsUsage, resolveInjectOptions } from '../../orchestrator/src/inject/options.ts';
import { injectYaml, joinSegments, type YamlInjectResult } from '../../orchestrator/src/inject/yaml.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh kube-inject -f <file|-> [-f ...] [-o FILE] [options]

Prints the Kubernetes documents of the files with the wasmesh sidecar injected into each pod
template: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (apps/v1, batch/v1).
Other documents, and unchanged ones, are printed exactly as read. Each pod template gets
  - an init container wasmesh-init that redirects the pod's TCP traffic to the sidecar with iptables
    (inbound to 15006, outbound to 15001; the proxy's own traffic, UID 1337, is not redirected),
  - a container wasmesh-proxy: wasmesh proxy in managed mode (--orchestrator), admin on 15000,
    ready at /ready, its token from a Secret (see --token-secret),
  - the annotation wasmesh.io/status naming what was added.
Left alone: pod templates annotated or labelled sidecar.istio.io/inject or wasmesh.io/inject
"false" (on the template or the resource), already injected ones (a wasmesh-proxy container), and
hostNetwork pods. Injecting twice gives the same output as once.

The workload is named by the app label (or app.kubernetes.io/name), else the resource's name; the
proxy's labels are the pod template's; the app port is the annotation wasmesh.io/app-port, else the
first TCP containerPort of the pod. Traffic capture follows Istio's annotations
traffic.sidecar.istio.io/{include,exclude}InboundPorts, {include,exclude}OutboundIPRanges and
{include,exclude}OutboundPorts (inbound default: the app port only, since the proxy forwards
inbound traffic to one port; outbound default: everything). The proxy routes outbound traffic by
HTTP host to mesh services and cannot pass other traffic on to its original destination (Istio's
passthrough): exclude databases and other non-HTTP or outside destinations with
excludeOutboundIPRanges / excludeOutboundPorts, or capture only the service range with
includeOutboundIPRanges.

  -f, --filename <path>   a YAML file (several documents allowed) or - for standard input; repeatable
  -o, --output FILE       write there instead of standard output
${injectOptionsUsage()}
Errors (invalid YAML, a Deployment without spec.template, a bad annotation) name the file and the
document (file#N) and nothing is printed: exit 1.
`;

export interface KubeInjectIo {
  out: Output;
  err: Output;
  /** Standard input, for -f - (default process.stdin). */
  stdin?: AsyncIterable<Buffer | string> | Iterable<Buffer | string>;
}

export async function run(argv: string[], io: KubeInjectIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('kube-inject', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
        ...injectArgOptions,
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (name files with -f)`);
    const files = values.filename ?? [];
    if (files.length === 0) throw new UsageError('no input: name at least one file with -f (- for standard input)');
    if (files.filter((f) => f === '-').length > 1) throw new UsageError('-f - (standard input) can be given once');
    const options = resolveInjectOptions(values);

    const results: YamlInjectResult[] = [];
    for (const file of files) {
      const name = file === '-' ? '<stdin>' : file;
      results.push(injectYaml(await readInput(file, io), name, options));
    }
    const errors = results.flatMap((r) => r.errors);
    if (errors.length > 0) {
      throw new CliError([
        `${errors.length} error${errors.length === 1 ? '' : 's'}, nothing written:`,
        ...errors.map((e) => `${e.file}#${e.index}${e.path ? ` ${e.path}` : ''}: ${e.message}`),
      ]);
    }
    const templates = results.flatMap((r) => r.templates);
    for (const t of templates) for (const w of t.warnings) io.err.write(`wasmesh kube-inject: ${t.file}#${t.index}: ${w}\n`);
    const text = joinSegments(results.flatMap((r) => r.segments));
    if (values.output !== undefined) {
      await writeFile(values.output, text).catch((e: NodeJS.ErrnoException) => {
        throw new CliError([`cannot write ${values.output}: ${e.code ?? e.message}`]);
      });
      const injected = templates.filter((t) => t.injected).length;
      io.err.write(`wasmesh kube-inject: ${injected} of ${templates.length} pod template${templates.length === 1 ? '' : 's'} injected, written to ${values.output}\n`);
    } else {
      io.out.write(text);
    }
    return 0;
  });
}

async function readInput(file: string, io: KubeInjectIo): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of io.stdin ?? process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    if ((await stat(file)).isDirectory()) throw new CliError([`${file} is a directory: name the YAML files with -f`]);
    return await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError([`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)}`]);
  }
}
