// wasmesh proxy: one sidecar. Standalone: --config mesh.yaml (Istio-style documents, watched).
// Managed: --orchestrator host:port (config pushed over the discovery stream).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { isLogLevel, log, logError, logInfo, setLogLevel } from '../../proxy-host/src/log.ts';
import { Proxy, type ProxyOptions } from '../../proxy-host/src/proxy.ts';
import { TLS_MODE_LABEL } from '../../mesh/src/proxy-config.ts';
import { heartbeatInterval, runPrimary, serveWorkerQueries } from '../../proxy-host/src/workers.ts';
import { DEFAULT_WATCHDOG, type WatchdogOptions } from '../../proxy-host/src/watchdog/event-loop-watchdog.ts';
import { adminOptions, adminArgs, adminUsage } from './proxy-admin.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';
import { gatewayWorkload, parseRole } from './gateway-role.ts';

export const usage = `usage: wasmesh proxy --config <mesh.yaml|dir> --workload NAME [options]
       wasmesh proxy --orchestrator HOST:PORT --workload NAME [--token-file FILE] [options]

Runs one sidecar proxy. Its config is the Istio-style documents in --config (ServiceEntry,
WorkloadEntry, VirtualService, DestinationRule, WasmPlugin, ...), validated and translated for this
workload; the file is watched: a valid change applies without a restart, an invalid one is rejected
with the reason and the last good config stays.

  --role sidecar|gateway    sidecar (default), or a gateway proxy: the listeners of the Gateways
                            selecting its labels instead of the sidecar listeners (also \`wasmesh
                            gateway\`; default workload istio-ingressgateway, labels
                            app=istio-ingressgateway,istio=ingressgateway)
  --workload NAME           workload name (default: "app")
  --namespace NS            namespace (default: "default")
  --labels k=v,k=v          workload labels (default: app=<workload>); select WasmPlugins and subsets
  --service-account SA      (default: the workload name)
  --outbound-port PORT      outbound listener (default 15001)
  --inbound-port PORT       inbound listener (default 15006)
  --app-port PORT           the local app the inbound listener forwards to (default 8080)
  --admin-port PORT         admin endpoint: /stats/prometheus /config_dump /clusters /ready (default 15000)
  --host ADDR               address the listeners bind (default 127.0.0.1); admin keeps --admin-host
  --tcp-outbound PORT[=LOCAL]  an outbound TCP listener for service port PORT (TCP, TLS, HTTPS and
                            opaque ports: VirtualService tcp and tls routes), on loopback at LOCAL
                            (default: PORT itself; 0: any free port), whatever --host is; the app
                            connects to it instead of the service; repeatable
  --tcp-inbound LISTEN=APP  an inbound TCP listener on LISTEN forwarding to the app's TCP port APP,
                            under the PeerAuthentication of APP (mTLS between sidecars); register
                            LISTEN as the endpoint port of the service's TCP port; repeatable;
                            with --iptables-capture, connections captured to APP take that path too
  --iptables-capture        the outbound listener receives the app's connections redirected by
                            iptables (an injected pod): each one's original destination port picks
                            the TCP proxy (a TCP, TLS, HTTPS or opaque service port) or HTTP; needs
                            the native addon \`npm run build\` compiles (Linux, g++); a port no
                            service has goes to its original destination (PassthroughCluster)
                            unless the MeshConfig's outboundTrafficPolicy is REGISTRY_ONLY
${adminUsage}  --access-log TARGET       stdout (default), off, or a file path
  --log-level LEVEL         trace, debug, info (default), warn, error
  --drain-timeout MS        on SIGTERM, how long in-flight requests may take (default 5000)
  --header-read-timeout MS  time from accept to a request's headers (TLS: to the end of the
                            handshake, then again to the headers); past it the connection is closed,
                            a started head gets 408 (default 60000)
  --idle-timeout MS         close idle downstream keep-alive connections after this (default 5000)
  --max-request-headers-kb N  largest request header block accepted, else 431 (default 16); also
                            the most a filter may write into a request's headers, else 500
  --max-response-headers-kb N largest response header block accepted from the app or an upstream,
                            else 502, and the most a filter may write into one, else 500 (default 16)
  --trust-domain DOMAIN     SPIFFE trust domain of expected peer identities (default cluster.local)
  --cert-dir DIR            standalone: static workload identity from DIR/key.pem, cert-chain.pem and
                            root-cert.pem (watched); enables inbound PeerAuthentication and outbound
                            auto mTLS. Without it the proxy is plaintext only
  --no-telemetry            leave out the telemetry filter (Istio metrics, trace context, access log)
  --concurrency N           worker processes sharing the ports, each with its own VMs (default 1);
                            the primary serves admin and sums the workers' stats (standalone only)
  --stall-threshold MS      a watchdog thread notices the event loop blocked this long (default 2000):
                            /ready answers 503 and wasmesh_proxy_event_loop_stalls_total counts it;
                            with --concurrency the primary does the same for a silent worker
  --stall-exit MS           blocked this long, the process is killed (SIGKILL) so its supervisor starts
                            a new one; a worker is replaced by the primary (default 15000; 0: never)
  --stall-recovery MS       after a stall, /ready fails until the loop ran this long without one
                            (default 5000)

Managed mode (--orchestrator): the orchestrator pushes this workload's config; changes apply without
a restart, a config that cannot be applied is refused (NACK) and the last good one keeps serving, and
the proxy reconnects with backoff when the orchestrator is down.
  --orchestrator HOST:PORT  the orchestrator's discovery service (default port 15010)
  --token-file FILE         file holding the proxy token (default: $WASMESH_TOKEN)
  --data-dir DIR            module cache, last good config and the workload identity (DIR/identity/,
                            key mode 0600; a valid one is reused after a restart) (default
                            .wasmesh/proxy-<workload>). Standalone proxies use it too, for
                            DIR/component-cache: jco's transpiles of component filters (256 MiB at most)
  --first-config-timeout MS how long to wait for the first config (default 15000); then the config
                            cached in --data-dir is used if there is one, else the proxy exits 1
  --register-address ADDR   register this proxy as an endpoint (a WorkloadEntry with its labels,
                            removed 10 s after it disconnects) at ADDR (default with --register-port:
                            127.0.0.1)
  --register-port [NAME=]PORT  port of that endpoint per service port NAME (default name http,
                            default port: --inbound-port); repeatable
  --no-mtls                 do not ask the orchestrator for a workload certificate (by default the
                            proxy makes its own key, gets a SPIFFE certificate over the discovery
                            channel, renews it at half-life, and enables PeerAuthentication and auto
                            mTLS; an orchestrator without a CA means plaintext only). Its registered
                            endpoint says security.istio.io/tlsMode=disabled, so clients send it
                            plaintext; a STRICT PeerAuthentication still refuses plaintext
`;

