// RequestAuthentication documents -> the pluginConfig of the authn filter (filters/authn), plus the
// clusters its remote key sets are fetched from. Reference: filters/authn/README.md.
//
// Istio's semantics, kept here:
//   - the policies that apply to a workload are those of its namespace whose selector matches it, and
//     those of the root namespace (istio-system) whose selector matches it, and on a gateway proxy those
//     whose targetRefs name a Gateway it serves (target-refs.ts); their jwtRules add up;
//   - a rule without any location reads `Authorization: Bearer <token>` and `?access_token=`;
//   - jwksUri is fetched by the proxy itself (Envoy's remote_jwks; Istio's istiod can fetch it instead,
//     wasmesh always lets the proxy do it) through a cluster for the URI's host: the service's own
//     cluster when a ServiceEntry declares the host (so mesh mTLS and DestinationRules apply), else a
//     cluster with the host as its DNS endpoint; https adds TLS (the system's roots, SNI the host).
// A rule with neither jwks nor jwksUri discovers its key set from the issuer, as istiod does (OpenID
// Connect Discovery: `<issuer>/.well-known/openid-configuration`, then its jwks_uri). The proxy does
// it, through the same callout, cluster and caching as a jwksUri (the filter's remoteJwks with
// `discovery`); the jwks_uri must be on the issuer's origin (the cluster is chosen from the issuer
// here, and the filter cannot make clusters), which the filter checks and logs when it is not.

import type { ClusterConfig, WorkloadIdentity } from '../proxy-config.ts';
import { namespaceOf, type ConfigDocument, type JWTRule, type RequestAuthentication } from '../documents.ts';
import type { ClusterTable } from './clusters.ts';
import { policySelector } from './target-refs.ts';
import { parseDuration } from './durations.ts';

/** Istio's default JWKS fetch timeout. */
export const DEFAULT_JWKS_TIMEOUT_MS = 5_000;

export interface AuthnRuleConfig {
  issuer: string;
  audiences?: string[];
  jwks?: string;
  remoteJwks?: { uri: string; cluster: string; authority: string; path: string; timeoutMs: number; discovery?: true };
  fromHeaders?: { name: string; prefix?: string }[];
  fromParams?: string[];
  fromCookies?: string[];
  forwardOriginalToken?: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders?: { header: string; claim: string }[];
}

/** What filters/authn reads (see its README); timings are left to the filter's defaults. */
export interface AuthnFilterConfig {
  rules: AuthnRuleConfig[];
}

type Report = (path: string, message: string) => void;

