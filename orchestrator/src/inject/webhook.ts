// Sidecar injection as a Kubernetes mutating admission webhook (admission.k8s.io/v1), Istio's
// sidecar-injector: POST /inject takes an AdmissionReview and answers one whose response allows
// the object and carries a JSON Patch (base64) adding the sidecar. GET /healthz answers "ok".
//
// The webhook never blocks an object: one it cannot inject is allowed unchanged with a warning
// (which kubectl prints), so a webhook bug or a malformed annotation costs a sidecar, not a pod.
// Only a request that is not an AdmissionReview v1 at all gets an error status (400), since the
// apiserver cannot have sent it.
//
// reviewAdmission is the pure part (body in, status and body out); startInjectWebhook serves it
// over HTTPS; webhookConfiguration is the MutatingWebhookConfiguration that points at it.

import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPatch } from './json-patch.ts';
import { InjectError, injectResource } from './mutate.ts';
import type { InjectOptions } from './sidecar.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const INJECT_PATH = '/inject';
/** Larger than any object the apiserver stores (etcd's default request limit is 1.5 MiB). */
export const MAX_REVIEW_BYTES = 8 * 1024 * 1024;
export const BAD_REQUEST_CODE = 'WASMESH_ORCH_BAD_REQUEST';

export interface ReviewAnswer {
  status: number;
  body: unknown;
  /** One line for the webhook's log. */
  summary: string;
}

function badRequest(path: string, message: string): ReviewAnswer {
  return { status: 400, body: { code: BAD_REQUEST_CODE, errors: [{ document: 'AdmissionReview', path, message }] }, summary: `400 ${message}` };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Answers one AdmissionReview request body. */
export function reviewAdmission(body: string, opts: InjectOptions): ReviewAnswer {
  let review: unknown;
  try {
    review = JSON.parse(body);
  } catch (e) {
    return badRequest('', `the body is not JSON (${(e as Error).message}): send an AdmissionReview`);
  }
  if (!isObject(review)) return badRequest('', 'the body must be a JSON object: an AdmissionReview');
  if (review.kind !== 'AdmissionReview' || review.apiVersion !== ADMISSION_API_VERSION) {
    return badRequest(
      review.kind !== 'AdmissionReview' ? '/kind' : '/apiVersion',
      `expected an AdmissionReview ${ADMISSION_API_VERSION}, got ${JSON.stringify(review.kind ?? null)} ${JSON.stringify(review.apiVersion ?? null)} (the webhook configuration must say admissionReviewVersions: [v1])`,
    );
  }
  const request = review.request;
  if (!isObject(request)) return badRequest('/request', 'request is missing: an AdmissionReview sent to a webhook has a request');
  if (typeof request.uid !== 'string' || request.uid === '') return badRequest('/request/uid', 'request.uid is missing: the response must echo it');

  const uid = request.uid;
  const namespace = typeof request.namespace === 'string' && request.namespace !== '' ? request.namespace : undefined;
  const operation = typeof request.operation === 'string' ? request.operation : '?';
  const kind = isObject(request.kind) && typeof request.kind.kind === 'string' ? request.kind.kind : isObject(request.object) && typeof request.object.kind === 'string' ? request.object.kind : '?';
  const what = `${operation} ${kind} ${namespace ? `${namespace}/` : ''}${typeof request.name === 'string' && request.name ? request.name : isObject(request.object) && isObject(request.object.metadata) ? String(request.object.metadata.name ?? request.object.metadata.generateName ?? '') : ''}`;
  const allow = (extra: Record<string, unknown>, summary: string): ReviewAnswer => ({
    status: 200,
    body: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, allowed: true, ...extra } },
    summary: `${what}: ${summary}`,
  });

  if (!isObject(request.object)) {
    return allow({ warnings: ['wasmesh: no sidecar injected: the request has no object'] }, 'no object, allowed unchanged');
  }
  // The apiserver sends the object's kind in request.kind; the object may lack apiVersion/kind.
  const object: Record<string, unknown> = { ...request.object };
  if (object.kind === undefined && isObject(request.kind)) {
    object.kind = request.kind.kind;
    object.apiVersion = request.kind.group ? `${String(request.kind.group)}/${String(request.kind.version)}` : request.kind.version;
  }
  let result;
  try {
    result = injectResource(object, opts, namespace ? { namespace } : {});
  } catch (e) {
    const message = e instanceof InjectError ? `${e.message}${e.path ? ` (at ${e.path})` : ''}` : `internal error: ${(e as Error).message}`;
    return allow({ warnings: [`wasmesh: no sidecar injected: ${message}`] }, `not injected: ${message}`);
  }
  const warnings = result.templates.flatMap((t) => t.warnings).map((w) => `wasmesh: ${w}`);
  const extra: Record<string, unknown> = warnings.length > 0 ? { warnings } : {};
  if (!result.changed) {
    const why = result.templates.map((t) => t.reason).filter(Boolean).join('; ') || `kind ${kind} is not injected`;
    return allow(extra, `unchanged (${why})`);
  }
  const patch = createPatch(object, result.object);
  return allow(
    { ...extra, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') },
    `injected (workload ${result.templates.map((t) => t.workload).filter(Boolean).join(', ')}, ${patch.length} patch operations)`,
  );
}

