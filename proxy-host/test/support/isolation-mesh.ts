// The standalone config of the isolation tests and benchmark: an app, an authz service (the target of
// the hostile filter's callout) and two WasmPlugins of the hostile module (support/hostile-filter.ts):
// `guard` on the outbound side, where bad requests go, and `neighbour` on the inbound side, which
// forwards to the app.
export const APP_HOST = 'app.default.svc.cluster.local';
/** The cluster the translator makes of the authz ServiceEntry: the hostile filter calls it by this name. */
export const AUTHZ_CLUSTER = 'outbound|9080||authz.default.svc.cluster.local';
export const WORKLOAD = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };

export interface IsolationMeshOptions {
  appPort: number;
  authzPort: number;
  /** The module file, relative to the config file's folder. Default hostile.wasm. */
  module?: string;
  /** guard's failStrategy (neighbour is always FAIL_CLOSE). Default FAIL_CLOSE. */
  failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
  /** spec.cpuBudget of both plugins; absent: the runtime's default. */
  cpuBudget?: number;
  /** spec.vms (the pool of VMs) of both plugins; absent: the default (1). */
  vms?: number;
}

export function isolationMeshYaml(opts: IsolationMeshOptions): string {
  const budget = (opts.cpuBudget === undefined ? '' : `\n  cpuBudget: ${opts.cpuBudget}`) + (opts.vms === undefined ? '' : `\n  vms: ${opts.vms}`);
  const module = opts.module ?? 'hostile.wasm';
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: app, namespace: default }
spec:
  hosts: [${APP_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${opts.appPort} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: authz, namespace: default }
spec:
  hosts: [authz.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${opts.authzPort} } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app, namespace: default }
spec:
  hosts: [${APP_HOST}]
  http: [{ route: [{ destination: { host: ${APP_HOST} } }] }]
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: guard, namespace: default }
spec:
  url: file://${module}
  match: [{ mode: CLIENT }]
  failStrategy: ${opts.failStrategy ?? 'FAIL_CLOSE'}${budget}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: neighbour, namespace: default }
spec:
  url: file://${module}${budget}
`;
}
