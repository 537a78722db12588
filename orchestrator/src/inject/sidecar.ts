// What injection adds to a pod: the wasmesh-init container (iptables redirection, like istio-init),
// the wasmesh-proxy sidecar (`wasmesh proxy` in managed mode) and their volumes. Pure functions of
// a SidecarParams, so the same pod always gets the same containers.
//
// The proxy's token: a Secret in the pod's namespace (default name wasmesh-proxy-token, key
// `token`) holding a proxy token, mounted at /var/run/wasmesh/token. Make one per namespace with
//   kubectl -n NS create secret generic wasmesh-proxy-token \
//     --from-literal=token="$(wasmesh token create --role proxy --namespace NS)"
// (a token bound to a service account as well only works for pods running as that account).

import { buildIptablesRules, renderIptablesScript, DEFAULT_ADMIN_PORT, DEFAULT_STATUS_PORT, DEFAULT_INBOUND_PORT, DEFAULT_OUTBOUND_PORT, PROXY_GID, PROXY_UID, type TrafficRedirect } from './iptables.ts';

export const PROXY_CONTAINER = 'wasmesh-proxy';
export const INIT_CONTAINER = 'wasmesh-init';
export const TOKEN_VOLUME = 'wasmesh-token';
export const DATA_VOLUME = 'wasmesh-data';
export const TOKEN_DIR = '/var/run/wasmesh';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
export const TOKEN_SECRET_KEY = 'token';
export const DATA_DIR = '/var/lib/wasmesh';

export const DEFAULT_ORCHESTRATOR = 'wasmesh-orchestrator.wasmesh-system.svc:15010';
export const DEFAULT_TOKEN_SECRET = 'wasmesh-proxy-token';

/** Fixed for every injection (from the command line or the webhook's flags). */
export interface InjectOptions {
  /** The orchestrator's discovery address, HOST:PORT. */
  orchestrator: string;
  /** Image of both containers: it must have `wasmesh` on its PATH, and `sh` and `iptables` for the init container. */
  image: string;
  /** Name of the Secret (in the pod's namespace) whose `token` key holds the proxy token. */
  tokenSecret: string;
}

/** What one pod's containers are built from (worked out by mutate.ts from the pod and its annotations). */
export interface SidecarParams {
  workload: string;
  /** The namespace, or undefined when unknown (kube-inject of a document without one): the pod's own, through the downward API. */
  namespace: string | undefined;
  serviceAccount: string;
  /** Passed as --labels, in this order. */
  labels: ReadonlyArray<readonly [string, string]>;
  /** The app's port (the inbound listener's target); undefined: the pod serves nothing inbound. */
  appPort: number | undefined;
  /** Service port name the endpoint is registered under (a WorkloadEntry port name). */
  appPortName: string;
  /** The app's TCP ports and their names: inbound TCP listeners (reached through capture), registered by name. */
  tcpPorts: ReadonlyArray<{ port: number; name: string }>;
  redirect: TrafficRedirect;
}

export const SIDECAR_PORTS = { outbound: DEFAULT_OUTBOUND_PORT, inbound: DEFAULT_INBOUND_PORT, admin: DEFAULT_ADMIN_PORT, status: DEFAULT_STATUS_PORT } as const;

/**
 * The `wasmesh proxy` arguments (after `wasmesh`). Only flags scripts/cli/proxy.ts defines.
 * The listeners bind every address of the pod (--host 0.0.0.0: traffic arrives on the pod IP);
 * admin stays on the proxy's default, 127.0.0.1, as Envoy's 15000 does in Istio: it shows the whole
 * config. The kubelet probes the read-only status port instead, and admin takes no writes.
 */
