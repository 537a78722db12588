// wasmesh filter deploy <module.wasm> --name N --version V: upload a filter module to the
// orchestrator (POST /modules) and create or update the WasmPlugin that runs it, by digest.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { CliError, Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { clientFrom, connectionOptions, joinTokenArg, connectionUsage, runCommand, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { checkModuleName } from '../../orchestrator/src/store/common.ts';
import type { ModuleRecord, Resource } from '../../orchestrator/src/store/types.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh filter deploy <module.wasm> --name NAME --version VERSION [options]

Uploads the module to the orchestrator (which checks it: wasm, ABI marker, imports, size) and stores
it by sha256, then creates or updates the WasmPlugin --plugin (default NAME) in --namespace so that it
points at the module by digest (url: digest:sha256:<hex>). Proxies it selects fetch the module and
load it without a restart; a proxy that cannot start it refuses the config (see wasmesh proxy-status).
NAME@VERSION is immutable: the same bytes again are fine, other bytes need a new --version.

  --name NAME             module name (lowercase letters, digits, "-", ".")
  --version VERSION       module version (e.g. 1.2.0)
  --plugin NAME           the WasmPlugin to create or update (default: NAME)
  -n, --namespace NS      its namespace (default: default; istio-system: every workload of the mesh)
  --phase PHASE           AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE (where in the chain it runs)
  --priority N            order within the phase (higher first)
  --config JSON|@FILE     the plugin's configuration (pluginConfig), a JSON object
  --plugin-name ID        the root id the module registers its root context under (pluginName;
                          e.g. add_header for the add-header example)
  --selector k=v,k=v      workloads it applies to (default: every workload in the namespace)
  --mode MODE             CLIENT (outbound), SERVER (inbound) or CLIENT_AND_SERVER
  --upload-only           upload the module, leave the WasmPlugin alone

