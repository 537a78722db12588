// The V8 flags a sidecar's Node runs with. Measured on one standalone sidecar with telemetry under
// wrk -c16 (bench/RESULTS.md, "Memory of a sidecar"): a 1 MB semi-space keeps the young generation at
// 3 MB instead of growing to 16-32 MB under load, and one V8 worker thread instead of four saves their
// stacks; together about 13 MB idle and 13 MB under load, with CPU per request unchanged within the
// noise (a proxy's per-request garbage dies young: a small nursery is scavenged often and cheaply).
// scripts/wasmesh (the bash entry) passes the same flags to `wasmesh proxy`; a test keeps them equal.
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--v8-pool-size=1'];