export interface InjectWebhookOptions {
  host: string;
  /** 0 picks a free port (see the returned port). */
  port: number;
  /** PEM serving certificate (chain) and key. */
  cert: string;
  key: string;
  inject: InjectOptions;
  /** Called with one line per request. */
  log?: (line: string) => void;
}

export interface RunningInjectWebhook {
  readonly server: Server;
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves POST /inject and GET /healthz over HTTPS until close(). */
export async function startInjectWebhook(opts: InjectWebhookOptions): Promise<RunningInjectWebhook> {
  const server = createServer({ cert: opts.cert, key: opts.key, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res, opts).catch((err: unknown) => {
      opts.log?.(`inject webhook: ${(err as Error).message}`);
      if (!res.headersSent) send(res, 500, { code: 'WASMESH_ORCH_INTERNAL', errors: [{ document: 'request', path: '', message: (err as Error).message }] });
      else res.destroy();
    });
  });
  // The apiserver gives a webhook 10 s by default (timeoutSeconds); a stuck client gets less.
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    host: opts.host,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: InjectWebhookOptions): Promise<void> {
  // The apiserver appends ?timeout=10s to the configured path.
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendMethodNotAllowed(res, 'GET');
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (path !== INJECT_PATH) {
    send(res, 404, { code: 'WASMESH_ORCH_NOT_FOUND', errors: [{ document: 'request', path: '', message: `no route ${req.method} ${path}: POST ${INJECT_PATH} takes an AdmissionReview, GET /healthz answers ok` }] });
    return;
  }
  if (req.method !== 'POST') return sendMethodNotAllowed(res, 'POST');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REVIEW_BYTES) {
      send(res, 413, { code: 'WASMESH_ORCH_TOO_LARGE', errors: [{ document: 'AdmissionReview', path: '', message: `the body is larger than ${MAX_REVIEW_BYTES} bytes` }] });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  }
  const answer = reviewAdmission(Buffer.concat(chunks).toString('utf8'), opts.inject);
  opts.log?.(`inject: ${answer.summary}`);
  send(res, answer.status, answer.body);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function sendMethodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  send(res, 405, { code: 'WASMESH_ORCH_BAD_REQUEST', errors: [{ document: 'request', path: '', message: `use ${allow}` }] });
}

// ---------------------------------------------------------------------------------------------
// MutatingWebhookConfiguration

export const INJECTION_NAMESPACE_LABEL = 'wasmesh-injection';

export interface WebhookConfigOptions {
  /** PEM CA certificate(s) the apiserver trusts the webhook's serving certificate with. */
  caPem: string;
  /** Either a Service in the cluster... */
  service?: { name: string; namespace: string; port: number };
  /** ...or a URL the apiserver can reach (https://host:port/inject). */
  url?: string;
  name?: string;
}

/**
 * The MutatingWebhookConfiguration for this webhook: Pod CREATE in namespaces labelled
 * wasmesh-injection=enabled, failurePolicy Ignore (pods are created even when the webhook is down),
 * no side effects, AdmissionReview v1.
 */
export function webhookConfiguration(o: WebhookConfigOptions): Record<string, unknown> {
  const clientConfig: Record<string, unknown> = o.service
    ? { service: { name: o.service.name, namespace: o.service.namespace, path: INJECT_PATH, port: o.service.port } }
    : { url: o.url };
  clientConfig.caBundle = Buffer.from(o.caPem).toString('base64');
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: o.name ?? 'wasmesh-sidecar-injector', labels: { app: 'wasmesh-inject' } },
    webhooks: [
      {
        name: 'sidecar-injector.wasmesh.io',
        admissionReviewVersions: ['v1'],
        clientConfig,
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
        namespaceSelector: { matchLabels: { [INJECTION_NAMESPACE_LABEL]: 'enabled' } },
        failurePolicy: 'Ignore',
        sideEffects: 'None',
        matchPolicy: 'Equivalent',
        reinvocationPolicy: 'Never',
        timeoutSeconds: 10,
      },
    ],
  };
}
