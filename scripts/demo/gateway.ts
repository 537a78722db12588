// The demo's ingress gateway: a `wasmesh gateway` process managed by the demo's orchestrator, exposing
// productpage at http://127.0.0.1:<port>/productpage (Istio's bookinfo-gateway and bookinfo
// VirtualService, with the port the demo picked), and over HTTPS at https://localhost:<port>/productpage
// with a certificate of a throwaway CA made at start (credentialName: a TLSSecret).
import { spawn, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import { installPath } from '../../schemas/repo-files.ts';
import { PROXY_NODE_FLAGS } from '../cli/proxy-node-flags.ts';

const WASMESH = installPath('scripts', 'wasmesh.mjs');

/** The demo's HTTPS server: its port and the certificate the demo made (a throwaway CA's). */
export interface DemoGatewayTls {
  port: number;
  certPem: string;
  keyPem: string;
}

/** The TLSSecret the HTTPS server names (credentialName), in the gateway's namespace. */
export const DEMO_CREDENTIAL = 'bookinfo-credential';

/** Istio's Bookinfo gateway documents, on `port` (and HTTPS on `tls.port`, with the demo certificate as a TLSSecret). */
export function gatewayDocuments(namespace: string, port: number, tls?: DemoGatewayTls): object[] {
  const servers: object[] = [{ port: { number: port, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }];
  if (tls) servers.push({ port: { number: tls.port, name: 'https', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: DEMO_CREDENTIAL } });
  return [
    ...(tls ? [{ apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name: DEMO_CREDENTIAL, namespace }, spec: { cert: tls.certPem, key: tls.keyPem } }] : []),
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'bookinfo-gateway', namespace },
      spec: { selector: { istio: 'ingressgateway' }, servers },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'bookinfo', namespace },
      spec: {
        hosts: ['*'],
        gateways: ['bookinfo-gateway'],
        http: [
          {
            match: [{ uri: { exact: '/productpage' } }, { uri: { prefix: '/static' } }, { uri: { exact: '/login' } }, { uri: { exact: '/logout' } }, { uri: { prefix: '/api/v1/products' } }],
            route: [{ destination: { host: 'productpage', port: { number: 9080 } } }],
          },
        ],
      },
    },
  ];
}

export interface DemoGateway {
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the gateway proxy and waits until `url` answers 200 (or throws after `timeoutMs`). */
export async function startDemoGateway(opts: {
  orchestrator: string;
  tokenFile: string;
  dataDir: string;
  namespace: string;
  adminPort: number;
  url: string;
  out: { write(text: string): unknown };
  timeoutMs?: number;
}): Promise<DemoGateway> {
  const args = [
    ...PROXY_NODE_FLAGS, WASMESH, 'gateway',
    '--orchestrator', opts.orchestrator,
    '--token-file', opts.tokenFile,
    '--data-dir', opts.dataDir,
    '--namespace', opts.namespace,
    '--admin-port', String(opts.adminPort),
    '--access-log', 'off',
    '--drain-timeout', '1000',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => opts.out.write(d.toString()));
  child.stderr?.on('data', (d: Buffer) => opts.out.write(d.toString()));
  const gateway: DemoGateway = {
    process: child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the gateway exited (${child.exitCode ?? child.signalCode}) before ${opts.url} answered`);
    try {
      const res = await fetch(opts.url, { signal: AbortSignal.timeout(2000) });
      await res.text();
      if (res.status === 200) return gateway;
      last = `status ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await gateway.stop();
  throw new Error(`${opts.url} through the ingress gateway did not answer 200 in time (${last})`);
}

/** Waits until `url` (https) answers 200 with `caPem` trusted (or throws after `timeoutMs`). */
export async function waitForHttps(url: string, caPem: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.get(url, { ca: caPem, agent: false, timeout: 2000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      });
      if (status === 200) return;
      last = `status ${status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} through the ingress gateway did not answer 200 in time (${last})`);
}
