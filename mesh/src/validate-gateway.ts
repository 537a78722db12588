// Checks of Gateways and of VirtualService `gateways` that a schema cannot express. Called by
// validateDocuments (validate.ts) for documents that passed their schema; every problem names its
// field by JSON pointer.

import { isRecord, namespaceOf, resourceRef, type ConfigDocument, type Gateway, type GatewayTLSProtocol, type VirtualService } from './documents.ts';
import { checkTerminatedTls } from './validate-gateway-tls.ts';
import type { TLSSecret } from './documents.ts';
import { MESH_GATEWAY, SERVED_PROTOCOLS, gatewayRef, hostIntersection, listenerProtocol, parseServerHost } from './translate/gateways.ts';

type Report = (path: string, message: string) => void;

const VERSION_ORDER: Readonly<Record<GatewayTLSProtocol, number>> = { TLS_AUTO: 0, TLSV1_0: 10, TLSV1_1: 11, TLSV1_2: 12, TLSV1_3: 13 };

export function checkGateway(gateway: Gateway, report: Report, secrets: ReadonlyMap<string, TLSSecret> = new Map()): void {
  const byPort = new Map<number, { protocol: string; bind: string | undefined; index: number; sni: string[] }>();
  gateway.spec.servers.forEach((server, i) => {
    const at = `/spec/servers/${i}`;
    const protocol = server.port.protocol;
    const tls = server.tls;
    if (!SERVED_PROTOCOLS.has(protocol)) {
      report(`${at}/port/protocol`, `protocol ${protocol} is not served by wasmesh gateways yet: use HTTP, HTTP2, GRPC, HTTPS, TCP or TLS`);
      return;
    }
    const passthrough = (protocol === 'HTTPS' || protocol === 'TLS') && tls?.mode === 'PASSTHROUGH';
    if (passthrough) {
      // The gateway only reads the ClientHello: certificates and TLS settings would do nothing.
      for (const field of ['serverCertificate', 'privateKey', 'credentialName', 'caCertificates', 'minProtocolVersion', 'maxProtocolVersion', 'cipherSuites', 'subjectAltNames'] as const) {
        if (tls![field] !== undefined) report(`${at}/tls/${field}`, `${field} does nothing with tls mode PASSTHROUGH: the gateway passes TLS through to the destination, which holds the certificate`);
      }
      if (tls!.httpsRedirect) report(`${at}/tls/httpsRedirect`, 'httpsRedirect belongs on an HTTP server (it redirects to https)');
    } else if (protocol === 'TLS') {
      if (!tls || tls.mode === undefined) report(`${at}/tls/mode`, 'a TLS server needs tls.mode: PASSTHROUGH (routed by SNI with VirtualService tls rules)');
      else report(`${at}/tls/mode`, `tls mode ${tls.mode} on a TLS server is not served by wasmesh gateways yet: use PASSTHROUGH (TLS termination with tcp routes is not done)`);
    } else if (protocol === 'HTTPS') {
      if (!tls) {
        report(`${at}/tls`, 'an HTTPS server needs tls (mode SIMPLE or MUTUAL with a credentialName or serverCertificate and privateKey files, or PASSTHROUGH)');
      } else {
        checkTerminatedTls(tls, at, secrets, report);
        if (tls.httpsRedirect) report(`${at}/tls/httpsRedirect`, 'httpsRedirect belongs on an HTTP server (it redirects to https)');
      }
    } else if (tls) {
      for (const field of ['mode', 'serverCertificate', 'privateKey', 'credentialName', 'caCertificates'] as const) {
        if (tls[field] !== undefined) report(`${at}/tls/${field}`, `${field} needs protocol HTTPS or TLS (port ${server.port.number} is ${protocol}); on an HTTP port only httpsRedirect applies`);
      }
      if (protocol === 'TCP' && tls.httpsRedirect) report(`${at}/tls/httpsRedirect`, `httpsRedirect needs an HTTP server (port ${server.port.number} is TCP)`);
    }
    if (tls && !passthrough) {
      for (const field of ['minProtocolVersion', 'maxProtocolVersion'] as const) {
        const v = tls[field];
        if (v === 'TLSV1_0' || v === 'TLSV1_1') report(`${at}/tls/${field}`, `${v} is refused: it is insecure; use TLSV1_2 or TLSV1_3`);
      }
      const min = VERSION_ORDER[tls.minProtocolVersion ?? 'TLS_AUTO'];
      const max = VERSION_ORDER[tls.maxProtocolVersion ?? 'TLS_AUTO'];
      if (min > 0 && max > 0 && min > max) report(`${at}/tls/maxProtocolVersion`, `maxProtocolVersion ${tls.maxProtocolVersion} is below minProtocolVersion ${tls.minProtocolVersion}`);
    }
    const served = listenerProtocol(server);
    const sni = server.hosts.map((h) => parseServerHost(h, namespaceOf(gateway)).host);
    const prev = byPort.get(server.port.number);
    if (!prev) {
      byPort.set(server.port.number, { protocol: served, bind: server.bind, index: i, sni });
      return;
    }
    if (prev.protocol !== served) {
      report(`${at}/port/protocol`, `port ${server.port.number} is already ${prev.protocol} in servers[${prev.index}]: one port serves one protocol`);
    } else if (server.bind !== undefined && prev.bind !== undefined && server.bind !== prev.bind) {
      report(`${at}/bind`, `port ${server.port.number} is bound to ${prev.bind} in servers[${prev.index}]: one port has one address`);
    } else if (served === 'HTTPS') {
      // Servers sharing an HTTPS port are told apart by SNI: their hosts must not overlap.
      const clash = sni.find((h) => prev.sni.some((p) => hostIntersection(h, p) !== undefined));
      if (clash !== undefined) report(`${at}/hosts`, `host ${JSON.stringify(clash)} is already served on HTTPS port ${server.port.number} by servers[${prev.index}]: the certificate to use would be ambiguous`);
      prev.sni.push(...sni);
    }
  });
}

