// wasmesh gateway: `wasmesh proxy --role gateway` (see proxy.ts and RATIONALE "A gateway is the proxy in a gateway role").
import { run as runProxy } from './proxy.ts';

export const usage = `usage: wasmesh gateway --config <mesh.yaml|dir> [options]
       wasmesh gateway --orchestrator HOST:PORT [--token-file FILE] [options]

A gateway proxy: the same proxy as \`wasmesh proxy --role gateway\`. It listens on the ports of the
Gateways whose selector matches its labels (bound to --host, loopback by default, or to a server's
bind), routes by Host with the VirtualServices bound to those Gateways, to mesh services over mTLS
when it has an identity (--cert-dir, or from the orchestrator), and runs the WasmPlugins selecting it
with telemetry as the client side (reporter="source"). Default workload istio-ingressgateway with
labels app=istio-ingressgateway,istio=ingressgateway. Every option of \`wasmesh proxy --help\` applies.
`;

export function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage);
    return Promise.resolve(0);
  }
  return runProxy(['--role', 'gateway', ...argv]);
}
