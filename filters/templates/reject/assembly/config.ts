// The plugin configuration (WasmPlugin spec.pluginConfig), a JSON object:
//
//   { "header": "x-api-key", "keys": ["key-1", "key-2"] }
//
// header: the request header that carries the key (default x-api-key).
// keys:   the keys accepted; left out or empty, any non-empty value is accepted.
// Anything else is refused with the field and what is wrong, and the filter does not start.
import { Checker, parseJson } from "../../../common/assembly/json";

export class Config {
  header: string = "x-api-key";
  keys: string[] = [];

  /** The request's key is acceptable. */
  accepts(key: string): bool {
    if (key.length == 0) return false;
    return this.keys.length == 0 || this.keys.includes(key);
  }
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
  if (c.object(root, "", ["header", "keys"])) {
    const header = c.str(root.get("header"), "header");
    if (header.length > 0) config.header = header.toLowerCase();
    const keys = c.array(root.get("keys"), "keys", "an array of strings");
    for (let i = 0; i < keys.length && !c.failed; i++) {
      const key = c.str(keys[i], "keys[" + i.toString() + "]", true);
      if (!c.failed && key.length == 0) c.fail("keys[" + i.toString() + "]", "must not be empty");
      config.keys.push(key);
    }
  }
  if (c.failed) out.error = c.error;
  else out.config = config;
  return out;
}
