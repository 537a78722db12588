// The certificate rpcs of AggregatedDiscoveryService (discovery.proto): CreateCertificate signs a
// workload certificate for the caller's token binding; WatchTrustBundle streams the trust bundle,
// now and on every change. Registered by orchestrator/src/xds/server.ts.

import * as grpc from '@grpc/grpc-js';
import type { CertificateRequest, CertificateResponse, TrustBundleMessage, TrustBundleRequest } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { authenticate, type CallError, type TokenVerifier } from '../xds/auth.ts';
import { CertificateRequestError, type SignedCertificate, type WorkloadIdentityRef } from './ca.ts';

/** What the handlers need of a CertificateAuthority. */
export interface CertificateSigner {
  readonly trustDomain: string;
  signCsr(csrPem: string, identity: WorkloadIdentityRef, ttlMs?: number): Promise<SignedCertificate>;
  trustBundle(): string[];
  onTrustBundleChange(listener: (bundle: string[]) => void): () => void;
}

export type CertLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface CertificateHandlers {
  CreateCertificate: grpc.handleUnaryCall<CertificateRequest, CertificateResponse>;
  WatchTrustBundle: grpc.handleServerStreamingCall<TrustBundleRequest, TrustBundleMessage>;
  /** Ends every WatchTrustBundle stream (server shutdown). */
  close(): void;
}

/** Longest ttl_seconds accepted before the CA's own limit applies (keeps the ms value exact). */
const MAX_TTL_SECONDS = 10 ** 9;

export function certificateHandlers(ca: CertificateSigner | undefined, tokens: TokenVerifier | undefined, log: CertLog): CertificateHandlers {
  const watchers = new Set<grpc.ServerWritableStream<TrustBundleRequest, TrustBundleMessage>>();
  const noCa: CallError = { code: grpc.status.UNAVAILABLE, details: 'this orchestrator runs without a certificate authority' };
  const asServiceError = (e: CallError): Partial<grpc.ServiceError> => ({ code: e.code, details: e.details, message: e.details });

  const createCertificate: grpc.handleUnaryCall<CertificateRequest, CertificateResponse> = (call, callback) => {
    const auth = authenticate(call.metadata, tokens);
    if (!auth.ok) {
      log('warn', `certificate request from ${call.getPeer()} refused: ${auth.error.details}`);
      callback(asServiceError(auth.error));
      return;
    }
    const { namespace, serviceAccount } = auth.claims;
    if (namespace === undefined || serviceAccount === undefined) {
      callback(asServiceError({ code: grpc.status.PERMISSION_DENIED, details: 'workload certificates are issued to proxy tokens bound to a namespace and a service account; this token has no binding' }));
      return;
    }
    if (!ca) {
      callback(asServiceError(noCa));
      return;
    }
    const ttlSeconds = Number(call.request.ttl_seconds ?? 0);
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0 || ttlSeconds > MAX_TTL_SECONDS) {
      callback(asServiceError({ code: grpc.status.INVALID_ARGUMENT, details: `ttl_seconds must be a non-negative integer (got ${String(call.request.ttl_seconds)})` }));
      return;
    }
    const identity = { namespace, serviceAccount };
    ca.signCsr(call.request.csr ?? '', identity, ttlSeconds === 0 ? undefined : ttlSeconds * 1000).then(
      (signed) => {
        log('info', `issued a certificate for ${namespace}/${serviceAccount} to ${call.getPeer()}`);
        callback(null, { cert_chain: signed.certChainPem, trust_bundle: signed.trustBundlePem });
      },
      (err: unknown) => {
        if (err instanceof CertificateRequestError) {
          const code = err.reason === 'permission-denied' ? grpc.status.PERMISSION_DENIED : grpc.status.INVALID_ARGUMENT;
          log('warn', `certificate request for ${namespace}/${serviceAccount} from ${call.getPeer()} refused: ${err.message}`);
          callback(asServiceError({ code, details: err.message }));
          return;
        }
        log('error', `signing a certificate for ${namespace}/${serviceAccount} failed: ${err instanceof Error ? err.message : String(err)}`);
        callback(asServiceError({ code: grpc.status.INTERNAL, details: 'signing failed' }));
      },
    );
  };

  const watchTrustBundle: grpc.handleServerStreamingCall<TrustBundleRequest, TrustBundleMessage> = (call) => {
    const auth = authenticate(call.metadata, tokens);
    if (!auth.ok) {
      call.emit('error', auth.error);
      return;
    }
    if (!ca) {
      call.emit('error', noCa);
      return;
    }
    const send = (roots: string[]) => {
      if (!call.cancelled) call.write({ roots, trust_domain: ca.trustDomain });
    };
    watchers.add(call);
    const unsubscribe = ca.onTrustBundleChange(send);
    const end = () => {
      watchers.delete(call);
      unsubscribe();
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
    call.on('finish', end);
    send(ca.trustBundle());
  };

  return {
    CreateCertificate: createCertificate,
    WatchTrustBundle: watchTrustBundle,
    close() {
      for (const call of [...watchers]) {
        watchers.delete(call);
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'orchestrator shutting down' });
      }
    },
  };
}