/** The checks a schema cannot express; paths are JSON pointers into the document. */
export function checkRequestAuthentication(ra: RequestAuthentication, report: Report): void {
  const spec = ra.spec;
  (spec.jwtRules ?? []).forEach((rule, i) => {
    const at = `/spec/jwtRules/${i}`;
    if (rule.jwks !== undefined && rule.jwksUri !== undefined) report(at, 'jwksUri and jwks are mutually exclusive');
    if (rule.jwks === undefined && rule.jwksUri === undefined) {
      const problem = jwksUriProblem(rule.issuer);
      if (problem) {
        report(`${at}/issuer`, `with neither jwksUri nor jwks the key set is discovered from the issuer (OpenID Connect: <issuer>/.well-known/openid-configuration), so the issuer must be an http or https URL: ${problem}`);
      } else if (/[?#]/.test(rule.issuer)) {
        report(`${at}/issuer`, `an issuer whose key set is discovered (OpenID Connect) has no query or fragment: ${JSON.stringify(rule.issuer)}`);
      }
    }
    if (rule.jwksUri !== undefined) {
      const problem = jwksUriProblem(rule.jwksUri);
      if (problem) report(`${at}/jwksUri`, problem);
    }
    if (rule.jwks !== undefined) {
      const problem = jwksProblem(rule.jwks);
      if (problem) report(`${at}/jwks`, problem);
    }
  });
}

function jwksUriProblem(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return `"${uri}" is not a URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${uri}": only http and https are fetched`;
  if (url.username || url.password) return `"${uri}": credentials in the URL are not supported`;
  if (!url.hostname) return `"${uri}" has no host`;
  return undefined;
}

/** The same checks the filter makes when it configures (so a bad set fails at apply, not in the proxy). */
function jwksProblem(text: string): string | undefined {
  let set: unknown;
  try {
    set = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  if (typeof set !== 'object' || set === null || Array.isArray(set)) return 'must be a JSON Web Key Set object ({"keys": [...]})';
  const keys = (set as { keys?: unknown }).keys ?? [set];
  if (!Array.isArray(keys)) return '"keys" must be an array';
  const usable = keys.filter((k) => {
    if (typeof k !== 'object' || k === null) return false;
    const j = k as Record<string, unknown>;
    if ('d' in j || 'k' in j || (j.use !== undefined && j.use !== 'sig')) return false;
    if (j.kty === 'RSA') return typeof j.n === 'string' && typeof j.e === 'string';
    if (j.kty === 'EC') return ['P-256', 'P-384', 'P-521'].includes(j.crv as string) && typeof j.x === 'string' && typeof j.y === 'string';
    if (j.kty === 'OKP') return ['Ed25519', 'Ed448'].includes(j.crv as string) && typeof j.x === 'string';
    return false;
  });
  if (usable.length === 0) return 'has no usable signature key (public RSA, EC P-256/384/521, Ed25519 or Ed448 keys; HMAC keys are never accepted)';
  return undefined;
}

/**
 * RequestAuthentications that apply to the workload (selector, or on a gateway proxy targetRefs to a
 * Gateway it serves: target-refs.ts), sorted by namespace and name.
 */
export function selectRequestAuthentications(documents: readonly ConfigDocument[], workload: WorkloadIdentity): RequestAuthentication[] {
  const out: RequestAuthentication[] = [];
  const applies = policySelector(documents, workload);
  for (const doc of documents) {
    const v = doc.value as RequestAuthentication;
    if (!v || v.kind !== 'RequestAuthentication' || !v.spec) continue;
    if (!applies(v)) continue;
    out.push(v);
  }
  const key = (r: RequestAuthentication): string => `${namespaceOf(r)}/${r.metadata.name}`;
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** The cluster a jwksUri is fetched through (created in `clusters` when new) and the request's target. */
export function jwksCluster(uri: string, clusters: ClusterTable): { cluster: string; authority: string; path: string } {
  const url = new URL(uri);
  const https = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : https ? 443 : 80;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const authority = url.port ? `${url.hostname}:${url.port}` : url.hostname;
  const path = `${url.pathname || '/'}${url.search}`;
  const name = clusters.ensure(host, port);
  if (!https) return { cluster: name, authority, path };
  // https: the same cluster, with TLS to the server unless the mesh already speaks TLS to it.
  const base = clusters.get(name)!;
  if (base.tls !== undefined && base.tls.mode !== 'DISABLE' && !base.tls.auto) return { cluster: name, authority, path };
  const tlsName = `jwks|${port}||${host}`;
  const tlsCluster: ClusterConfig = { ...base, name: tlsName, tls: { mode: 'SIMPLE', subjectAltNames: [], sni: host } };
  clusters.add(tlsCluster);
  return { cluster: tlsName, authority, path };
}

/** OpenID Connect Discovery 1.0, 4: the issuer without a trailing "/", then /.well-known/openid-configuration. */
export function discoveryUri(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

function ruleConfig(rule: JWTRule, clusters: ClusterTable): AuthnRuleConfig {
  const out: AuthnRuleConfig = { issuer: rule.issuer };
  if (rule.audiences && rule.audiences.length > 0) out.audiences = [...rule.audiences];
  if (rule.jwks !== undefined) out.jwks = rule.jwks;
  const timeoutMs = rule.timeout !== undefined ? parseDuration(rule.timeout) : DEFAULT_JWKS_TIMEOUT_MS;
  if (rule.jwksUri !== undefined) {
    const target = jwksCluster(rule.jwksUri, clusters);
    out.remoteJwks = { uri: rule.jwksUri, ...target, timeoutMs };
  } else if (rule.jwks === undefined) {
    const uri = discoveryUri(rule.issuer);
    out.remoteJwks = { uri, ...jwksCluster(uri, clusters), timeoutMs, discovery: true };
  }
  const headers = rule.fromHeaders ?? [];
  const params = rule.fromParams ?? [];
  const cookies = rule.fromCookies ?? [];
  if (headers.length + params.length + cookies.length === 0) {
    // Istio's default locations, written out so the filter's configuration says what it reads.
    out.fromHeaders = [{ name: 'authorization', prefix: 'Bearer ' }];
    out.fromParams = ['access_token'];
  } else {
    if (headers.length > 0) out.fromHeaders = headers.map((h) => ({ name: h.name.toLowerCase(), ...(h.prefix ? { prefix: h.prefix } : {}) }));
    if (params.length > 0) out.fromParams = [...params];
    if (cookies.length > 0) out.fromCookies = [...cookies];
  }
  if (rule.forwardOriginalToken) out.forwardOriginalToken = true;
  if (rule.outputPayloadToHeader) out.outputPayloadToHeader = rule.outputPayloadToHeader.toLowerCase();
  if (rule.outputClaimToHeaders && rule.outputClaimToHeaders.length > 0) {
    out.outputClaimToHeaders = rule.outputClaimToHeaders.map((c) => ({ header: c.header.toLowerCase(), claim: c.claim }));
  }
  return out;
}

/**
 * The authn filter's configuration for the policies that apply to a workload (already selected and
 * validated), or undefined when none has a rule. Adds the clusters remote key sets need to `clusters`.
 */
export function authnFilterConfig(policies: readonly RequestAuthentication[], clusters: ClusterTable): AuthnFilterConfig | undefined {
  const rules: AuthnRuleConfig[] = [];
  for (const p of policies) for (const r of p.spec.jwtRules ?? []) rules.push(ruleConfig(r, clusters));
  return rules.length > 0 ? { rules } : undefined;
}
