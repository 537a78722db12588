// The gateway role of `wasmesh proxy` (and `wasmesh gateway`): what makes a workload a gateway proxy.
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { GATEWAY_ROLE, GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateway-labels.ts';

export function parseRole(value: string | undefined): 'sidecar' | 'gateway' {
  if (value === undefined || value === 'sidecar') return 'sidecar';
  if (value === 'gateway') return 'gateway';
  throw new Error(`--role must be sidecar or gateway, got "${value}"`);
}

/**
 * The workload with the gateway role label (translation gives it the Gateways' listeners). Without
 * --labels it also carries Istio's ingress gateway label (istio=ingressgateway), which Istio's
 * Gateways select.
 */
export function gatewayWorkload(workload: WorkloadIdentity, defaultLabels: boolean): WorkloadIdentity {
  return { ...workload, labels: { ...workload.labels, ...(defaultLabels ? { istio: 'ingressgateway' } : {}), [GATEWAY_ROLE_LABEL]: GATEWAY_ROLE } };
}
