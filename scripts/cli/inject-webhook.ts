// wasmesh inject-webhook: sidecar injection as a Kubernetes mutating admission webhook (HTTPS), or,
// with --print-config, the MutatingWebhookConfiguration that registers it.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { CliError, UsageError } from '../../orchestrator/src/cli-client/client.ts';
import { runCommand, type Output } from '../../orchestrator/src/cli-client/common.ts';
import { injectArgOptions, injectOptionsUsage, resolveInjectOptions } from '../../orchestrator/src/inject/options.ts';
import { loadOrCreateServingCertificate } from '../../orchestrator/src/inject/serving-cert.ts';
import { INJECT_PATH, INJECTION_NAMESPACE_LABEL, startInjectWebhook, webhookConfiguration, type WebhookConfigOptions } from '../../orchestrator/src/inject/webhook.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

const DEFAULT_LISTEN = '0.0.0.0:9443';
const DEFAULT_DNS_NAME = 'wasmesh-inject.wasmesh-system.svc';
const DEFAULT_CERT_DIR = '.wasmesh/inject-webhook';

export const usage = `usage: wasmesh inject-webhook [--listen HOST:PORT] [--cert FILE --key FILE] [options]
       wasmesh inject-webhook --print-config [options]

Serves sidecar injection (what wasmesh kube-inject does) as a Kubernetes mutating admission webhook:
POST ${INJECT_PATH} takes an AdmissionReview (admission.k8s.io/v1) and answers with a JSON Patch that adds
the wasmesh-init and wasmesh-proxy containers; GET /healthz answers ok. Objects that are not
injected (opted out, already injected, hostNetwork, malformed) are allowed unchanged, with a
warning when something is wrong: the webhook never blocks a pod. "wasmesh kube-inject --help" says
what is injected and which annotations change it.

  --listen HOST:PORT      where to serve HTTPS (default ${DEFAULT_LISTEN})
  --cert FILE, --key FILE PEM serving certificate (chain) and key. Without them a certificate is made
                          for the --dns-name names under a CA of its own, kept in --cert-dir and reused
  --cert-dir DIR          where the made CA and certificate live (default ${DEFAULT_CERT_DIR});
                          ca-cert.pem is the caBundle
  --dns-name NAME         a name (or IP address) the certificate is for; repeatable (default
                          ${DEFAULT_DNS_NAME}, the Service wasmesh-inject in wasmesh-system)
  --ca-cert FILE          with --cert: the CA that signed it, for the caBundle (default: --cert itself)
  --print-config          print the MutatingWebhookConfiguration (Pod CREATE in namespaces labelled
                          ${INJECTION_NAMESPACE_LABEL}=enabled, failurePolicy Ignore, sideEffects None,
                          AdmissionReview v1, caBundle filled in) and exit. Its clientConfig is the
                          Service named by the first --dns-name (<svc>.<ns>.svc, port 443), or --url
  --url URL               the webhook's URL for the apiserver when it runs outside the cluster
                          (https://HOST:PORT${INJECT_PATH})
${injectOptionsUsage()}`;

export interface InjectWebhookIo {
  out: Output;
  err: Output;
  /** Stops the server (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
}

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen must be HOST:PORT, like ${DEFAULT_LISTEN} (got "${text}")`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** <svc>.<ns>.svc[.cluster.local] -> the Service, port 443. */
function serviceOf(name: string): WebhookConfigOptions['service'] {
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(name);
  return m ? { name: m[1]!, namespace: m[2]!, port: 443 } : undefined;
}

export async function run(argv: string[], io: InjectWebhookIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  return runCommand('inject-webhook', usage, io, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'ca-cert': { type: 'string' },
        'cert-dir': { type: 'string' },
        'dns-name': { type: 'string', multiple: true },
        'print-config': { type: 'boolean' },
        url: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...injectArgOptions,
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out.write(helpFor(usage, io.out));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('give --cert and --key together (or neither, for a made certificate)');
    if (values['ca-cert'] !== undefined && values.cert === undefined) throw new UsageError('--ca-cert goes with --cert');
    if (values.url !== undefined && !/^https:\/\/[^\s/]+(\/\S*)?$/.test(values.url)) throw new UsageError(`--url must be an https:// URL, like https://203.0.113.7:9443${INJECT_PATH} (got "${values.url}")`);
    const listen = parseListen(values.listen ?? DEFAULT_LISTEN);
    const names = values['dns-name'] ?? [DEFAULT_DNS_NAME];
    for (const n of names) {
      if (isIP(n) === 0 && !/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(n)) throw new UsageError(`--dns-name "${n}" is not a DNS name or IP address`);
    }
    const inject = resolveInjectOptions(values);

    // The serving certificate, and the CA the apiserver must trust.
    let cert: string;
    let key: string;
    let caPem: string;
    let caSource: string;
    if (values.cert !== undefined) {
      [cert, key] = await Promise.all([readPem(values.cert, '--cert'), readPem(values.key!, '--key')]);
      caSource = values['ca-cert'] ?? values.cert;
      caPem = values['ca-cert'] !== undefined ? await readPem(values['ca-cert'], '--ca-cert') : cert;
    } else {
      const dir = values['cert-dir'] ?? DEFAULT_CERT_DIR;
      let made;
      try {
        made = await loadOrCreateServingCertificate(dir, names);
      } catch (e) {
        throw new CliError([`serving certificate in ${dir}: ${(e as Error).message}`]);
      }
      ({ certPem: cert, keyPem: key, caPem } = made);
      caSource = made.caFile;
      if (made.action !== 'reused') io.err.write(`wasmesh inject-webhook: ${made.action === 'created' ? 'made a CA and' : 'made'} a serving certificate for ${names.join(', ')} in ${dir}\n`);
    }

    if (values['print-config']) {
      const service = values.url === undefined ? serviceOf(names[0]!) : undefined;
      const url = values.url ?? (service ? undefined : `https://${names[0]}:${listen.port}${INJECT_PATH}`);
      io.out.write(stringify(webhookConfiguration({ caPem, ...(service ? { service } : { url: url! }) }), { lineWidth: 0 }));
      return 0;
    }

    let server;
    try {
      server = await startInjectWebhook({ host: listen.host, port: listen.port, cert, key, inject, log: (line) => io.err.write(`${line}\n`) });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new CliError([`cannot serve on ${listen.host}:${listen.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`]);
    }
    const hostText = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    io.out.write(
      `wasmesh inject-webhook: serving https://${hostText}:${server.port}${INJECT_PATH} for ${names.join(', ')}\n` +
        `CA bundle: ${caSource}\n` +
        `caBundle: ${Buffer.from(caPem).toString('base64')}\n` +
        `(wasmesh inject-webhook --print-config prints the MutatingWebhookConfiguration with it)\n`,
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      if (io.signal) {
        if (io.signal.aborted) return resolve();
        io.signal.addEventListener('abort', stop, { once: true });
      } else {
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      }
    });
    await server.close();
    return 0;
  });
}

async function readPem(file: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError([`${flag} ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  if (!text.includes('-----BEGIN ')) throw new CliError([`${flag} ${file}: not PEM`]);
  return text;
}
