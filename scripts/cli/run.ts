// wasmesh run: sidecar injection for a local process. Starts a sidecar proxy (`wasmesh proxy`, as a
// child process) for the workload, then the command with WASMESH_OUTBOUND / HTTP_PROXY pointing at the
// sidecar's outbound listener and PORT at the app port; forwards SIGINT/SIGTERM to both, restarts the
// sidecar on the same ports if it dies while the command runs (sidecar-supervisor.ts), stops the
// sidecar when the command exits, and exits with the command's code.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SidecarSupervisor } from './sidecar-supervisor.ts';
import { PROXY_NODE_FLAGS } from './proxy-node-flags.ts';
import { installPath } from '../../schemas/repo-files.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh run --service NAME --port APP_PORT [options] -- <command...>

Runs <command> as a mesh workload: a sidecar proxy for it is started first (labels app=NAME,
version=VERSION), its endpoint is registered with the orchestrator (so ServiceEntries selecting
app: NAME reach the app through the sidecar's inbound listener), and the command gets
WASMESH_OUTBOUND and HTTP_PROXY (http://127.0.0.1:<outbound port>) and PORT=<APP_PORT>.
SIGINT and SIGTERM go to both; if the sidecar dies while the command runs (killed, crashed, or
killed by its own watchdog when stuck) it is started again on the same ports, with a backoff; when
the command exits the sidecar stops, and wasmesh run exits with the command's code.

  --service NAME            service name (label app)
  --version V               label version (default v1)
  --namespace NS            namespace (default default)
  --service-account SA      (default: the service name)
  --port APP_PORT           the port the app listens on (the sidecar's inbound target)
  --orchestrator HOST:PORT  managed mode: the orchestrator's discovery service
  --token-file FILE         proxy token (bound to the namespace and service account)
  --config mesh.yaml        standalone mode: the sidecar reads Istio-style YAML instead
  --outbound-port, --inbound-port, --admin-port PORT   sidecar ports (default: free ports)
  --tcp-port NAME=APP_PORT  a TCP port of the app (service port NAME, protocol TCP): the sidecar serves
                            it on a free inbound TCP listener (mTLS under PeerAuthentication) and
                            registers that listener as the endpoint port NAME; repeatable
  --tcp-outbound PORT       reach the TCP (or TLS) service port PORT: the sidecar listens on a free
                            local port and the command gets WASMESH_TCP_<PORT>=127.0.0.1:<local>;
                            repeatable
  --data-dir DIR            sidecar data dir (default: a temporary dir, removed at exit)
  --access-log TARGET       sidecar access log: off (default), stdout, or a file
  --quiet                   do not print the sidecar's ports
`;

const WASMESH = installPath('scripts', 'wasmesh.mjs');

export interface Output {
  write(text: string): unknown;
}

/** A free TCP port on 127.0.0.1 (the OS picks it; there is a small window before it is used). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface WorkloadOptions {
  service: string;
  version: string;
  namespace: string;
  serviceAccount?: string;
  appPort: number;
  command: string[];
  orchestrator?: string;
  tokenFile?: string;
  config?: string;
  outboundPort?: number;
  inboundPort?: number;
  adminPort?: number;
  dataDir?: string;
  accessLog?: string;
  /** The app's TCP ports, by service port name (`--tcp-port NAME=APP_PORT`). */
  tcpPorts?: readonly { name: string; appPort: number }[];
  /** TCP service ports the app connects to through its sidecar (`--tcp-outbound PORT`). */
  tcpOutbound?: readonly number[];
  /** Extra environment for the command. */
  env?: NodeJS.ProcessEnv;
  /** Aborting it while the sidecar starts stops the sidecar (startWorkload then rejects). */
  abort?: AbortSignal;
  /** Where the sidecar's and the command's output goes: inherited (default) or piped into these. */
  stdout?: Output;
  stderr?: Output;
}

export interface RunningWorkload {
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  /** The sidecar running now (another process after a restart). */
  readonly sidecar: ChildProcess;
  /** How many times the sidecar was restarted. */
  readonly sidecarRestarts: number;
  app: ChildProcess;
  /** Resolves with the command's exit code (128+n for a signal) once the sidecar has stopped too. */
  exited: Promise<number>;
  /** Sends the signal to both processes. */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM to both, then waits for them (SIGKILL after a grace period). */
  stop(): Promise<number>;
}

function exitPromise(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    if (child.signalCode !== null) return resolve(128 + signalNumber(child.signalCode));
    child.once('exit', (code, sig) => resolve(code ?? 128 + signalNumber(sig ?? 'SIGTERM')));
    child.once('error', () => resolve(127));
  });
}

function signalNumber(sig: NodeJS.Signals): number {
  return sig === 'SIGINT' ? 2 : sig === 'SIGKILL' ? 9 : 15;
}

function pipe(child: ChildProcess, out: Output | undefined, err: Output | undefined): void {
  if (out) child.stdout?.on('data', (d: Buffer) => out.write(d.toString()));
  if (err) child.stderr?.on('data', (d: Buffer) => err.write(d.toString()));
}

/** Waits until the sidecar's admin /ready answers 200 (or the sidecar exits, or the time is up). */
async function waitReady(adminPort: number, sidecar: ChildProcess, timeoutMs: number, abort: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (abort?.aborted) throw new Error('interrupted while the sidecar was starting');
    if (sidecar.exitCode !== null || sidecar.signalCode !== null) throw new SidecarExited(`the sidecar exited (code ${sidecar.exitCode ?? sidecar.signalCode}) before it was ready`);
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/ready`, { signal: AbortSignal.timeout(1000) });
      await res.text();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`the sidecar was not ready within ${timeoutMs} ms`);
}

