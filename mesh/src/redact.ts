// A ProxyConfig as it may be shown (the proxy's /config_dump): the PEM of TLSSecrets a gateway
// received (credentialName) replaced by their fingerprints. Everything else is left as it is.

import type { GatewayTlsConfig, ProxyConfig } from './proxy-config.ts';
import { sha256Fingerprint } from './tls-secret.ts';

function redactTls(t: GatewayTlsConfig): GatewayTlsConfig | (Omit<GatewayTlsConfig, 'credential'> & { credential: Record<string, string> }) {
  if (!t.credential) return t;
  const { name, cert, key, cacert, sha256 } = t.credential;
  return {
    ...t,
    credential: { name, sha256, cert: sha256Fingerprint(cert), key: `[redacted] ${sha256Fingerprint(key)}`, ...(cacert !== undefined ? { cacert: sha256Fingerprint(cacert) } : {}) },
  };
}

export function redactProxyConfig(config: ProxyConfig): ProxyConfig {
  if (!config.gateway || !config.gateway.listeners.some((l) => l.tls?.some((t) => t.credential))) return config;
  return {
    ...config,
    gateway: { ...config.gateway, listeners: config.gateway.listeners.map((l) => (l.tls ? { ...l, tls: l.tls.map(redactTls) as GatewayTlsConfig[] } : l)) },
  };
}
