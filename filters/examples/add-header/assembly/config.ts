// Configuration of the add-header filter.
//
//   { "request": { "<header>": "<value>", ... }, "response": { "<header>": "<value>", ... } }
//
// Both sections are optional (and may be null); an empty configuration adds nothing.
// The text is read by the shared JSON reader (filters/common/assembly/json.ts); this file checks
// the shape. Anything else is rejected with a message that says what is wrong and where.
import { Checker, JKind, JValue, parseJson } from "../../../common/assembly/json";

export class Header {
  name: string;
  value: string;
  constructor(name: string, value: string) {
    this.name = name;
    this.value = value;
  }
}

export class AddHeaderConfig {
  request: Header[] = [];
  response: Header[] = [];
}

export class ParseResult {
  /** The parsed configuration, or null if the text is invalid (see error). */
  config: AddHeaderConfig | null = null;
  error: string = "";
}

const COLON: i32 = 0x3a;

/** Parses the plugin configuration text. Never aborts: errors come back in ParseResult.error. */
export function parseConfig(text: string): ParseResult {
  const result = new ParseResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    result.error = parsed.error;
    return result;
  }
  const c = new Checker(text, true);
  const config = new AddHeaderConfig();
  if (root.kind != JKind.Object) c.fail("", "expected '{' at the start of the configuration", root.at);
  for (let i = 0, n = root.keys.length; i < n && !c.failed; i++) {
    const key = unchecked(root.keys[i]);
    const keyAt = unchecked(root.keyAt[i]);
    if (key != "request" && key != "response") {
      c.fail("", "unknown key \"" + key + "\" (expected \"request\" or \"response\")", keyAt);
    } else if (root.indexOf(key) < i) {
      c.fail("", "duplicate key \"" + key + "\"", keyAt);
    } else {
      const headers = section(c, key, unchecked(root.items[i]));
      if (key == "request") config.request = headers;
      else config.response = headers;
    }
  }
  if (c.failed) result.error = c.error;
  else result.config = config;
  return result;
}

/** `{ "name": "value", ... }` or `null`. */
function section(c: Checker, name: string, v: JValue): Header[] {
  const headers: Header[] = [];
  if (v.kind == JKind.Null) return headers;
  if (v.kind != JKind.Object) {
    c.fail("", "expected an object of header names to values for \"" + name + "\"", v.at);
    return headers;
  }
  const where = "\"" + name + "\"";
  for (let i = 0, n = v.keys.length; i < n; i++) {
    const raw = unchecked(v.keys[i]);
    const lower = raw.toLowerCase(); // proxies compare header names case-insensitively
    const keyAt = unchecked(v.keyAt[i]);
    const problem = checkHeaderName(lower);
    if (problem.length > 0) {
      c.fail("", where + ": invalid header name \"" + raw + "\": " + problem, keyAt);
      return headers;
    }
    for (let j = 0; j < headers.length; j++) {
      if (unchecked(headers[j]).name == lower) {
        c.fail("", where + ": header \"" + lower + "\" is listed twice", keyAt);
        return headers;
      }
    }
    const value = unchecked(v.items[i]);
    if (value.kind != JKind.String) {
      c.fail("", where + ".\"" + raw + "\": the value must be a string", value.at);
      return headers;
    }
    if (!checkHeaderValue(value.text)) {
      c.fail("", where + ".\"" + raw + "\": the value must not contain CR, LF or NUL", value.at);
      return headers;
    }
    headers.push(new Header(lower, value.text));
  }
  return headers;
}

/** An RFC 9110 token (an optional leading ':' allows pseudo-headers); returns what is wrong, or "". */
function checkHeaderName(name: string): string {
  const n = name.length;
  if (n == 0) return "it is empty";
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (i == 0 && c == COLON && n > 1) continue;
    if (!isTokenChar(c)) return "character '" + String.fromCharCode(c) + "' is not allowed";
  }
  return "";
}

function isTokenChar(c: i32): bool {
  if (c >= 0x61 && c <= 0x7a) return true; // a-z (names are lowercased before the check)
  if (c >= 0x30 && c <= 0x39) return true; // 0-9
  // ! # $ % & ' * + - . ^ _ ` | ~
  return c == 0x21 || c == 0x23 || c == 0x24 || c == 0x25 || c == 0x26 || c == 0x27 || c == 0x2a ||
    c == 0x2b || c == 0x2d || c == 0x2e || c == 0x5e || c == 0x5f || c == 0x60 || c == 0x7c || c == 0x7e;
}

function checkHeaderValue(value: string): bool {
  for (let i = 0, n = value.length; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c == 0x0a || c == 0x0d || c == 0) return false;
  }
  return true;
}
