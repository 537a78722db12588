// wasmesh get KIND [NAME]: resources from the orchestrator as a table, YAML or JSON.
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { CliError, Exit, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { age, clientFrom, connectionOptions, joinTokenArg, connectionUsage, parseKind, runCommand, table, type Io } from '../../orchestrator/src/cli-client/common.ts';
import { PLURALS } from '../../orchestrator/src/http/kinds.ts';
import type { Resource, ResourceKind } from '../../orchestrator/src/store/types.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh get KIND [NAME] [-n NS | -A] [-o table|yaml|json] [options]

Shows resources stored in the orchestrator. KIND is a kind (VirtualService), its plural
(virtualservices) or short name (se, we, vs, dr, wp, pa, ap, rlp).

  -n, --namespace NS      namespace (default: default)
  -A, --all-namespaces    every namespace (a list only)
  -o, --output FORMAT     table (default), yaml or json; yaml and json can be applied again

${connectionUsage}
Exit codes: 0 found (an empty list too), 1 not found or failed, 2 usage error.
`;

type Columns = { header: string[]; cells: (r: Resource) => string[] };

const list = (v: unknown): string => (Array.isArray(v) && v.length > 0 ? v.map(String).join(',') : '-');
const str = (v: unknown): string => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : '-');

/** The columns between NAME and AGE, per kind. */
const KIND_COLUMNS: Readonly<Record<ResourceKind, Columns>> = {
  ServiceEntry: {
    header: ['HOSTS', 'LOCATION', 'RESOLUTION'],
    cells: (r) => [list(r.spec.hosts), str(r.spec.location), str(r.spec.resolution)],
  },
  WorkloadEntry: {
    header: ['ADDRESS', 'LABELS'],
    cells: (r) => [str(r.spec.address), labels(r.spec.labels)],
  },
  VirtualService: {
    header: ['HOSTS', 'ROUTES'],
    cells: (r) => [list(r.spec.hosts), String(Array.isArray(r.spec.http) ? r.spec.http.length : 0)],
  },
  DestinationRule: {
    header: ['HOST', 'SUBSETS'],
    cells: (r) => [str(r.spec.host), list(Array.isArray(r.spec.subsets) ? r.spec.subsets.map((s) => (s as { name?: unknown }).name) : [])],
  },
  WasmPlugin: {
    header: ['MODULE', 'PHASE', 'PRIORITY'],
    cells: (r) => [moduleOf(r.spec.url), str(r.spec.phase), str(r.spec.priority)],
  },
  PeerAuthentication: {
    header: ['MODE'],
    cells: (r) => [str((r.spec.mtls as { mode?: unknown } | undefined)?.mode)],
  },
  AuthorizationPolicy: {
    header: ['ACTION', 'RULES'],
    cells: (r) => [str(r.spec.action ?? 'ALLOW'), String(Array.isArray(r.spec.rules) ? r.spec.rules.length : 0)],
  },
  Telemetry: {
    header: ['TRACING', 'ACCESS LOGGING', 'METRICS'],
    cells: (r) => ['tracing', 'accessLogging', 'metrics'].map((f) => String(Array.isArray(r.spec[f]) ? r.spec[f].length : 0)),
  },
  MeshConfig: {
    header: ['PROVIDERS'],
    cells: (r) => [list(Array.isArray(r.spec.extensionProviders) ? r.spec.extensionProviders.map((p) => (p as { name?: unknown }).name) : [])],
  },
  RequestAuthentication: {
    header: ['ISSUERS'],
    cells: (r) => [list(Array.isArray(r.spec.jwtRules) ? r.spec.jwtRules.map((j) => (j as { issuer?: unknown }).issuer) : [])],
  },
  TLSSecret: {
    // What the API returns: the redacted form (status), never the PEM.
    header: ['SUBJECT', 'NOT AFTER', 'CACERT'],
    cells: (r) => {
      const status = (r as Resource & { status?: { certificate?: { subject?: unknown; notAfter?: unknown }; fingerprints?: { cacert?: unknown } } }).status;
      return [str(status?.certificate?.subject), str(status?.certificate?.notAfter), status?.fingerprints?.cacert ? 'yes' : '-'];
    },
  },
  RateLimitPolicy: {
    header: ['LOCAL', 'GLOBAL', 'SERVICE'],
    cells: (r) => {
      const g = r.spec.global as { service?: { host?: unknown; port?: unknown }; limits?: unknown[] } | undefined;
      return [String(Array.isArray(r.spec.local) ? r.spec.local.length : 0), String(Array.isArray(g?.limits) ? g.limits.length : 0), g?.service ? `${str(g.service.host)}:${str(g.service.port)}` : '-'];
    },
  },
  Gateway: {
    header: ['SELECTOR', 'PORTS'],
    cells: (r) => [labels(r.spec.selector), list(Array.isArray(r.spec.servers) ? r.spec.servers.map((s) => { const p = (s as { port?: { number?: unknown; protocol?: unknown } }).port; return `${String(p?.number)}/${String(p?.protocol)}`; }) : [])],
  },
};

function labels(v: unknown): string {
  if (typeof v !== 'object' || v === null) return '-';
  const pairs = Object.entries(v as Record<string, unknown>).map(([k, l]) => `${k}=${String(l)}`);
  return pairs.length > 0 ? pairs.join(',') : '-';
}

function moduleOf(url: unknown): string {
  if (typeof url !== 'string') return '-';
  const m = /^(?:digest:)?sha256:([0-9a-fA-F]{64})$/.exec(url);
  return m ? `sha256:${m[1]!.slice(0, 12)}` : url;
}

export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('get', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: joinTokenArg(argv),
      options: {
        ...connectionOptions,
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A' },
        output: { type: 'string', short: 'o', default: 'table' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return Exit.Ok;
    }
    const [kindArg, name, extra] = positionals;
    if (kindArg === undefined) throw new UsageError('missing KIND (e.g. wasmesh get virtualservices)');
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
    const output = values.output;
    if (output !== 'table' && output !== 'yaml' && output !== 'json' && output !== 'wide') throw new UsageError(`-o must be table, yaml or json, not "${output}"`);
    if (values['all-namespaces'] && values.namespace !== undefined) throw new UsageError('give -n NS or -A, not both');
    if (values['all-namespaces'] && name !== undefined) throw new UsageError('-A lists every namespace; to get one resource by name, give -n NS');
    const kind = parseKind(kindArg);
    const namespace = values.namespace ?? 'default';
    const client = clientFrom(values, io.env);

    let items: Resource[];
    if (name !== undefined) {
      const res = await client.request<Resource>('GET', `/apis/${PLURALS[kind]}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, { accept: [404] });
      if (res.status === 404) throw new CliError([`${kind} ${namespace}/${name} not found`, `list what there is: wasmesh get ${PLURALS[kind]} ${values.namespace === undefined ? '-A' : `-n ${namespace}`}`]);
      if (output === 'json') {
        io.out.write(`${JSON.stringify(res.body, null, 2)}\n`);
        return Exit.Ok;
      }
      if (output === 'yaml') {
        io.out.write(stringify(res.body));
        return Exit.Ok;
      }
      items = [res.body];
    } else {
      const res = await client.request<{ apiVersion: string; kind: 'List'; metadata: unknown; items: Resource[] }>('GET', `/apis/${PLURALS[kind]}`, {
        query: { namespace: values['all-namespaces'] ? undefined : namespace },
      });
      if (output === 'json') {
        io.out.write(`${JSON.stringify(res.body, null, 2)}\n`);
        return Exit.Ok;
      }
      if (output === 'yaml') {
        io.out.write(stringify(res.body));
        return Exit.Ok;
      }
      items = res.body.items;
      if (items.length === 0) {
        io.err.write(values['all-namespaces'] ? `No ${PLURALS[kind]} found.\n` : `No ${PLURALS[kind]} found in namespace ${namespace}.\n`);
        return Exit.Ok;
      }
    }
    const columns = KIND_COLUMNS[kind];
    const now = Date.now();
    const rows = items.map((r) => [r.metadata.namespace, r.metadata.name, ...columns.cells(r), age(r.metadata.creationTimestamp, now)]);
    io.out.write(table(['NAMESPACE', 'NAME', ...columns.header, 'AGE'], rows));
    return Exit.Ok;
  });
}
