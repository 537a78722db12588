// Starts a proxy on free loopback ports with a config, for tests; always stop it.
import type { ProxyConfig } from '../../../mesh/src/proxy-config.ts';
import { Proxy } from '../../src/proxy.ts';

export async function startProxy(config: ProxyConfig, appPort?: number): Promise<Proxy> {
  return Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off' }, config);
}
