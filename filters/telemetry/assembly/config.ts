// Configuration of the telemetry filter:
//
//   { "metrics": true, "accessLog": true }
//
// Both fields are optional booleans (null means the default, true). An empty configuration is valid.
// Anything else is refused with the path of the field at fault, e.g.
//   accessLog: expected true, false or null (at line 1, column 14)
// The parser reads exactly this shape (AssemblyScript has no JSON in its standard library) and never
// aborts: problems come back in ConfigResult.error.

export class TelemetryConfig {
  metrics: bool = true;
  accessLog: bool = true;
}

export class ConfigResult {
  config: TelemetryConfig | null = null;
  error: string = "";
}

const FIELDS = "\"metrics\", \"accessLog\"";

export function parseConfig(text: string): ConfigResult {
  const reader = new Reader(text);
  const config = new TelemetryConfig();
  readDocument(reader, config);
  const result = new ConfigResult();
  if (reader.error.length > 0) result.error = reader.error;
  else result.config = config;
  return result;
}

function readDocument(r: Reader, config: TelemetryConfig): void {
  r.skipSpace();
  if (r.atEnd()) return; // empty configuration: defaults
  if (r.peek() != 0x7b) {
    r.fail("", "expected a JSON object");
    return;
  }
  r.pos++;
  let seenMetrics = false;
  let seenAccessLog = false;
  r.skipSpace();
  if (r.peek() == 0x7d) {
    r.pos++;
  } else {
    while (true) {
      r.skipSpace();
      const keyAt = r.pos;
      const key = r.readString();
      if (r.failed()) return;
      r.skipSpace();
      if (r.peek() != 0x3a) {
        r.fail(key, "expected ':' after the field name");
        return;
      }
      r.pos++;
      r.skipSpace();
      if (key == "metrics") {
        if (seenMetrics) return r.failAt(keyAt, key, "listed twice");
        seenMetrics = true;
        config.metrics = readFlag(r, key, true);
      } else if (key == "accessLog") {
        if (seenAccessLog) return r.failAt(keyAt, key, "listed twice");
        seenAccessLog = true;
        config.accessLog = readFlag(r, key, true);
      } else {
        return r.failAt(keyAt, key, "unknown field (expected one of " + FIELDS + ")");
      }
      if (r.failed()) return;
      r.skipSpace();
      const c = r.peek();
      r.pos++;
      if (c == 0x2c) continue;
      if (c == 0x7d) break;
      r.pos--;
      r.fail(key, "expected ',' or '}' after the value");
      return;
    }
  }
  r.skipSpace();
  if (!r.atEnd()) r.fail("", "unexpected text after the configuration object");
}

/** true, false, or null (the default). */
function readFlag(r: Reader, field: string, fallback: bool): bool {
  if (r.literal("true")) return true;
  if (r.literal("false")) return false;
  if (r.literal("null")) return fallback;
  r.fail(field, "expected true, false or null");
  return fallback;
}

class Reader {
  text: string;
  pos: i32 = 0;
  error: string = "";

  constructor(text: string) {
    this.text = text;
  }

  failed(): bool {
    return this.error.length > 0;
  }

  atEnd(): bool {
    return this.pos >= this.text.length;
  }

  peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  skipSpace(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return;
      this.pos++;
    }
  }

  literal(word: string): bool {
    const end = this.pos + word.length;
    if (end > this.text.length || this.text.substring(this.pos, end) != word) return false;
    // "trueish" is not true
    if (end < this.text.length && isWordChar(this.text.charCodeAt(end))) return false;
    this.pos = end;
    return true;
  }

  /** A JSON string without escapes beyond \" and \\ (field names need no more). */
  readString(): string {
    if (this.peek() != 0x22) {
      this.fail("", "expected a field name in double quotes");
      return "";
    }
    const start = this.pos;
    this.pos++;
    let out = "";
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x22) return out;
      if (c == 0x5c) {
        const e = this.peek();
        if (e != 0x22 && e != 0x5c) {
          this.failAt(start, "", "unsupported escape in a field name");
          return "";
        }
        this.pos++;
        out += String.fromCharCode(e);
        continue;
      }
      if (c < 0x20) {
        this.failAt(start, "", "control character in a field name");
        return "";
      }
      out += String.fromCharCode(c);
    }
    this.failAt(start, "", "unterminated string");
    return "";
  }

  fail(field: string, message: string): void {
    this.failAt(this.pos, field, message);
  }

  /** Keeps the first error: "<field>: <message> (at line L, column C)". */
  failAt(at: i32, field: string, message: string): void {
    if (this.error.length > 0) return;
    let line = 1;
    let column = 1;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) == 0x0a) {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    const where = at >= this.text.length ? "at the end" : "at line " + line.toString() + ", column " + column.toString();
    this.error = (field.length > 0 ? field : "(configuration)") + ": " + message + " (" + where + ")";
  }
}

function isWordChar(c: i32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x5f;
}