export function proxyArgs(opts: InjectOptions, p: SidecarParams): string[] {
  const args = [
    'proxy',
    '--orchestrator', opts.orchestrator,
    '--token-file', TOKEN_FILE,
    '--data-dir', DATA_DIR,
    '--workload', p.workload,
    // $(VAR) is expanded by the kubelet from the container's env.
    '--namespace', p.namespace ?? '$(POD_NAMESPACE)',
    '--service-account', p.serviceAccount,
    '--labels', p.labels.map(([k, v]) => `${k}=${v}`).join(','),
    '--host', '0.0.0.0',
    // The init container's iptables rules redirect the app's outbound TCP to the outbound listener:
    // it reads each connection's original destination to tell TCP service ports from HTTP.
    '--iptables-capture',
    '--outbound-port', String(p.redirect.outboundPort),
    '--inbound-port', String(p.redirect.inboundPort),
    '--admin-port', String(SIDECAR_PORTS.admin),
    '--status-port', String(SIDECAR_PORTS.status),
  ];
  // Each TCP port gets the sidecar's inbound TCP path (mTLS, metadata exchange, authorization, TCP
  // metrics): captured connections to it are handed over by original destination port; the listener
  // of its own (LISTEN 0: a free port) serves anyone who dials the proxy directly the same way.
  for (const t of p.tcpPorts) args.push('--tcp-inbound', `0=${t.port}`);
  const register: string[] = [];
  // Registered as this workload's endpoint: other proxies reach HTTP on the inbound port, and TCP on
  // the app's own port, which capture takes to the sidecar.
  if (p.appPort !== undefined) register.push(`${p.appPortName}=${p.redirect.inboundPort}`);
  for (const t of p.tcpPorts) register.push(`${t.name}=${t.port}`);
  if (p.appPort !== undefined) args.push('--app-port', String(p.appPort));
  if (register.length > 0) {
    args.push('--register-address', '$(INSTANCE_IP)');
    for (const r of register) args.push('--register-port', r);
  }
  return args;
}

export function proxyContainer(opts: InjectOptions, p: SidecarParams): Record<string, unknown> {
  const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
  return {
    name: PROXY_CONTAINER,
    image: opts.image,
    imagePullPolicy: 'IfNotPresent',
    command: ['wasmesh'],
    args: proxyArgs(opts, p),
    env: [
      fieldEnv('POD_NAME', 'metadata.name'),
      fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('INSTANCE_IP', 'status.podIP'),
      fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    ],
    ports: [
      { name: 'mesh-outbound', containerPort: p.redirect.outboundPort, protocol: 'TCP' },
      { name: 'mesh-inbound', containerPort: p.redirect.inboundPort, protocol: 'TCP' },
      { name: 'mesh-status', containerPort: SIDECAR_PORTS.status, protocol: 'TCP' },
    ],
    readinessProbe: {
      httpGet: { path: '/ready', port: SIDECAR_PORTS.status },
      initialDelaySeconds: 1,
      periodSeconds: 2,
      timeoutSeconds: 3,
      failureThreshold: 30,
    },
    resources: {
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { cpu: '2', memory: '1Gi' },
    },
    securityContext: {
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_GID,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: DATA_VOLUME, mountPath: DATA_DIR },
    ],
  };
}

/** The `sh -c` script of the init container. */
export function initScript(redirect: TrafficRedirect): string {
  return renderIptablesScript(buildIptablesRules(redirect));
}

export function initContainer(opts: InjectOptions, redirect: TrafficRedirect): Record<string, unknown> {
  return {
    name: INIT_CONTAINER,
    image: opts.image,
    imagePullPolicy: 'IfNotPresent',
    command: ['sh', '-c', initScript(redirect)],
    resources: {
      requests: { cpu: '10m', memory: '16Mi' },
      limits: { cpu: '100m', memory: '64Mi' },
    },
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
  };
}

export function sidecarVolumes(opts: InjectOptions): Record<string, unknown>[] {
  return [
    { name: TOKEN_VOLUME, secret: { secretName: opts.tokenSecret, items: [{ key: TOKEN_SECRET_KEY, path: 'token' }] } },
    { name: DATA_VOLUME, emptyDir: {} },
  ];
}
