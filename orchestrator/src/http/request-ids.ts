// Request ids: every request has one (Fastify's request.id), taken from the caller's `x-request-id`
// when it is well-formed and made up otherwise, and every answer carries it back in `x-request-id`.
// A 5xx answer's body names the id and the log line for it has the id, the method, the URL and the
// error, so a user's report ("internal error, request id X") leads to the stack.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export const REQUEST_ID_HEADER = 'x-request-id';

/** What we accept from callers: short, printable, nothing a log line or a header could be split on. */
const WELL_FORMED = /^[A-Za-z0-9._:@+=/-]{1,128}$/;

/** Fastify's genReqId: the caller's id if well-formed, else a fresh UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && WELL_FORMED.test(given) ? given : randomUUID();
}

// Requests whose 5xx the error handler has logged (with the error), so the catch-all below does not
// log them twice.
const logged = new WeakSet<IncomingMessage>();

/** Logs an unexpected error of a request: the id (pino adds it), method, URL and the error with its stack. */
export function logInternalError(request: FastifyRequest, err: unknown): void {
  logged.add(request.raw);
  request.log.error({ err, method: request.method, url: request.url }, `internal error answering ${request.method} ${request.url}`);
}

/**
 * Echoes the id on every answer (set on the raw response, so hijacked streams carry it too) and
 * logs every 5xx answer that did not come from a thrown error (a route answering 503, say).
 */
export function installRequestIds(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    reply.raw.setHeader(REQUEST_ID_HEADER, request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode >= 500 && !logged.has(request.raw)) {
      request.log.error({ method: request.method, url: request.url, status: reply.statusCode }, `answered ${reply.statusCode} to ${request.method} ${request.url}`);
    }
  });
}
