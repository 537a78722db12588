// What makes a workload a gateway proxy, in a file of its own so that the CLI can name it without
// loading the translator.

/** The label that makes a workload a gateway proxy (value GATEWAY_ROLE); `wasmesh gateway` adds it. */
export const GATEWAY_ROLE_LABEL = 'wasmesh.io/proxy-role';
export const GATEWAY_ROLE = 'gateway';