function parsePort(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--${name} must be a port number (0-65535), got "${value}"`);
  return n;
}

/** The watchdog's thresholds from --stall-threshold, --stall-exit and --stall-recovery (ms). */
function parseWatchdog(values: { 'stall-threshold'?: string; 'stall-exit'?: string; 'stall-recovery'?: string }): WatchdogOptions {
  const whole = (flag: 'stall-threshold' | 'stall-exit' | 'stall-recovery', fallback: number, min: number): number => {
    const v = values[flag];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be a whole number of milliseconds${min > 0 ? ` (at least ${min})` : ''}, got "${v}"`);
    return n;
  };
  const options = {
    stallMs: whole('stall-threshold', DEFAULT_WATCHDOG.stallMs, 20),
    exitMs: whole('stall-exit', DEFAULT_WATCHDOG.exitMs, 0),
    recoveryMs: whole('stall-recovery', DEFAULT_WATCHDOG.recoveryMs, 0),
  };
  if (options.exitMs !== 0 && options.exitMs <= options.stallMs) throw new Error(`--stall-exit (${options.exitMs}) must be longer than --stall-threshold (${options.stallMs}), or 0 for never`);
  return options;
}

/** A non-negative whole number option (milliseconds, or KiB for sizes); undefined when not given. */
function parseMs(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive whole number, got "${value}"`);
  return n;
}

/** `--tcp-outbound PORT[=LOCAL]` and `--tcp-inbound LISTEN=APP`, each repeatable. */
export function parseTcpPorts(outbound: readonly string[] | undefined, inbound: readonly string[] | undefined): Pick<ProxyOptions, 'tcpOutbound' | 'tcpInbound'> {
  const out: Pick<ProxyOptions, 'tcpOutbound' | 'tcpInbound'> = {};
  const port = (text: string, flag: string, spec: string, zero: boolean): number => {
    const n = Number(text);
    if (!/^[0-9]+$/.test(text) || n > 65535 || (!zero && n === 0)) throw new Error(`--${flag} ${spec}: "${text}" is not a port number (${zero ? 0 : 1}-65535)`);
    return n;
  };
  if (outbound && outbound.length > 0) {
    out.tcpOutbound = outbound.map((spec) => {
      const [service, local, extra] = spec.split('=');
      if (extra !== undefined || !service) throw new Error(`--tcp-outbound ${spec}: use PORT or PORT=LOCAL`);
      return { port: port(service, 'tcp-outbound', spec, false), ...(local !== undefined ? { listenPort: port(local, 'tcp-outbound', spec, true) } : {}) };
    });
    const seen = new Set<number>();
    for (const p of out.tcpOutbound) {
      if (seen.has(p.port)) throw new Error(`--tcp-outbound: service port ${p.port} is given twice`);
      seen.add(p.port);
    }
  }
  if (inbound && inbound.length > 0) {
    out.tcpInbound = inbound.map((spec) => {
      const [listen, app, extra] = spec.split('=');
      if (extra !== undefined || !listen || app === undefined) throw new Error(`--tcp-inbound ${spec}: use LISTEN=APP (the listener's port, the app's port)`);
      return { port: port(listen, 'tcp-inbound', spec, true), appPort: port(app, 'tcp-inbound', spec, false) };
    });
  }
  return out;
}

function parseLabels(value: string | undefined, workload: string): Record<string, string> {
  if (value === undefined) return { app: workload };
  const labels: Record<string, string> = {};
  for (const pair of value.split(',').filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`--labels: "${pair}" is not key=value`);
    labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return labels;
}

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        orchestrator: { type: 'string' },
        workload: { type: 'string' },
        role: { type: 'string' },
        namespace: { type: 'string' },
        labels: { type: 'string' },
        'service-account': { type: 'string' },
        'outbound-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'app-port': { type: 'string' },
        'admin-port': { type: 'string' },
        host: { type: 'string' },
        'access-log': { type: 'string' },
        'log-level': { type: 'string' },
        'drain-timeout': { type: 'string' },
        concurrency: { type: 'string' },
        'no-telemetry': { type: 'boolean' },
        'trust-domain': { type: 'string' },
        'cert-dir': { type: 'string' },
        'header-read-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-request-headers-kb': { type: 'string' },
        'max-response-headers-kb': { type: 'string' },
        'token-file': { type: 'string' },
        'data-dir': { type: 'string' },
        'first-config-timeout': { type: 'string' },
        'register-address': { type: 'string' },
        'register-port': { type: 'string', multiple: true },
        'tcp-outbound': { type: 'string', multiple: true },
        'tcp-inbound': { type: 'string', multiple: true },
        'iptables-capture': { type: 'boolean' },
        'no-mtls': { type: 'boolean' },
        'stall-threshold': { type: 'string' },
        'stall-exit': { type: 'string' },
        'stall-recovery': { type: 'string' },
        ...adminArgs,
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`wasmesh proxy: ${(err as Error).message}\n\n${helpFor(usage, process.stderr)}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(helpFor(usage));
    return 0;
  }
  if (values.orchestrator && values.config) {
    process.stderr.write('wasmesh proxy: give either --config (standalone) or --orchestrator (managed), not both\n');
    return 2;
  }
  if (!values.config && !values.orchestrator) {
    process.stderr.write(`wasmesh proxy: --config or --orchestrator is required\n\n${helpFor(usage, process.stderr)}`);
    return 2;
  }
  let options;
  let workload: WorkloadIdentity;
  let drainMs: number;
  let concurrency: number;
  try {
    const role = parseRole(values.role);
    const name = values.workload ?? (role === 'gateway' ? 'istio-ingressgateway' : 'app');
    workload = { name, namespace: values.namespace ?? 'default', labels: parseLabels(values.labels, name), serviceAccount: values['service-account'] ?? name };
    if (role === 'gateway') workload = gatewayWorkload(workload, values.labels === undefined);
    options = {
      role,
      host: values.host ?? '127.0.0.1',
      outboundPort: parsePort(values['outbound-port'], 'outbound-port', 15001),
      inboundPort: parsePort(values['inbound-port'], 'inbound-port', 15006),
      appPort: parsePort(values['app-port'], 'app-port', 8080),
      adminPort: parsePort(values['admin-port'], 'admin-port', 15000),
      accessLog: values['access-log'] ?? 'stdout',
      maxResponseHeaderBytes: values['max-response-headers-kb'] === undefined ? undefined : parseMs(values['max-response-headers-kb'], 'max-response-headers-kb')! * 1024,
      connections: {
        headersTimeoutMs: parseMs(values['header-read-timeout'], 'header-read-timeout'),
        keepAliveTimeoutMs: parseMs(values['idle-timeout'], 'idle-timeout'),
        maxHeaderSize: values['max-request-headers-kb'] === undefined ? undefined : parseMs(values['max-request-headers-kb'], 'max-request-headers-kb')! * 1024,
      },
      watchdog: parseWatchdog(values),
      ...adminOptions(values, (v, name) => parsePort(v, name, 0)),
      ...parseTcpPorts(values['tcp-outbound'], values['tcp-inbound']),
      ...(values['iptables-capture'] ? { iptablesCapture: true } : {}),
    };
    drainMs = values['drain-timeout'] === undefined ? 5000 : Number(values['drain-timeout']);
    concurrency = values.concurrency === undefined ? 1 : Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new Error(`--concurrency must be a whole number from 1 to 64, got "${values.concurrency}"`);
    if (concurrency > 1 && (options.tcpOutbound || options.tcpInbound)) throw new Error('--tcp-outbound and --tcp-inbound do not work with --concurrency above 1 yet');
    if (concurrency > 1 && options.iptablesCapture) throw new Error('--iptables-capture does not work with --concurrency above 1 yet');
    if (role === 'gateway' && options.iptablesCapture) throw new Error('--iptables-capture is for sidecars: a gateway is not behind iptables capture');
    if (role === 'gateway' && (options.tcpOutbound || options.tcpInbound)) throw new Error('--tcp-outbound and --tcp-inbound are sidecar listeners: a gateway gets its TCP ports from Gateway servers');
    if (!(drainMs >= 0)) throw new Error(`--drain-timeout must be milliseconds, got "${values['drain-timeout']}"`);
    if (values['log-level'] !== undefined) {
      if (!isLogLevel(values['log-level'])) throw new Error(`--log-level must be trace, debug, info, warn, error or critical`);
      setLogLevel(values['log-level']);
    }
  } catch (err) {
    process.stderr.write(`wasmesh proxy: ${(err as Error).message}\n`);
    return 2;
  }
  if (values.orchestrator) {
    if (concurrency > 1) {
      process.stderr.write('wasmesh proxy: --concurrency is not supported with --orchestrator yet\n');
      return 2;
    }
    return runManaged(values.orchestrator, values, options as ProxyOptions, workload, drainMs);
  }
  const path = values.config!;
  const translate = { telemetry: !values['no-telemetry'], ...(values['trust-domain'] ? { trustDomain: values['trust-domain'] } : {}) };
  if (values['cert-dir']) {
    const { StaticIdentity } = await import('../../proxy-host/src/identity/static-identity.ts');
    try {
      (options as ProxyOptions).identity = new StaticIdentity(values['cert-dir']);
    } catch (err) {
      process.stderr.write(`wasmesh proxy: --cert-dir ${values['cert-dir']}: ${(err as Error).message}\n`);
      return 2;
    }
  }
  // Standalone only: the config model (YAML, schemas, translation) is not loaded by a managed proxy.
  const { loadConfigFile, watchConfigFile } = await import('../../proxy-host/src/config/file-source.ts');
  const first = await loadConfigFile(path, workload, translate);
  if (!first.ok) {
    process.stderr.write(`wasmesh proxy: config ${path} rejected:\n${first.error}\n`);
    return 1;
  }
  // Component filters' transpiles, kept across restarts (shared by the workers of --concurrency).
  (options as ProxyOptions).componentCache = { dir: join(values['data-dir'] ?? `.wasmesh/proxy-${workload.name}`, 'component-cache') };
  const isWorker = process.env.WASMESH_WORKER === '1';
  if (concurrency > 1 && !isWorker) {
    const { adminHost, adminAccess, statusPort } = options as ProxyOptions;
    return runPrimary({ workers: concurrency, host: options.host, adminPort: options.adminPort, adminHost, adminAccess, statusPort, drainMs, watchdog: options.watchdog });
  }
  let proxy: Proxy;
  try {
    // The admin endpoint may swap modules (wasmesh filter dev) in a standalone single-process proxy;
    // under --concurrency the primary serves admin and the status port for every worker.
    const watchdog = isWorker ? { ...options.watchdog, label: `worker ${process.pid}: ` } : options.watchdog;
    proxy = await Proxy.start(isWorker ? { ...options, watchdog, adminPort: null, statusPort: undefined } : { ...options, moduleOverrides: true }, first.config);
    if (isWorker) serveWorkerQueries(proxy, heartbeatInterval(options.watchdog.stallMs));
  } catch (err) {
    process.stderr.write(`wasmesh proxy: ${(err as Error).message}\n`);
    return 1;
  }
  logInfo('proxy', `standalone: ${first.documents} documents from ${path}, workload ${workload.namespace}/${workload.name}`);
  const stopWatching = watchConfigFile(path, async () => {
    const next = await loadConfigFile(path, workload, translate);
    if (!next.ok) {
      proxy.noteRejectedConfig(next.error);
      logError('proxy', `config ${path} rejected, keeping ${proxy.config.version.slice(0, 12)}:\n${next.error}`);
      return;
    }
    // applyConfig logs and records its own failures (a filter that does not load, ...).
    await proxy.applyConfig(next.config).catch(() => {});
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logInfo('proxy', `${signal}: draining (up to ${drainMs} ms)`);
      stopWatching();
      await proxy.stop(drainMs);
      // A worker's IPC channel would keep it alive: let go of the primary.
      if (isWorker && process.connected) process.disconnect();
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}

/** Managed mode: the first config from the orchestrator starts the proxy; later ones apply in place. */
async function runManaged(
  address: string,
  values: { 'token-file'?: string; 'data-dir'?: string; 'first-config-timeout'?: string; 'register-address'?: string; 'register-port'?: string[]; 'no-mtls'?: boolean; 'trust-domain'?: string },
  options: ProxyOptions,
  workload: WorkloadIdentity,
  drainMs: number,
): Promise<number> {
  let token: string | undefined;
  let timeoutMs: number;
  let register: { address: string; ports: Record<string, number> } | undefined;
  try {
    if (values['register-address'] !== undefined || values['register-port'] !== undefined) {
      const ports: Record<string, number> = {};
      for (const spec of values['register-port'] ?? [String(options.inboundPort)]) {
        const i = spec.indexOf('=');
        const port = parsePort(i < 0 ? spec : spec.slice(i + 1), 'register-port', 0);
        if (port === 0) throw new Error(`--register-port needs a port number (1-65535), got "${spec}"`);
        ports[i < 0 ? 'http' : spec.slice(0, i)] = port;
      }
      register = { address: values['register-address'] ?? '127.0.0.1', ports };
    }
    token = values['token-file'] !== undefined ? readFileSync(values['token-file'], 'utf8').trim() : process.env.WASMESH_TOKEN?.trim() || undefined;
    timeoutMs = values['first-config-timeout'] === undefined ? 15_000 : Number(values['first-config-timeout']);
    if (!(timeoutMs >= 0)) throw new Error(`--first-config-timeout must be milliseconds, got "${values['first-config-timeout']}"`);
  } catch (err) {
    process.stderr.write(`wasmesh proxy: ${(err as Error).message}\n`);
    return 2;
  }
  const target = /:\d+$/.test(address) ? address : `${address}:15010`;
  const dataDir = values['data-dir'] ?? `.wasmesh/proxy-${workload.name}`;
  options = { ...options, componentCache: { dir: join(dataDir, 'component-cache') } };
  // Managed only: the discovery client (gRPC) and the CA client are not loaded by a standalone proxy.
  const [{ XdsClient }, { OrchestratorIdentity }, { keptIdentityDir }] = await Promise.all([
    import('../../proxy-host/src/config/xds-client.ts'),
    import('../../proxy-host/src/identity/orchestrator-identity.ts'),
    import('../../proxy-host/src/identity/kept-identity.ts'),
  ]);
  // Without mTLS, the endpoint this proxy registers must not draw clients' auto mTLS.
  if (values['no-mtls'] && workload.labels[TLS_MODE_LABEL] === undefined) workload = { ...workload, labels: { ...workload.labels, [TLS_MODE_LABEL]: 'disabled' } };
  let proxy: Proxy | undefined;
  const levels = { debug: 1, info: 2, warn: 3, error: 4 } as const;
  // Workload identity from the orchestrator's CA; the proxy starts once the first certificate is in
  // (or the first-config timeout passed: it is applied when it arrives), or without identity when the
  // orchestrator has no CA.
  let identityReady: Promise<void> = Promise.resolve();
  if (!values['no-mtls']) {
    const identity = new OrchestratorIdentity({
      address: target,
      token,
      namespace: workload.namespace,
      serviceAccount: workload.serviceAccount,
      ...(values['trust-domain'] ? { trustDomain: values['trust-domain'] } : {}),
      // Kept across restarts: an orchestrator outage does not take mTLS away.
      keepDir: keptIdentityDir(dataDir),
      log: (level, message) => log(levels[level], 'identity', message),
    });
    identityReady = identity.waitForCertificate(timeoutMs).then(async (cert) => {
      if (cert) {
        options.identity = identity;
      } else if (identity.status().noCa) {
        logInfo('proxy', `orchestrator ${target} runs without a certificate authority: no workload identity, plaintext only`);
        await identity.close();
      } else {
        logError('proxy', `no workload certificate from ${target} within ${timeoutMs} ms (${identity.status().lastError ?? 'no answer'}); starting without one, it applies when it arrives`);
        options.identity = identity;
      }
    });
  }
  const client = new XdsClient({
    address: target,
    token,
    workload,
    dataDir,
    ...(register ? { register } : {}),
    apply: async (config) => {
      if (proxy) return proxy.applyConfig(config);
      await identityReady;
      proxy = await Proxy.start(options, config);
    },
    log: (level, message) => log(levels[level], 'xds', message),
    filterStats: () => proxy?.canaryStats() ?? [],
    trafficStats: () => proxy?.trafficReport(),
  });
  client.start();
  logInfo('proxy', `managed: waiting for config of ${workload.namespace}/${workload.name} from ${target}`);
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([client.firstConfig(), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)))]);
  clearTimeout(timer);
  if (first === undefined) {
    const cached = await XdsClient.loadCachedConfig(dataDir);
    const why = client.status().lastError ?? client.status().rejected?.message;
    if (cached) {
      logError('proxy', `no config from ${target} within ${timeoutMs} ms${why ? ` (${why})` : ''}; serving the cached config ${cached.version.slice(0, 12)} from ${dataDir} and still trying`);
      await client.applyLocal(cached).catch((err: unknown) => logError('proxy', `cached config rejected: ${(err as Error).message}`));
    }
    if (!proxy) {
      process.stderr.write(
        `wasmesh proxy: no config from orchestrator ${target} within ${timeoutMs} ms${why ? ` (last error: ${why})` : ''}.\n` +
          `Check that the orchestrator is running and reachable, that the token (--token-file or WASMESH_TOKEN) has role proxy for namespace ${workload.namespace}, and that its config for this workload is consistent (wasmesh proxy-status).\n`,
      );
      await client.stop();
      await identityReady;
      await options.identity?.close();
      return 1;
    }
  }
  logInfo('proxy', `managed: orchestrator ${target}, workload ${workload.namespace}/${workload.name}, data dir ${dataDir}`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logInfo('proxy', `${signal}: draining (up to ${drainMs} ms)`);
      await client.stop();
      await proxy!.stop(drainMs);
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
