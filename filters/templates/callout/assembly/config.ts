// The plugin configuration (WasmPlugin spec.pluginConfig), a JSON object:
//
//   { "cluster": "outbound|8080||authz.local", "path": "/check", "timeoutMs": 1000 }
//
// cluster:   the service to ask, by the proxy's cluster name: outbound|<port>||<host> for a host of a
//            ServiceEntry (or a Kubernetes-style service) in the mesh config (required)
// path:      the path asked (default /check)
// timeoutMs: how long to wait for the answer (default 1000; past it the request gets 503)
// Anything else is refused with the field and what is wrong, and the filter does not start.
import { Checker, parseJson } from "../../../common/assembly/json";

export class Config {
  cluster: string = "";
  path: string = "/check";
  timeoutMs: u32 = 1000;
}

export class ParsedConfig {
  config: Config | null = null;
  error: string = "";
}

export function parseConfig(text: string): ParsedConfig {
  const out = new ParsedConfig();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    out.error = parsed.error;
    return out;
  }
  const c = new Checker(text, true);
  const config = new Config();
  if (c.object(root, "", ["cluster", "path", "timeoutMs"])) {
    config.cluster = c.str(root.get("cluster"), "cluster", true);
    const path = c.str(root.get("path"), "path");
    if (path.length > 0) config.path = path;
    if (!c.failed && !config.path.startsWith("/")) c.fail("path", "must start with /");
    config.timeoutMs = <u32>c.int(root.get("timeoutMs"), "timeoutMs", 1, 60000, 1000);
  }
  if (c.failed) out.error = c.error;
  else out.config = config;
  return out;
}
