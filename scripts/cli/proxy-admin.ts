// The admin flags of `wasmesh proxy` (and of `wasmesh run`, which passes them on): where the admin
// endpoint binds, who may write to it, and the read-only status port. Kept apart from proxy.ts so
// the rules (proxy-host/src/admin/admin-access.ts) have one front door on the command line.
import { isIP } from 'node:net';
import { readAdminTokenFile, type AdminWriteAccess } from '../../proxy-host/src/admin/admin-access.ts';

export const adminUsage = `  --admin-host ADDR         address admin binds (default 127.0.0.1, whatever --host says; anything
                            else logs a warning: admin shows the whole config)
  --admin-token-file FILE   writes to admin (module uploads, POST /logging) need "Authorization:
                            Bearer <token>" with the token in FILE; FILE must be mode 0600 or
                            stricter, the token at least 16 characters
  --admin-writes            writes to admin from loopback need no token (wasmesh filter dev);
                            without this or --admin-token-file, admin refuses every write
  --status-port PORT        read-only /ready, /healthz and /stats/prometheus on --host (for probes
                            and scrapers from outside; kube-inject uses 15021); default: none
`;

/** parseArgs options for the flags above. */
export const adminArgs = {
  'admin-host': { type: 'string' },
  'admin-token-file': { type: 'string' },
  'admin-writes': { type: 'boolean' },
  'status-port': { type: 'string' },
} as const;

export interface AdminFlagValues {
  'admin-host'?: string;
  'admin-token-file'?: string;
  'admin-writes'?: boolean;
  'status-port'?: string;
}

/** The ProxyOptions the flags give; throws with the flag's name on a bad value or an unsafe token file. */
export function adminOptions(values: AdminFlagValues, port: (value: string, name: string) => number): { adminHost?: string; adminAccess: AdminWriteAccess; statusPort?: number } {
  const host = values['admin-host'];
  if (host !== undefined && host !== 'localhost' && isIP(host) === 0) throw new Error(`--admin-host must be an IP address or localhost, got "${host}"`);
  const access: AdminWriteAccess = {
    ...(values['admin-token-file'] !== undefined ? { token: readAdminTokenFile(values['admin-token-file']) } : {}),
    ...(values['admin-writes'] ? { loopbackWrites: true } : {}),
  };
  return {
    ...(host !== undefined ? { adminHost: host } : {}),
    adminAccess: access,
    ...(values['status-port'] !== undefined ? { statusPort: port(values['status-port'], 'status-port') } : {}),
  };
}
