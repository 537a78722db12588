// Configuration of the telemetry filter:
//
//   { "metrics": true, "accessLog": true }
//
// Both fields are optional booleans (null means the default, true). An empty configuration is valid.
// Anything else is refused with the path of the field at fault, e.g.
//   accessLog: expected true, false or null (at line 1, column 15)
// The text is read by the shared JSON reader (filters/common/assembly/json.ts); nothing here aborts:
// problems come back in ConfigResult.error.
import { Checker, JKind, JValue, absent, parseJson, position } from "../../common/assembly/json";

export class TelemetryConfig {
  metrics: bool = true;
  accessLog: bool = true;
}

export class ConfigResult {
  config: TelemetryConfig | null = null;
  error: string = "";
}

const FIELDS: string[] = ["metrics", "accessLog"];

export function parseConfig(text: string): ConfigResult {
  const result = new ConfigResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    const field = parsed.path.length > 0 ? parsed.path : "(configuration)";
    result.error = field + ": " + parsed.message + " (" + position(text, parsed.at) + ")";
    return result;
  }
  const c = new Checker(text, true);
  const config = new TelemetryConfig();
  if (root.kind != JKind.Object) {
    c.fail("(configuration)", "expected a JSON object", root.at);
  } else if (c.object(root, "", FIELDS)) {
    config.metrics = flag(c, root, "metrics");
    config.accessLog = flag(c, root, "accessLog");
  }
  if (c.failed) result.error = c.error;
  else result.config = config;
  return result;
}

/** true, false, or null/absent (the default, true). */
function flag(c: Checker, root: JValue, field: string): bool {
  const v = root.get(field);
  if (absent(v)) return true;
  const b = <JValue>v;
  if (b.kind != JKind.Bool) {
    c.fail(field, "expected true, false or null", b.at);
    return true;
  }
  return b.boolean;
}
