// The reference for the mesh path: two nginx (Debian's), one as the client-side proxy and one as the
// server side, with mutual TLS between them, as two Envoy sidecars would be. Certificates are made at
// run time with openssl: a throwaway CA, a server certificate and a client certificate, ECDSA P-256
// like the wasmesh CA's, with the SPIFFE ids the sidecars would carry. The client side verifies the
// server (name and CA) and presents its certificate; the server side requires and verifies it. Both
// keep connections to their upstream alive, and the client side reuses TLS sessions.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { Children } from '../../../proxy-host/bench/support/children.ts';
import { startNginx } from '../../../proxy-host/bench/support/nginx.ts';
import { freePort, type Service } from '../../../proxy-host/bench/support/services.ts';

export const SERVER_NAME = 'bench-app.default.svc.cluster.local';

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function openssl(bin: string, dir: string, args: string[]): void {
  const r = spawnSync(bin, args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
}

/** A CA and two leaf certificates (server: DNS name + SPIFFE id; client: SPIFFE id), one day long. */
export function makePki(opensslBin: string, dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(opensslBin, dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/O=wasmesh-bench/CN=bench CA']);
  const leaf = (name: string, san: string, usage: string) => {
    openssl(opensslBin, dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=wasmesh-bench/CN=${name}`]);
    const ext = path.join(dir, `${name}.ext`);
    writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
    openssl(opensslBin, dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', ext]);
  };
  leaf('server', `DNS:${SERVER_NAME},URI:spiffe://cluster.local/ns/default/sa/bench-app`, 'serverAuth');
  leaf('client', 'URI:spiffe://cluster.local/ns/default/sa/bench-client', 'clientAuth');
  const f = (n: string) => path.join(dir, n);
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

const UPSTREAM_KEEPALIVE = `    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;`;

export interface NginxPair {
  client: Service;
  server: Service;
}

export async function startNginxPair(children: Children, bin: string, pki: Pki, dir: string, appPort: number, cpu: string | undefined): Promise<NginxPair> {
  const serverPort = await freePort();
  const server = await startNginx(children, {
    bin,
    name: 'nginx server side',
    dir: path.join(dir, 'server'),
    port: serverPort,
    cpu,
    http: `  upstream app {
    server 127.0.0.1:${appPort};
${UPSTREAM_KEEPALIVE}
  }
  server {
    listen 127.0.0.1:${serverPort} ssl;
    ssl_certificate ${pki.serverCert};
    ssl_certificate_key ${pki.serverKey};
    ssl_client_certificate ${pki.ca};
    ssl_verify_client on;
    ssl_session_cache shared:SSL:1m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
  });
  const clientPort = await freePort();
  try {
    const client = await startNginx(children, {
      bin,
      name: 'nginx client side',
      dir: path.join(dir, 'client'),
      port: clientPort,
      cpu,
      http: `  upstream mesh_server {
    server 127.0.0.1:${serverPort};
${UPSTREAM_KEEPALIVE}
  }
  server {
    listen 127.0.0.1:${clientPort};
    location / {
      proxy_pass https://mesh_server;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_certificate ${pki.clientCert};
      proxy_ssl_certificate_key ${pki.clientKey};
      proxy_ssl_trusted_certificate ${pki.ca};
      proxy_ssl_verify on;
      proxy_ssl_name ${SERVER_NAME};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }`,
    });
    return { client, server };
  } catch (err) {
    await children.stop(server.cp);
    throw err;
  }
}

/**
 * Checks that the server side really demands a client certificate: a TLS client without one must be
 * refused (nginx answers 400 "No required SSL certificate was sent").
 */
export function refusesWithoutClientCert(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', servername: SERVER_NAME, ca: [readFileSync(ca, 'utf8')], agent: false, headers: { host: SERVER_NAME } }, (res) => {
      res.resume();
      if (res.statusCode === 400) resolve('a TLS client without a certificate gets 400 from the server side');
      else reject(new Error(`the nginx server side answered ${res.statusCode} to a client without a certificate: mTLS is not enforced`));
    });
    req.on('error', (err) => resolve(`a TLS client without a certificate is refused (${err.message})`));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}
