// The injection flags kube-inject and inject-webhook share: parseArgs options, usage text, checks.

import { readFileSync } from 'node:fs';
import { UsageError } from '../cli-client/client.ts';
import { DEFAULT_ORCHESTRATOR, DEFAULT_TOKEN_SECRET, type InjectOptions } from './sidecar.ts';
import { installPath } from '../../../schemas/repo-files.ts';

export const injectArgOptions = {
  orchestrator: { type: 'string' },
  image: { type: 'string' },
  'token-secret': { type: 'string' },
} as const;

/** The image both injected containers run by default: wasmesh/proxy:<this package's version>. */
export function defaultImage(): string {
  const pkg = JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as { version: string };
  return `wasmesh/proxy:${pkg.version}`;
}

export function injectOptionsUsage(): string {
  return `
Injection:
  --orchestrator HOST:PORT  the orchestrator's discovery service, as pods reach it
                            (default ${DEFAULT_ORCHESTRATOR})
  --image IMAGE             image of the wasmesh-init and wasmesh-proxy containers: wasmesh on the
                            PATH, sh and iptables for the init container (default ${defaultImage()})
  --token-secret NAME       Secret in the pod's namespace whose key "token" holds a proxy token,
                            mounted at /var/run/wasmesh/token (default ${DEFAULT_TOKEN_SECRET}); make it with
                              kubectl -n NS create secret generic ${DEFAULT_TOKEN_SECRET} \\
                                --from-literal=token="$(wasmesh token create --role proxy --namespace NS)"
`;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Checks the flags (UsageError on a bad one) and fills in the defaults. */
export function resolveInjectOptions(values: { orchestrator?: string; image?: string; 'token-secret'?: string }): InjectOptions {
  const orchestrator = values.orchestrator ?? DEFAULT_ORCHESTRATOR;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(orchestrator);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new UsageError(`--orchestrator must be HOST:PORT, like ${DEFAULT_ORCHESTRATOR} (got "${orchestrator}")`);
  const image = values.image ?? defaultImage();
  if (image.trim() === '' || /\s/.test(image)) throw new UsageError(`--image must be an image reference without spaces (got "${image}")`);
  const tokenSecret = values['token-secret'] ?? DEFAULT_TOKEN_SECRET;
  if (!DNS_SUBDOMAIN.test(tokenSecret)) throw new UsageError(`--token-secret must be a Secret name (lowercase letters, digits, '-', '.'), got "${tokenSecret}"`);
  return { orchestrator, image, tokenSecret };
}