/**
 * `gateways` entries of a VirtualService (and of its tcp/tls matches): `mesh`, or a Gateway of the set
 * (`name` in the VirtualService's namespace, or `namespace/name`).
 */
export function checkVirtualServiceGateways(vs: VirtualService, documents: readonly ConfigDocument[], report: Report): void {
  const known = new Set<string>();
  for (const doc of documents) {
    const ref = resourceRef(doc.value);
    if (ref && ref.kind === 'Gateway' && isRecord((doc.value as { spec?: unknown }).spec)) known.add(`${ref.namespace}/${ref.name}`);
  }
  const ns = namespaceOf(vs);
  const checkList = (list: readonly string[], at: string): void => {
    list.forEach((entry, i) => {
      if (entry === MESH_GATEWAY) return;
      const parts = entry.split('/');
      if (entry === '' || parts.length > 2 || parts.some((p) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p))) {
        report(`${at}/${i}`, `invalid gateway ${JSON.stringify(entry)}: use "mesh", a Gateway name, or namespace/name`);
        return;
      }
      const ref = gatewayRef(entry, ns);
      if (!known.has(ref)) {
        const names = [...known].sort();
        report(`${at}/${i}`, `unknown gateway ${JSON.stringify(entry)}: no Gateway ${ref}${names.length > 0 ? ` (Gateways: ${names.join(', ')})` : ''}; "mesh" means the sidecars`);
      }
    });
  };
  (vs.spec.http ?? []).forEach((rule, r) => (rule.match ?? []).forEach((m, j) => m.gateways && checkList(m.gateways, `/spec/http/${r}/match/${j}/gateways`)));
  for (const kind of ['tcp', 'tls'] as const) {
    (vs.spec[kind] ?? []).forEach((rule, r) => (rule.match ?? []).forEach((m, j) => m.gateways && checkList(m.gateways, `/spec/${kind}/${r}/match/${j}/gateways`)));
  }
  const gateways = vs.spec.gateways;
  if (!gateways) return;
  checkList(gateways, '/spec/gateways');
  // A fault needs its rule to reach the sidecars: through a match naming mesh, or (matches without
  // gateways, or no matches) through the VirtualService's own gateways.
  if (gateways.length === 0) return;
  (vs.spec.http ?? []).forEach((h, i) => {
    if (h.fault === undefined) return;
    const matches = h.match ?? [];
    const reachesMesh =
      matches.length === 0 ? gateways.includes(MESH_GATEWAY) : matches.some((m) => (m.gateways && m.gateways.length > 0 ? m.gateways : gateways).includes(MESH_GATEWAY));
    if (!reachesMesh) report(`/spec/http/${i}/fault`, 'faults are injected by sidecars only: on a rule bound to gateways alone it would do nothing (add "mesh" to gateways, or move the fault)');
  });
}
