// wasmesh token create: a new bearer token for the orchestrator, printed once on stdout (only its
// sha256 is kept, in <data-dir>/tokens.json). A running orchestrator picks it up without a restart.
import { parseArgs } from 'node:util';
import { ROLES, TokenStore, isRole, type TokenBinding } from '../../orchestrator/src/auth/tokens.ts';

export const usage = `usage: wasmesh token create --role admin|viewer|editor|proxy [--namespace NS [--service-account SA]] [--data-dir DIR]

Creates an orchestrator API token and prints it on stdout. It is shown only this once: the
orchestrator keeps its sha256 in <data-dir>/tokens.json.

  --role ROLE               admin (read and write everything), viewer (read everything),
                            editor (read and write one namespace, upload modules),
                            proxy (fetch modules, stream config)
  --namespace NS            editor and proxy tokens (required): the namespace the editor edits or
                            the proxy runs in (an editor cannot be bound to the root namespace,
                            istio-system: what is there applies mesh-wide)
  --service-account SA      proxy tokens only (required): the proxy's service account
  --data-dir DIR            the orchestrator's data dir (default .wasmesh/orchestrator)
`;

export interface Output {
  write(text: string): unknown;
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let role: string;
  let binding: TokenBinding | undefined;
  let dataDir: string;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        role: { type: 'string' },
        namespace: { type: 'string' },
        'service-account': { type: 'string' },
        'data-dir': { type: 'string', default: '.wasmesh/orchestrator' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(usage);
      return 0;
    }
    if (positionals.length > 0) throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (!values.role) throw new Error(`--role is required (${ROLES.join(', ')})`);
    if (!isRole(values.role)) throw new Error(`--role must be one of ${ROLES.join(', ')} (got ${JSON.stringify(values.role)})`);
    role = values.role;
    const ns = values.namespace;
    const sa = values['service-account'];
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
    dataDir = values['data-dir'];
  } catch (e) {
    err.write(`wasmesh token create: ${(e as Error).message}\n\n${usage}`);
    return 2;
  }
  const tokens = TokenStore.open(dataDir);
  let token: string;
  try {
    token = tokens.create(role as (typeof ROLES)[number], binding);
  } catch (e) {
    err.write(`wasmesh token create: ${(e as Error).message}\n`);
    return 2;
  }
  out.write(`${token}\n`);
  const scope = binding ? ` for ${binding.serviceAccount ? `${binding.namespace}/${binding.serviceAccount}` : `namespace ${binding.namespace}`}` : '';
  err.write(`wasmesh token create: ${role} token created${scope}; it is not shown again\n`);
  return 0;
}
