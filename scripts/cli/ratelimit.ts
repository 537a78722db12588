// wasmesh ratelimit: the rate-limit service on its own. Envoy's RLS v3 over gRPC, counting in Redis,
// with the limits of the RateLimitPolicies in the given config files (the same files a standalone
// proxy reads), re-read when they change. The orchestrator runs the same service with the limits of
// its store (wasmesh orchestrator --ratelimit-redis).
import { readdir, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { readDocumentFiles } from '../../mesh/src/documents.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { rateLimitServiceConfig, type RateLimitServiceConfig } from '../../mesh/src/translate/ratelimit.ts';
import { startRateLimitServer } from '../../orchestrator/src/ratelimit/server.ts';
import { parseHostPort, redisUrl } from './orchestrator.ts';

export const usage = `usage: wasmesh ratelimit --redis redis://HOST:PORT [--config FILE|DIR ...] [options]

Runs the rate-limit service: Envoy's RateLimitService (envoy.service.ratelimit.v3, ShouldRateLimit)
over gRPC, counting in Redis with lyft/ratelimit's semantics (fixed windows per descriptor, shadow
mode, hits_addend, RateLimit-* headers). Its limits are the global limits of the RateLimitPolicy
documents in the --config files (other kinds are read and ignored); the files are checked every second
and a valid change applies at once, an invalid one is reported and the last good limits stay.
Without --config, only descriptors that carry their own limit (RateLimitOverride) are limited.

  --redis URL            Redis to count in (required); the service starts while it is down and
                         answers UNAVAILABLE until it is up (the proxies' failure mode decides)
  --listen HOST:PORT     gRPC address (default 127.0.0.1:8081). The protocol has no authentication:
                         keep it on loopback or a private network
  --config FILE|DIR      documents with RateLimitPolicies (repeatable; a directory's *.yaml/*.json)
  --no-headers           leave RateLimit-Limit/-Remaining/-Reset out of the answers
  -h, --help

SIGTERM or SIGINT: calls in flight finish (at most 1 s), then it exits 0.
`;

const POLL_MS = 1000;

export async function run(argv: string[], out: { write(t: string): unknown } = process.stdout, err: { write(t: string): unknown } = process.stderr): Promise<number> {
  let values: { redis?: string; listen: string; config?: string[]; 'no-headers'?: boolean; help?: boolean };
  try {
    const parsed = parseArgs({
      args: argv,
      options: {
        redis: { type: 'string' },
        listen: { type: 'string', default: '127.0.0.1:8081' },
        config: { type: 'string', multiple: true },
        'no-headers': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values as typeof values;
    if (values.help) {
      out.write(usage);
      return 0;
    }
    if (!values.redis) throw new Error('--redis is required (redis://host:port)');
    redisUrl(values.redis, '--redis');
    parseHostPort(values.listen, '--listen');
  } catch (e) {
    err.write(`wasmesh ratelimit: ${(e as Error).message}\n\n${usage}`);
    return 2;
  }
  const files = values.config ?? [];
  let config: RateLimitServiceConfig = { domains: {} };
  if (files.length > 0) {
    const loaded = await load(files);
    if ('error' in loaded) {
      err.write(`wasmesh ratelimit: ${loaded.error}\n`);
      return 1;
    }
    config = loaded.config;
  }
  let server;
  try {
    server = await startRateLimitServer({ listen: values.listen, redisUrl: values.redis, config, responseHeaders: !values['no-headers'], log: (m) => err.write(`wasmesh ratelimit: ${m}\n`) });
  } catch (e) {
    err.write(`wasmesh ratelimit: cannot start: ${(e as Error).message}\n`);
    return 1;
  }
  out.write(`wasmesh ratelimit: RLS v3 on ${server.address}, counting in ${values.redis}; ${describe(config)}\n`);
  let fingerprint = files.length > 0 ? await fingerprintOf(files) : '';
  const timer = files.length > 0
    ? setInterval(() => {
        void (async () => {
          const now = await fingerprintOf(files);
          if (now === fingerprint) return;
          fingerprint = now;
          const loaded = await load(files);
          if ('error' in loaded) {
            err.write(`wasmesh ratelimit: config change rejected, the last good limits stay:\n${loaded.error}\n`);
            return;
          }
          server.setConfig(loaded.config);
          out.write(`wasmesh ratelimit: limits reloaded; ${describe(loaded.config)}\n`);
        })();
      }, POLL_MS)
    : undefined;
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      err.write(`wasmesh ratelimit: ${signal}: stopping\n`);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  if (timer) clearInterval(timer);
  await server.close();
  return 0;
}

async function load(files: string[]): Promise<{ config: RateLimitServiceConfig } | { error: string }> {
  const parsed = await readDocumentFiles(files);
  if (parsed.errors.length > 0) return { error: formatErrors(parsed.errors) };
  const v = validateDocuments(parsed.documents);
  if (!v.ok) return { error: formatErrors(v.errors) };
  return { config: rateLimitServiceConfig(parsed.documents) };
}

/** Sizes and modification times of the files (and directories' entries): what a change changes. */
async function fingerprintOf(files: string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    try {
      const s = await stat(f);
      parts.push(`${f}:${s.size}:${s.mtimeMs}`);
      if (s.isDirectory()) {
        for (const name of (await readdir(f)).sort()) {
          const e = await stat(`${f}/${name}`).catch(() => undefined);
          if (e) parts.push(`${name}:${e.size}:${e.mtimeMs}`);
        }
      }
    } catch {
      parts.push(`${f}:missing`);
    }
  }
  return parts.join('|');
}

function describe(config: RateLimitServiceConfig): string {
  const n = Object.values(config.domains).reduce((sum, d) => sum + d.length, 0);
  const domains = Object.keys(config.domains);
  return `${n} limit(s)${domains.length > 0 ? ` in domain(s) ${domains.join(', ')}` : ''}`;
}
