// A small JSON reader for the plugin configuration. AssemblyScript's standard library has no JSON, so
// this parses the text into a tree of JValue nodes that config.ts then checks field by field.
// It never aborts: a syntax error is reported with its line and column, and nesting is bounded so a
// hostile configuration cannot overflow the stack.

export const enum JKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

export class JValue {
  kind: JKind;
  boolean: bool = false;
  number: f64 = 0;
  text: string = "";
  /** Array items, or object member values (in the order written). */
  items: JValue[] = [];
  /** Object member names, parallel to items. */
  keys: string[] = [];

  constructor(kind: JKind) {
    this.kind = kind;
  }

  /** The member named `key` of an object, or null. */
  get(key: string): JValue | null {
    const keys = this.keys;
    for (let i = 0, n = keys.length; i < n; i++) {
      if (unchecked(keys[i]) == key) return unchecked(this.items[i]);
    }
    return null;
  }
}

export function kindName(kind: JKind): string {
  switch (kind) {
    case JKind.Null: return "null";
    case JKind.Bool: return "a boolean";
    case JKind.Number: return "a number";
    case JKind.String: return "a string";
    case JKind.Array: return "an array";
    default: return "an object";
  }
}

export class JsonResult {
  value: JValue | null = null;
  error: string = "";
}

const MAX_DEPTH = 64;

export function parseJson(text: string): JsonResult {
  const p = new JsonParser(text);
  const result = new JsonResult();
  p.skipWhitespace();
  if (p.pos >= text.length) {
    // An empty configuration means "no policies, no limits".
    result.value = new JValue(JKind.Object);
    return result;
  }
  const v = p.parseValue(0);
  if (!p.failed) {
    p.skipWhitespace();
    if (p.pos < text.length) p.fail("unexpected text after the configuration");
  }
  if (p.failed) result.error = p.error;
  else result.value = v;
  return result;
}

class JsonParser {
  text: string;
  pos: i32 = 0;
  failed: bool = false;
  error: string = "";

  constructor(text: string) {
    this.text = text;
  }

  parseValue(depth: i32): JValue {
    const nothing = new JValue(JKind.Null);
    if (depth > MAX_DEPTH) {
      this.fail("nesting deeper than " + MAX_DEPTH.toString() + " levels");
      return nothing;
    }
    this.skipWhitespace();
    const c = this.peek();
    if (c == 0x7b) return this.parseObject(depth);
    if (c == 0x5b) return this.parseArray(depth);
    if (c == 0x22) {
      const v = new JValue(JKind.String);
      v.text = this.parseString();
      return v;
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
    if (this.literal("true")) {
      const v = new JValue(JKind.Bool);
      v.boolean = true;
      return v;
    }
    if (this.literal("false")) return new JValue(JKind.Bool);
    if (this.literal("null")) return nothing;
    this.fail(c < 0 ? "unexpected end of the configuration" : "expected a JSON value");
    return nothing;
  }

  parseObject(depth: i32): JValue {
    const v = new JValue(JKind.Object);
    this.pos++; // {
    this.skipWhitespace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      this.skipWhitespace();
      if (this.peek() != 0x22) {
        this.fail("expected a member name in double quotes");
        break;
      }
      const keyPos = this.pos;
      const key = this.parseString();
      if (this.failed) break;
      if (v.get(key) !== null) {
        this.failAt(keyPos, "duplicate member \"" + key + "\"");
        break;
      }
      this.skipWhitespace();
      if (this.peek() != 0x3a) {
        this.fail("expected ':' after \"" + key + "\"");
        break;
      }
      this.pos++;
      const item = this.parseValue(depth + 1);
      if (this.failed) break;
      v.keys.push(key);
      v.items.push(item);
      this.skipWhitespace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x7d) {
        this.pos++;
        break;
      }
      this.fail("expected ',' or '}' in an object");
    }
    return v;
  }

  parseArray(depth: i32): JValue {
    const v = new JValue(JKind.Array);
    this.pos++; // [
    this.skipWhitespace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      const item = this.parseValue(depth + 1);
      if (this.failed) break;
      v.items.push(item);
      this.skipWhitespace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x5d) {
        this.pos++;
        break;
      }
      this.fail("expected ',' or ']' in an array");
    }
    return v;
  }

  parseNumber(): JValue {
    const v = new JValue(JKind.Number);
    const text = this.text;
    const start = this.pos;
    let p = start;
    if (this.at(p) == 0x2d) p++;
    const intStart = p;
    while (isDigit(this.at(p))) p++;
    if (p == intStart || (this.at(intStart) == 0x30 && p - intStart > 1)) {
      this.failAt(start, "invalid number");
      return v;
    }
    if (this.at(p) == 0x2e) {
      p++;
      const fracStart = p;
      while (isDigit(this.at(p))) p++;
      if (p == fracStart) {
        this.failAt(start, "invalid number");
        return v;
      }
    }
    const e = this.at(p);
    if (e == 0x65 || e == 0x45) {
      p++;
      const s = this.at(p);
      if (s == 0x2b || s == 0x2d) p++;
      const expStart = p;
      while (isDigit(this.at(p))) p++;
      if (p == expStart) {
        this.failAt(start, "invalid number");
        return v;
      }
    }
    this.pos = p;
    v.text = text.substring(start, p);
    v.number = F64.parseFloat(v.text);
    return v;
  }

  parseString(): string {
    const text = this.text;
    const end = text.length;
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c == 0x22) {
        out += text.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in a string (escape it)");
        return "";
      }
      if (c == 0x5c) {
        out += text.substring(runStart, this.pos);
        const escapePos = this.pos;
        this.pos++;
        if (this.pos >= end) break;
        const e = text.charCodeAt(this.pos);
        this.pos++;
        if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x6e) out += "\n";
        else if (e == 0x72) out += "\r";
        else if (e == 0x74) out += "\t";
        else if (e == 0x75) {
          let code = 0;
          for (let i = 0; i < 4; i++) {
            const digit = hexValue(this.at(this.pos));
            if (digit < 0) {
              this.failAt(escapePos, "invalid \\u escape");
              return "";
            }
            code = (code << 4) | digit;
            this.pos++;
          }
          out += String.fromCharCode(code);
        } else {
          this.failAt(escapePos, "invalid escape sequence");
          return "";
        }
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.fail("unterminated string");
    return "";
  }

  literal(word: string): bool {
    const n = word.length;
    if (this.pos + n > this.text.length) return false;
    if (this.text.substring(this.pos, this.pos + n) != word) return false;
    this.pos += n;
    return true;
  }

  at(p: i32): i32 {
    return p < this.text.length ? this.text.charCodeAt(p) : -1;
  }

  peek(): i32 {
    return this.at(this.pos);
  }

  skipWhitespace(): void {
    const text = this.text;
    const end = text.length;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  fail(message: string): void {
    this.failAt(this.pos, message);
  }

  failAt(at: i32, message: string): void {
    if (this.failed) return;
    this.failed = true;
    let line = 1;
    let column = 1;
    const text = this.text;
    for (let i = 0; i < at && i < text.length; i++) {
      if (text.charCodeAt(i) == 0x0a) {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    this.error = "invalid JSON at line " + line.toString() + ", column " + column.toString() + ": " + message;
  }
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
