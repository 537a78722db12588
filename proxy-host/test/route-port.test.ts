// An http match's `port` on a sidecar: the port the app addressed, read from the Host header (the
// scheme's default without one). A service with two HTTP ports gets one default route per port, and a
// VirtualService match on a port takes only that port's requests.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { Proxy } from '../src/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const web: WorkloadIdentity = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
let api: TestServer;
let admin: TestServer;
let legacy: TestServer;
let proxy: Proxy;

function configFor(objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, web, { telemetry: false });
}

const entries = (): object[] => [
  {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'svc', namespace: 'default' },
    spec: {
      hosts: ['svc.example.com'],
      location: 'MESH_EXTERNAL',
      resolution: 'STATIC',
      ports: [
        { number: 80, name: 'http', protocol: 'HTTP' },
        { number: 9090, name: 'http-admin', protocol: 'HTTP' },
      ],
      endpoints: [{ address: '127.0.0.1', ports: { http: api.port, 'http-admin': admin.port } }],
    },
  },
  {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'legacy', namespace: 'default' },
    spec: { hosts: ['legacy.example.com'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1', ports: { http: legacy.port } }] },
  },
];

test.before(async () => {
  api = await startHttp1('api');
  admin = await startHttp1('admin');
  legacy = await startHttp1('legacy');
  proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, configFor(entries()));
});

test.after(async () => {
  await proxy?.stop(100);
  await Promise.all([api?.close(), admin?.close(), legacy?.close()]);
});

const upstreamOf = async (host: string): Promise<string> => {
  const res = await request(proxy.outboundPort, { path: '/', headers: { host } });
  return res.status === 200 ? (JSON.parse(res.body) as { upstream: string }).upstream : String(res.status);
};

test('two HTTP ports, no VirtualService: each port\'s default route takes the requests for it', async () => {
  assert.is(await upstreamOf('svc.example.com'), 'api', 'no port in Host: 80');
  assert.is(await upstreamOf('svc.example.com:80'), 'api');
  assert.is(await upstreamOf('svc.example.com:9090'), 'admin');
  assert.is(await upstreamOf('svc.example.com:7000'), '404', 'a port the service does not have');
});

test('a VirtualService match on port 9090 takes that port only', async () => {
  await proxy.applyConfig(
    configFor([
      ...entries(),
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'svc', namespace: 'default' },
        spec: {
          hosts: ['svc.example.com'],
          http: [
            { match: [{ port: 9090 }], route: [{ destination: { host: 'legacy.example.com', port: { number: 80 } } }] },
            { route: [{ destination: { host: 'svc.example.com', port: { number: 80 } } }] },
          ],
        },
      },
    ]),
  );
  assert.is(await upstreamOf('svc.example.com:9090'), 'legacy');
  assert.is(await upstreamOf('svc.example.com'), 'api');
});

test.run();