/**
 * Starts the sidecar, waits for it to be ready, then starts the command. When the sidecar's ports
 * were picked here and it exits before it is ready (a picked port taken in the meantime), it is
 * started again on new ports, twice at most.
 */
export async function startWorkload(opts: WorkloadOptions): Promise<RunningWorkload> {
  const picked = opts.outboundPort === undefined || opts.inboundPort === undefined || opts.adminPort === undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      if (!picked || attempt >= 3 || !(e instanceof SidecarExited) || opts.abort?.aborted) throw e;
    }
  }
}

class SidecarExited extends Error {}

/** The sidecar's local TCP ports: an inbound listener per app TCP port, a local port per outbound service port. */
export interface TcpPlan {
  inbound: readonly number[];
  outbound: ReadonlyMap<number, number>;
}

/** Free ports for the TCP listeners (picked once: a restarted sidecar gets the same ones). */
export async function pickTcpPorts(opts: WorkloadOptions): Promise<TcpPlan> {
  const inbound: number[] = [];
  for (const _ of opts.tcpPorts ?? []) inbound.push(await freePort());
  const outbound = new Map<number, number>();
  for (const p of opts.tcpOutbound ?? []) outbound.set(p, await freePort());
  return { inbound, outbound };
}

/** The sidecar's `wasmesh proxy` arguments for a workload. */
export function sidecarArgs(opts: WorkloadOptions, ports: { outboundPort: number; inboundPort: number; adminPort: number; tcp?: TcpPlan }, dataDir: string): string[] {
  const workload = opts.version ? `${opts.service}-${opts.version}` : opts.service;
  const args = [
    '--workload', workload,
    '--namespace', opts.namespace,
    '--labels', `app=${opts.service},version=${opts.version}`,
    '--service-account', opts.serviceAccount ?? opts.service,
    '--app-port', String(opts.appPort),
    '--outbound-port', String(ports.outboundPort),
    '--inbound-port', String(ports.inboundPort),
    '--admin-port', String(ports.adminPort),
    '--access-log', opts.accessLog ?? 'off',
    '--drain-timeout', '1000',
  ];
  (opts.tcpPorts ?? []).forEach((p, i) => args.push('--tcp-inbound', `${ports.tcp!.inbound[i]}=${p.appPort}`));
  for (const [service, local] of ports.tcp?.outbound ?? []) args.push('--tcp-outbound', `${service}=${local}`);
  if (opts.config !== undefined) {
    args.push('--config', opts.config);
  } else {
    args.push('--orchestrator', opts.orchestrator!, '--data-dir', dataDir, '--register-port', `http=${ports.inboundPort}`);
    (opts.tcpPorts ?? []).forEach((p, i) => args.push('--register-port', `${p.name}=${ports.tcp!.inbound[i]}`));
    if (opts.tokenFile !== undefined) args.push('--token-file', opts.tokenFile);
  }
  return args;
}

/** The environment the command runs in: where its sidecar's outbound listener is, and its port. */
export function appEnvironment(opts: WorkloadOptions, outboundPort: number, tcp?: TcpPlan): Record<string, string> {
  const outbound = `http://127.0.0.1:${outboundPort}`;
  const env: Record<string, string> = { WASMESH_OUTBOUND: outbound, HTTP_PROXY: outbound, http_proxy: outbound, PORT: String(opts.appPort), WASMESH_SERVICE: opts.service, WASMESH_VERSION: opts.version };
  for (const [service, local] of tcp?.outbound ?? []) env[`WASMESH_TCP_${service}`] = `127.0.0.1:${local}`;
  return env;
}

