// wasmesh token create: a new bearer token for the orchestrator, printed once on stdout (only its
// sha256 is kept). Two ways, never a token the orchestrator in use would reject:
//   - through a running orchestrator's API (POST /tokens, an admin token) when --server (or
//     $WASMESH_SERVER, unless --data-dir is given) names it: the token goes into its own store;
//   - otherwise into the token file of an orchestrator data dir (--data-dir), which must be one an
//     orchestrator has used (it has tokens.json); a running orchestrator picks the token up at once.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROLES, TOKENS_FILE, TokenStore, checkBinding, isRole, type Role, type TokenBinding } from '../../orchestrator/src/auth/tokens.ts';
import { ApiClient, CliError, DEFAULT_DATA_DIR } from '../../orchestrator/src/cli-client/client.ts';
import { joinTokenArg } from '../../orchestrator/src/cli-client/common.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh token create --role admin|viewer|editor|proxy [--namespace NS [--service-account SA]]
                           [--server URL [--token TOKEN] | --data-dir DIR]

Creates an orchestrator API token and prints it on stdout. It is shown only this once: the
orchestrator keeps its sha256.

  --role ROLE               admin (read and write everything), viewer (read everything),
                            editor (read and write one namespace, upload modules),
                            proxy (fetch modules, stream config)
  --namespace NS            editor and proxy tokens (required): the namespace the editor edits or
                            the proxy runs in (an editor cannot be bound to the root namespace,
                            istio-system: what is there applies mesh-wide)
  --service-account SA      proxy tokens only (required): the proxy's service account

Where the token is created:
  --server URL              through this running orchestrator's REST API (default: $WASMESH_SERVER
                            unless --data-dir is given); needs an admin token: --token TOKEN,
                            $WASMESH_TOKEN, or <--data-dir>/admin-token
  --token TOKEN             the admin token for --server
  --data-dir DIR            without a server: write the token into the token file of this
                            orchestrator data dir (default ${DEFAULT_DATA_DIR}), which an
                            orchestrator must have used already; with --server: where its
                            admin-token file is
`;

export interface Output {
  write(text: string): unknown;
}

interface Request {
  role: Role;
  binding: TokenBinding | undefined;
  server: string | undefined;
  token: string | undefined;
  dataDir: string | undefined;
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let req: Request;
  try {
    const parsed = parseRequest(argv, env);
    if (parsed === 'help') {
      out.write(helpFor(usage, out));
      return 0;
    }
    req = parsed;
  } catch (e) {
    err.write(`wasmesh token create: ${(e as Error).message}\n\n${helpFor(usage, err)}`);
    return 2;
  }
  let token: string;
  let where: string;
  try {
    ({ token, where } = req.server !== undefined ? await viaApi(req, env) : viaDataDir(req));
  } catch (e) {
    const lines = e instanceof CliError ? e.lines : [(e as Error).message];
    err.write(lines.map((l, i) => (i === 0 ? `wasmesh token create: ${l}` : `  ${l}`)).join('\n') + '\n');
    return 1;
  }
  out.write(`${token}\n`);
  const scope = req.binding ? ` for ${req.binding.serviceAccount ? `${req.binding.namespace}/${req.binding.serviceAccount}` : `namespace ${req.binding.namespace}`}` : '';
  err.write(`wasmesh token create: ${req.role} token created${scope} ${where}; it is not shown again\n`);
  return 0;
}

function parseRequest(argv: string[], env: NodeJS.ProcessEnv): Request | 'help' {
  const { values, positionals } = parseArgs({
    args: joinTokenArg(argv),
    options: {
      role: { type: 'string' },
      namespace: { type: 'string' },
      'service-account': { type: 'string' },
      server: { type: 'string' },
      token: { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (!values.role) throw new Error(`--role is required (${ROLES.join(', ')})`);
  if (!isRole(values.role)) throw new Error(`--role must be one of ${ROLES.join(', ')} (got ${JSON.stringify(values.role)})`);
  const role = values.role;
  const ns = values.namespace;
  const sa = values['service-account'];
  let binding: TokenBinding | undefined;
  if (role === 'proxy') {
    if (!ns || !sa) throw new Error('a proxy token needs --namespace and --service-account');
    binding = { namespace: ns, serviceAccount: sa };
  } else if (role === 'editor') {
    if (!ns) throw new Error('an editor token needs --namespace: the one namespace it edits');
    if (sa) throw new Error('--service-account is for proxy tokens only');
    binding = { namespace: ns };
  } else if (ns || sa) {
    throw new Error('--namespace is for editor and proxy tokens, --service-account for proxy tokens only');
  }
  checkBinding(role, binding);
  // An explicit --data-dir names the orchestrator as surely as --server does: $WASMESH_SERVER (set by
  // the demo's guide, say) does not override it.
  const fromEnv = values['data-dir'] === undefined ? env.WASMESH_SERVER?.trim() || undefined : undefined;
  const server = values.server ?? fromEnv;
  if (server === undefined && values.token !== undefined) throw new Error('--token is the admin token for --server: give --server URL (or set WASMESH_SERVER) too');
  return { role, binding, server, token: values.token, dataDir: values['data-dir'] };
}

/** Through the running orchestrator's API: the token is valid there at once. */
async function viaApi(req: Request, env: NodeJS.ProcessEnv): Promise<{ token: string; where: string }> {
  const client = new ApiClient({ server: req.server!, env, ...(req.token !== undefined ? { token: req.token } : {}), ...(req.dataDir !== undefined ? { dataDir: req.dataDir } : {}) });
  const body = { role: req.role, ...(req.binding ? { namespace: req.binding.namespace } : {}), ...(req.binding?.serviceAccount ? { serviceAccount: req.binding.serviceAccount } : {}) };
  let answer: { token?: unknown };
  try {
    answer = (await client.request<{ token?: unknown }>('POST', '/tokens', { body })).body;
  } catch (e) {
    if (e instanceof CliError && e.status === 404) {
      throw new CliError([...e.lines, `the orchestrator at ${client.server} cannot create tokens through its API (older than this CLI): run wasmesh token create --data-dir <its data dir> on its host`], { status: 404 });
    }
    throw e;
  }
  if (typeof answer.token !== 'string') throw new CliError([`the orchestrator at ${client.server} answered POST /tokens without a token`]);
  return { token: answer.token, where: `by the orchestrator at ${client.server}` };
}

/** Into an orchestrator data dir's token file: only one an orchestrator has used. */
function viaDataDir(req: Request): { token: string; where: string } {
  const dataDir = req.dataDir ?? DEFAULT_DATA_DIR;
  if (!existsSync(join(dataDir, TOKENS_FILE))) {
    throw new CliError([
      `no orchestrator has used ${dataDir} (there is no ${join(dataDir, TOKENS_FILE)}), so no orchestrator would accept a token written there`,
      'to create it through a running orchestrator: --server URL (or set WASMESH_SERVER) with an admin token (--token, $WASMESH_TOKEN)',
      "or name the orchestrator's data dir: --data-dir DIR",
    ]);
  }
  const token = TokenStore.open(dataDir).create(req.role, req.binding);
  return { token, where: `in ${join(dataDir, TOKENS_FILE)}` };
}
