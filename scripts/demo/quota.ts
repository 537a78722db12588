// The demo's quota: a throwaway Redis (scripts/redis.sh) for the rate-limit service the orchestrator
// runs, and the ServiceEntry that lets sidecars reach that service. Without redis-server the demo runs
// without quota and says so.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { installPath } from '../../schemas/repo-files.ts';

const SCRIPT = installPath('scripts', 'redis.sh');

/** The host RateLimitPolicies of the demo name (scripts/demo/try/quota-productpage.yaml). */
export const RATELIMIT_HOST = 'ratelimit.wasmesh-system.svc.cluster.local';
export const RATELIMIT_PORT = 8081;

export interface DemoRedis {
  url: string;
  stop(): void;
}

/** Starts redis-server on a free loopback port with its files in <tmp>/redis; a reason when there is none. */
export function startDemoRedis(tmp: string): DemoRedis | { reason: string } {
  try {
    execFileSync('bash', [SCRIPT, 'path'], { stdio: 'ignore' });
  } catch {
    return { reason: 'redis-server is not installed (bash scripts/redis.sh install)' };
  }
  const dir = join(tmp, 'redis');
  let text: string;
  try {
    text = execFileSync('bash', [SCRIPT, 'start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return { reason: `redis-server did not start: ${(e as Error).message.split('\n')[0]}` };
  }
  const value = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(text)?.[1] ?? '';
  const pid = value('REDIS_PID');
  return {
    url: value('REDIS_URL'),
    stop: () => {
      try {
        execFileSync('bash', [SCRIPT, 'stop', pid], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
}

/** The rate-limit service as the mesh sees it: a ServiceEntry whose endpoint is the orchestrator's port. */
export function rateLimitServiceEntry(port: number): object {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'ratelimit', namespace: 'wasmesh-system' },
    spec: {
      hosts: [RATELIMIT_HOST],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      ports: [{ number: RATELIMIT_PORT, name: 'grpc', protocol: 'GRPC' }],
      endpoints: [{ address: '127.0.0.1', ports: { grpc: port } }],
    },
  };
}