async function startOnce(opts: WorkloadOptions): Promise<RunningWorkload> {
  const outboundPort = opts.outboundPort ?? (await freePort());
  const inboundPort = opts.inboundPort ?? (await freePort());
  const adminPort = opts.adminPort ?? (await freePort());
  const tcp = await pickTcpPorts(opts);
  const ownDataDir = opts.dataDir === undefined ? mkdtempSync(join(tmpdir(), `wasmesh-run-${opts.service}-`)) : undefined;
  const dataDir = opts.dataDir ?? ownDataDir!;
  const args = [...PROXY_NODE_FLAGS, WASMESH, 'proxy', ...sidecarArgs(opts, { outboundPort, inboundPort, adminPort, tcp }, dataDir)];
  const piped = opts.stdout !== undefined || opts.stderr !== undefined;
  const stdio = piped ? (['ignore', 'pipe', 'pipe'] as const) : (['ignore', 'inherit', 'inherit'] as const);
  const spawnSidecar = () => {
    const child = spawn(process.execPath, args, { stdio: [...stdio] });
    pipe(child, opts.stdout, opts.stderr);
    return child;
  };
  const sidecar = spawnSidecar();
  const sidecarExit = exitPromise(sidecar);
  const cleanup = () => {
    if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
  };
  try {
    await waitReady(adminPort, sidecar, 30_000, opts.abort);
  } catch (e) {
    if (sidecar.exitCode === null && sidecar.signalCode === null) sidecar.kill('SIGKILL');
    await sidecarExit;
    cleanup();
    throw e;
  }
  const supervisor = new SidecarSupervisor(sidecar, { spawn: spawnSidecar, log: (line) => (opts.stderr ?? process.stderr).write(`wasmesh run: ${opts.service}: ${line}\n`) });
  const [cmd, ...cmdArgs] = opts.command;
  const app = spawn(cmd!, cmdArgs, {
    stdio: piped ? ['ignore', 'pipe', 'pipe'] : ['inherit', 'inherit', 'inherit'],
    env: { ...process.env, ...opts.env, ...appEnvironment(opts, outboundPort, tcp) },
  });
  pipe(app, opts.stdout, opts.stderr);
  const appExit = exitPromise(app);
  let killTimer: NodeJS.Timeout | undefined;
  const exited = (async () => {
    const code = await appExit;
    supervisor.stopRestarting();
    const current = supervisor.child;
    if (current.exitCode === null && current.signalCode === null) {
      current.kill('SIGTERM');
      killTimer = setTimeout(() => current.kill('SIGKILL'), 5000);
    }
    await supervisor.exited();
    clearTimeout(killTimer);
    cleanup();
    return code;
  })();
  const signal = (sig: NodeJS.Signals) => {
    // A signal from the user stops both on purpose: the sidecar's exit is not a crash to restart from.
    supervisor.stopRestarting();
    for (const child of [app, supervisor.child]) if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  return {
    outboundPort,
    inboundPort,
    adminPort,
    get sidecar() {
      return supervisor.child;
    },
    get sidecarRestarts() {
      return supervisor.restarts;
    },
    app,
    exited,
    signal,
    async stop() {
      signal('SIGTERM');
      const timer = setTimeout(() => signal('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

function port(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`--${name} must be a port number (1-65535), got "${value}"`);
  return n;
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  let opts: WorkloadOptions;
  let quiet = false;
  let plan = false;
  try {
    const { values, positionals } = parseArgs({
      args: own,
      options: {
        service: { type: 'string' },
        version: { type: 'string', default: 'v1' },
        namespace: { type: 'string', default: 'default' },
        'service-account': { type: 'string' },
        port: { type: 'string' },
        orchestrator: { type: 'string' },
        'token-file': { type: 'string' },
        config: { type: 'string' },
        'outbound-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        'data-dir': { type: 'string' },
        'access-log': { type: 'string' },
        'tcp-port': { type: 'string', multiple: true },
        'tcp-outbound': { type: 'string', multiple: true },
        quiet: { type: 'boolean', default: false },
        // Used by the `wasmesh` shell entry: print the plan for its shell supervisor, start nothing.
        plan: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(helpFor(usage, out));
      return 0;
    }
    if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}" (put the command after --)`);
    if (!values.service) throw new Error('--service is required');
    const appPort = port(values.port, 'port');
    if (appPort === undefined) throw new Error('--port is required');
    if (command.length === 0) throw new Error('no command: give it after --');
    if (values.orchestrator && values.config) throw new Error('give either --orchestrator or --config, not both');
    if (!values.orchestrator && !values.config) throw new Error('--orchestrator HOST:PORT (with --token-file) or --config mesh.yaml is required');
    quiet = values.quiet;
    plan = values.plan;
    opts = {
      service: values.service,
      version: values.version,
      namespace: values.namespace,
      appPort,
      command,
      ...(values['service-account'] !== undefined ? { serviceAccount: values['service-account'] } : {}),
      ...(values.orchestrator !== undefined ? { orchestrator: values.orchestrator } : {}),
      ...(values['token-file'] !== undefined ? { tokenFile: values['token-file'] } : {}),
      ...(values.config !== undefined ? { config: values.config } : {}),
      ...(values['outbound-port'] !== undefined ? { outboundPort: port(values['outbound-port'], 'outbound-port')! } : {}),
      ...(values['inbound-port'] !== undefined ? { inboundPort: port(values['inbound-port'], 'inbound-port')! } : {}),
      ...(values['admin-port'] !== undefined ? { adminPort: port(values['admin-port'], 'admin-port')! } : {}),
      ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
      ...(values['access-log'] !== undefined ? { accessLog: values['access-log'] } : {}),
      ...(values['tcp-port'] ? { tcpPorts: values['tcp-port'].map(tcpPortOption) } : {}),
      ...(values['tcp-outbound'] ? { tcpOutbound: values['tcp-outbound'].map((v) => port(v, 'tcp-outbound')!) } : {}),
    };
  } catch (e) {
    err.write(`wasmesh run: ${(e as Error).message}\n\n${helpFor(usage, err)}`);
    return 2;
  }
  if (plan) {
    out.write(await supervisorPlan(opts, quiet));
    return 0;
  }
  // A signal while the sidecar starts stops it; once the command runs, signals go to both.
  const starting = new AbortController();
  let running: RunningWorkload | undefined;
  const forward = (sig: NodeJS.Signals) => (running ? running.signal(sig) : starting.abort());
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    running = await startWorkload({ ...opts, abort: starting.signal });
  } catch (e) {
    process.removeListener('SIGINT', forward);
    process.removeListener('SIGTERM', forward);
    err.write(`wasmesh run: ${(e as Error).message}\n`);
    return starting.signal.aborted ? 130 : 1;
  }
  if (!quiet) err.write(`wasmesh run: ${opts.service} ${opts.version}: sidecar outbound 127.0.0.1:${running.outboundPort}, inbound 127.0.0.1:${running.inboundPort} -> app ${opts.appPort}, admin 127.0.0.1:${running.adminPort}\n`);
  try {
    return await running.exited;
  } finally {
    process.removeListener('SIGINT', forward);
    process.removeListener('SIGTERM', forward);
  }
}

/** `--tcp-port NAME=APP_PORT`. */
function tcpPortOption(spec: string): { name: string; appPort: number } {
  const i = spec.indexOf('=');
  const name = spec.slice(0, i);
  const appPort = Number(spec.slice(i + 1));
  if (i <= 0 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || !Number.isInteger(appPort) || appPort < 1 || appPort > 65535) {
    throw new Error(`--tcp-port ${spec}: use NAME=APP_PORT (the service port's name, the app's TCP port)`);
  }
  return { name, appPort };
}

/** Single-quoted for the shell. */
function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * What scripts/wasmesh's shell supervisor runs, as bash assignments: the sidecar and the command with
 * their arguments and environment, the admin port it polls for readiness, the folder to remove at the
 * end, and the line to print once the sidecar is ready. Ports are picked now (and the folder made).
 */
async function supervisorPlan(opts: WorkloadOptions, quiet: boolean): Promise<string> {
  const outboundPort = opts.outboundPort ?? (await freePort());
  const inboundPort = opts.inboundPort ?? (await freePort());
  const adminPort = opts.adminPort ?? (await freePort());
  const tcp = await pickTcpPorts(opts);
  const ownDataDir = opts.dataDir === undefined ? mkdtempSync(join(tmpdir(), `wasmesh-run-${opts.service}-`)) : '';
  const dataDir = opts.dataDir ?? ownDataDir;
  const sidecar = [process.execPath, ...PROXY_NODE_FLAGS, WASMESH, 'proxy', ...sidecarArgs(opts, { outboundPort, inboundPort, adminPort, tcp }, dataDir)];
  const env = Object.entries(appEnvironment(opts, outboundPort, tcp)).map(([k, v]) => `${k}=${v}`);
  const banner = quiet ? '' : `wasmesh run: ${opts.service} ${opts.version}: sidecar outbound 127.0.0.1:${outboundPort}, inbound 127.0.0.1:${inboundPort} -> app ${opts.appPort}, admin 127.0.0.1:${adminPort}`;
  const array = (xs: string[]) => `(${xs.map(shellWord).join(' ')})`;
  return [
    `SIDECAR=${array(sidecar)}`,
    `APP=${array(opts.command)}`,
    `APP_ENV=${array(env)}`,
    `ADMIN_PORT=${adminPort}`,
    `OWN_DATA_DIR=${shellWord(ownDataDir)}`,
    `SERVICE=${shellWord(opts.service)}`,
    `BANNER=${shellWord(banner)}`,
    '',
  ].join('\n');
}
