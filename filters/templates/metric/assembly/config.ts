// The plugin configuration (WasmPlugin spec.pluginConfig), a JSON object:
//
//   { "summarySeconds": 60 }
//
// summarySeconds: how often a summary line is logged (0: never; default 60).
// Anything else is refused with the field and what is wrong, and the filter does not start.
import { Checker, parseJson } from "../../../common/assembly/json";

export class Config {
  summarySeconds: u32 = 60;
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
  if (c.object(root, "", ["summarySeconds"])) {
    config.summarySeconds = <u32>c.int(root.get("summarySeconds"), "summarySeconds", 0, 86400, 60);
  }
  if (c.failed) out.error = c.error;
  else out.config = config;
  return out;
}
