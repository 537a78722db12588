// The orchestrator's HTTP errors, one shape for every status:
//   { "code": "WASMESH_ORCH_...", "errors": [{ "document": ..., "path": ..., "message": ... }] }
// `document` names what the error is about (a resource "VirtualService default/reviews (apply#3)",
// a module "module add-header@1.0.0", or "request"); `path` is a JSON pointer into it ("" for the
// whole); `message` says what is wrong and, where it can, what to do.

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ConflictError } from '../store/types.ts';
import { StoreInputError } from '../store/common.ts';
import { logInternalError, REQUEST_ID_HEADER } from './request-ids.ts';

export interface ApiError {
  document: string;
  path: string;
  message: string;
  /** The line of the field in a YAML request body, when the error is about one. */
  line?: number;
  /** Its 1-based column (the field's key), when known. */
  column?: number;
}

export const ErrorCode = {
  Invalid: 'WASMESH_ORCH_INVALID',
  BadRequest: 'WASMESH_ORCH_BAD_REQUEST',
  Unauthenticated: 'WASMESH_ORCH_UNAUTHENTICATED',
  Forbidden: 'WASMESH_ORCH_FORBIDDEN',
  NotFound: 'WASMESH_ORCH_NOT_FOUND',
  Conflict: 'WASMESH_ORCH_CONFLICT',
  AlreadyExists: 'WASMESH_ORCH_ALREADY_EXISTS',
  BadModule: 'WASMESH_ORCH_BAD_MODULE',
  TooLarge: 'WASMESH_ORCH_TOO_LARGE',
  Internal: 'WASMESH_ORCH_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class HttpError extends Error {
  readonly statusCode: number;
  readonly code: ErrorCode;
  readonly errors: ApiError[];
  constructor(statusCode: number, code: ErrorCode, errors: ApiError[] | string) {
    const list = typeof errors === 'string' ? [{ document: 'request', path: '', message: errors }] : errors;
    super(list.map((e) => e.message).join('; '));
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.code = code;
    this.errors = list;
  }
}

export function errorBody(code: string, errors: ApiError[]): { code: string; errors: ApiError[] } {
  return { code, errors };
}

/**
 * Fastify's `frameworkErrors`: URLs it cannot route (bad percent-encoding, over-long parameters)
 * answered in the shape above, with the request id (these never reach the hooks).
 */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  reply.header(REQUEST_ID_HEADER, request.id).code(status).send(errorBody(ErrorCode.BadRequest, [{ document: 'request', path: '', message: err.message }]));
}

/** Installs the error and not-found handlers that give every failure the shape above. */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | HttpError | Error, request: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send(errorBody(err.code, err.errors));
    if (err instanceof ConflictError) return reply.code(409).send(errorBody(ErrorCode.Conflict, [{ document: 'request', path: '', message: err.message }]));
    if (err instanceof StoreInputError) return reply.code(400).send(errorBody(ErrorCode.Invalid, [{ document: 'request', path: '', message: err.message }]));
    const fe = err as FastifyError;
    if (fe.validation) {
      const where = fe.validationContext ?? 'request';
      const errors = fe.validation.map((v) => {
        const field = (v.params as { missingProperty?: string; additionalProperty?: string }).missingProperty ?? (v.params as { additionalProperty?: string }).additionalProperty;
        return { document: where, path: `${v.instancePath}${field ? `/${field}` : ''}`, message: v.message ?? 'invalid' };
      });
      return reply.code(400).send(errorBody(ErrorCode.BadRequest, errors));
    }
    const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
    if (status === 413) return reply.code(413).send(errorBody(ErrorCode.TooLarge, [{ document: 'request', path: '', message: fe.message }]));
    if (status >= 400 && status < 500) return reply.code(status).send(errorBody(ErrorCode.BadRequest, [{ document: 'request', path: '', message: fe.message }]));
    // Whatever went wrong stays in the log (with the stack); the caller gets the id to find it.
    logInternalError(request, err);
    return reply.code(500).send(errorBody(ErrorCode.Internal, [{ document: 'request', path: '', message: `internal error, request id ${request.id} (see the orchestrator log)` }]));
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody(ErrorCode.NotFound, [{ document: 'request', path: '', message: `no route ${request.method} ${request.url.split('?')[0]}` }]));
  });
}
