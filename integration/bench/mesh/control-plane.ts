// The wasmesh side of the mesh benchmark as users run it: `wasmesh orchestrator` (embedded SQLite
// store, its own CA) as a process of its own, proxy tokens from `wasmesh token create`, the mesh's
// documents through the REST API, and workloads as `wasmesh run --orchestrator ... -- <app>`, each a
// process group (the supervisor, the sidecar it starts, the app) that is stopped as one.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Children } from '../../../proxy-host/bench/support/children.ts';
import { pinned } from '../../../proxy-host/bench/support/cpus.ts';
import { childPids, commandLine } from '../../../proxy-host/bench/support/proc.ts';
import { capture, freePort, lastLines, waitForPort } from '../../../proxy-host/bench/support/services.ts';
import { runChild } from '../../../proxy-host/bench/support/wrk.ts';

export const NAMESPACE = 'default';

export interface Orchestrator {
  cp: ChildProcess;
  pid: number;
  url: string;
  grpc: string;
  dataDir: string;
  adminToken: string;
  output(): string;
}

export async function startOrchestrator(children: Children, root: string, dataDir: string, cpu: string | undefined): Promise<Orchestrator> {
  const restPort = await freePort();
  const grpcPort = await freePort();
  const [cmd, args] = pinned(cpu, process.execPath, [path.join(root, 'scripts/wasmesh.mjs'), 'orchestrator', '--data-dir', dataDir, '--listen', `127.0.0.1:${restPort}`, '--grpc-listen', `127.0.0.1:${grpcPort}`]);
  const cp = children.spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], group: true });
  let grpcUp = false;
  const output = capture(cp, (line) => {
    if (/discovery \(gRPC\) on/.test(line)) grpcUp = true;
  });
  try {
    await waitForPort(restPort, cp, output, 60_000);
    const deadline = Date.now() + 30_000;
    while (!grpcUp) {
      if (Date.now() > deadline) throw new Error(`no discovery service after 30 s: ${lastLines(output())}`);
      if (cp.exitCode !== null) throw new Error(`exited (${cp.exitCode}): ${lastLines(output())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await children.stop(cp, 1000);
    throw new Error(`wasmesh orchestrator did not start: ${(err as Error).message}`);
  }
  const adminToken = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  return { cp, pid: cp.pid!, url: `http://127.0.0.1:${restPort}`, grpc: `127.0.0.1:${grpcPort}`, dataDir, adminToken, output };
}

/** `wasmesh token create --role proxy` for a service account; returns the token file (mode 0600). */
export async function proxyTokenFile(children: Children, root: string, orch: Orchestrator, serviceAccount: string, dir: string): Promise<string> {
  const r = await runChild(children, process.execPath, [path.join(root, 'scripts/wasmesh.mjs'), 'token', 'create', '--role', 'proxy', '--namespace', NAMESPACE, '--service-account', serviceAccount, '--data-dir', orch.dataDir], 60_000, root);
  const token = r.stdout.trim();
  if (r.code !== 0 || !token) throw new Error(`wasmesh token create for ${serviceAccount} failed (${r.code}): ${lastLines(r.stderr)}`);
  const file = path.join(dir, `token-${serviceAccount}`);
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}

async function rest(orch: Orchestrator, method: string, urlPath: string, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${orch.url}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${orch.adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, text: await res.text() };
}

/** POST /apply (all or nothing); throws with the orchestrator's answer when refused. */
export async function apply(orch: Orchestrator, documents: readonly object[]): Promise<void> {
  const r = await rest(orch, 'POST', '/apply', documents);
  if (r.status >= 300) throw new Error(`POST /apply answered ${r.status}: ${r.text.slice(0, 400)}`);
}

/** DELETE one resource; a resource that is not there is fine. */
export async function remove(orch: Orchestrator, plural: string, name: string): Promise<void> {
  const r = await rest(orch, 'DELETE', `/apis/${plural}/${NAMESPACE}/${name}`);
  if (r.status >= 300 && r.status !== 404) throw new Error(`DELETE ${plural}/${name} answered ${r.status}: ${r.text.slice(0, 400)}`);
}

export interface Workload {
  service: string;
  /** `wasmesh run` itself, the leader of the group. */
  supervisor: ChildProcess;
  supervisorPid: number;
  sidecarPid: number;
  /** The command `wasmesh run` started (the app, or the client's placeholder). */
  commandPid: number;
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  appPort: number;
  output(): string;
}

export interface WorkloadOptions {
  root: string;
  orch: Orchestrator;
  service: string;
  tokenFile: string;
  appPort: number;
  /** What `wasmesh run` runs after `--`. */
  command: string[];
  /** The CPU of the supervisor and so of its sidecar (the command pins itself if it wants another). */
  cpu?: string;
  env?: Record<string, string>;
}

/** `wasmesh run --service S --port P --orchestrator ... --token-file F -- command`, until its sidecar is ready. */
export async function startWorkload(children: Children, o: WorkloadOptions): Promise<Workload> {
  // The `wasmesh` command users run (package.json bin): its `run` supervises from a shell.
  const [cmd, args] = pinned(o.cpu, path.join(o.root, 'scripts/wasmesh'), [
    'run',
    '--service', o.service,
    '--port', String(o.appPort),
    '--orchestrator', o.orch.grpc,
    '--token-file', o.tokenFile,
    // BENCH_ACCESS_LOG=<dir>: each sidecar's access log in <dir>/<service>.log, to see what failed and why.
    ...(process.env.BENCH_ACCESS_LOG ? ['--access-log', path.join(process.env.BENCH_ACCESS_LOG, `${o.service}.log`)] : []),
    '--', ...o.command,
  ]);
  // stdin is a pipe the command inherits: the app exits when the benchmark is gone, whatever happens.
  const cp = children.spawn(cmd, args, { cwd: o.root, stdio: ['pipe', 'pipe', 'pipe'], group: true, env: { ...process.env, ...o.env } });
  let ports: number[] | undefined;
  const output = capture(cp, (line) => {
    const m = /^wasmesh run: \S+ \S+: sidecar outbound 127\.0\.0\.1:(\d+), inbound 127\.0\.0\.1:(\d+) -> app (\d+), admin 127\.0\.0\.1:(\d+)/.exec(line);
    if (m) ports = m.slice(1).map(Number);
  });
  const deadline = Date.now() + 90_000;
  try {
    for (;;) {
      if (cp.exitCode !== null || cp.signalCode !== null) throw new Error(`exited (${cp.signalCode ?? cp.exitCode}): ${lastLines(output(), 6)}`);
      if (ports) {
        const kids = childPids(cp.pid!);
        const sidecarPid = kids.find((pid) => / proxy --workload /.test(commandLine(pid) ?? ''));
        const commandPid = kids.find((pid) => pid !== sidecarPid);
        if (sidecarPid !== undefined && commandPid !== undefined) {
          const [outboundPort, inboundPort, appPort, adminPort] = ports as [number, number, number, number];
          return { service: o.service, supervisor: cp, supervisorPid: cp.pid!, sidecarPid, commandPid, outboundPort, inboundPort, adminPort, appPort, output };
        }
      }
      if (Date.now() > deadline) throw new Error(`not ready after 90 s: ${lastLines(output(), 6)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await children.stop(cp, 2000);
    throw new Error(`wasmesh run --service ${o.service}: ${(err as Error).message}`);
  }
}