${connectionUsage}
Exit codes: 0 deployed, 1 rejected or failed, 2 usage error.
`;

const PHASES = ['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS'];
const MODES = ['CLIENT', 'SERVER', 'CLIENT_AND_SERVER'];

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('filter deploy', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: joinTokenArg(argv),
      options: {
        ...connectionOptions,
        name: { type: 'string' },
        version: { type: 'string' },
        plugin: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        phase: { type: 'string' },
        priority: { type: 'string' },
        config: { type: 'string' },
        'plugin-name': { type: 'string' },
        selector: { type: 'string' },
        mode: { type: 'string' },
        'upload-only': { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return Exit.Ok;
    }
    const [file, extra] = positionals;
    if (file === undefined) throw new UsageError('missing the module file (<module.wasm>)');
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
    if (values.name === undefined) throw new UsageError('--name is required');
    if (values.version === undefined) throw new UsageError('--version is required');
    try {
      checkModuleName(values.name, values.version);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const phase = values.phase?.toUpperCase();
    if (phase !== undefined && !PHASES.includes(phase)) throw new UsageError(`--phase must be one of ${PHASES.join(', ')}, not "${values.phase}"`);
    const mode = values.mode?.toUpperCase();
    if (mode !== undefined && !MODES.includes(mode)) throw new UsageError(`--mode must be one of ${MODES.join(', ')}, not "${values.mode}"`);
    let priority: number | undefined;
    if (values.priority !== undefined) {
      priority = Number(values.priority);
      if (!Number.isInteger(priority)) throw new UsageError(`--priority must be a whole number, not "${values.priority}"`);
    }
    const pluginConfig = values.config === undefined ? undefined : await readConfig(values.config);
    const selector = values.selector === undefined ? undefined : parseSelector(values.selector);
    const pluginName = values.plugin ?? values.name;
    const namespace = values.namespace ?? 'default';
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(pluginName)) throw new UsageError(`--plugin "${pluginName}" is not a valid resource name (lowercase letters, digits, "-", ".")`);

    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      throw new CliError([`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'build a filter first: wasmesh filter build <dir>']);
    }
    const client = clientFrom(values, io.env);

    // 1. The module.
    let record: ModuleRecord;
    try {
      const res = await client.request<ModuleRecord>('POST', '/modules', { query: { name: values.name, version: values.version }, body: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
      record = res.body;
      io.out.write(`module ${record.name}@${record.version} ${res.status === 201 ? 'uploaded' : 'unchanged (already uploaded)'} (sha256:${record.sha256}, ${record.size} bytes)\n`);
    } catch (e) {
      if (e instanceof CliError && e.status === 409) throw new CliError([...e.lines, `${values.name}@${values.version} was uploaded before with other bytes; versions are immutable: deploy with a new --version`], { status: 409, errors: e.errors });
      if (e instanceof CliError && e.status === 400) throw new CliError([`the orchestrator rejected ${file}:`, ...e.lines], { status: 400, errors: e.errors });
      throw e;
    }
    if (values['upload-only']) return Exit.Ok;

    // 2. The WasmPlugin: keep what is there, point it at the new digest, apply the flags given.
    const path = `/apis/wasmplugins/${encodeURIComponent(namespace)}/${encodeURIComponent(pluginName)}`;
    const current = await client.request<Resource>('GET', path, { accept: [404] });
    const existing = current.status === 404 ? undefined : current.body;
    const rollout = existing?.metadata.annotations?.['wasmesh.io/rollout'];
    if (rollout !== undefined && (JSON.parse(rollout) as { phase?: string }).phase === 'Progressing') {
      throw new CliError([`a canary rollout of ${namespace}/${pluginName} is in progress`, `wait for it (wasmesh filter status ${pluginName} -n ${namespace}) or abort it (wasmesh filter rollback ${pluginName} -n ${namespace}), then deploy`]);
    }
    const spec: Record<string, unknown> = { ...(existing?.spec ?? {}) };
    spec.url = `digest:sha256:${record.sha256}`;
    delete spec.sha256; // the digest in the url is the check; an old pin would contradict it
    if (phase !== undefined) spec.phase = phase;
    if (priority !== undefined) spec.priority = priority;
    if (pluginConfig !== undefined) spec.pluginConfig = pluginConfig;
    if (values['plugin-name'] !== undefined) spec.pluginName = values['plugin-name'];
    if (selector !== undefined) spec.selector = { matchLabels: selector };
    if (mode !== undefined) spec.match = [{ mode }];
    const label = `wasmplugin ${namespace}/${pluginName}`;
    if (existing && JSON.stringify(sortKeys(existing.spec)) === JSON.stringify(sortKeys(spec))) {
      io.out.write(`${label} unchanged (url digest:sha256:${record.sha256})\n`);
      return Exit.Ok;
    }
    const doc = {
      apiVersion: existing?.apiVersion ?? 'extensions.istio.io/v1alpha1',
      kind: 'WasmPlugin',
      metadata: {
        name: pluginName,
        namespace,
        ...(existing?.metadata.labels ? { labels: existing.metadata.labels } : {}),
        // The module name (for history and rollbacks), and why the module changed (the deploy history's cause).
        annotations: { ...(existing?.metadata.annotations ?? {}), 'wasmesh.io/module': values.name, 'wasmesh.io/change-cause': `filter deploy ${values.name}@${values.version}` },
        // Optimistic concurrency: if someone changed the plugin since we read it, the PUT is a 409.
        ...(existing ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      spec,
    };
    try {
      const res = await client.request<Resource>('PUT', path, { body: doc });
      io.out.write(`${label} ${res.status === 201 ? 'created' : 'configured'} (url digest:sha256:${record.sha256})\n`);
    } catch (e) {
      if (e instanceof CliError && e.status === 409) throw new CliError([...e.lines, `${label} changed while deploying; run the command again`], { status: 409, errors: e.errors });
      if (e instanceof CliError && e.status === 400) throw new CliError([`the module is uploaded, but ${label} was rejected:`, ...e.lines], { status: 400, errors: e.errors });
      throw e;
    }
    return Exit.Ok;
  });
}

async function readConfig(value: string): Promise<Record<string, unknown>> {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = await readFile(value.slice(1), 'utf8');
    } catch (e) {
      throw new UsageError(`--config ${value}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config must be a JSON object or @file.json: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--config must be a JSON object');
  return parsed as Record<string, unknown>;
}

function parseSelector(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of value.split(',').filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new UsageError(`--selector: "${pair}" is not key=value`);
    labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return labels;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
  );
}
