// The plugin configuration (WasmPlugin spec.pluginConfig), a JSON object; every field is optional:
//
//   {
//     "request":  { "x-hello": "world" },          headers set on the request (replacing any)
//     "response": { "x-served-by": "wasmesh" },    headers set on the response
//     "removeResponse": ["server"],                 response headers removed
//     "replaceInResponseBody": { "from": "hello", "to": "HELLO" }   text replaced in response bodies
//   }
//
// Anything else is refused with the field and what is wrong, and the filter does not start.
import { Checker, JKind, JValue, memberPath, parseJson } from "../../../common/assembly/json";

export class Header {
  name: string;
  value: string;
  constructor(name: string, value: string) {
    this.name = name;
    this.value = value;
  }
}

export class Config {
  request: Header[] = [];
  response: Header[] = [];
  removeResponse: string[] = [];
  /** Text replaced in response bodies ("" for from: no body rewriting). */
  bodyFrom: string = "";
  bodyTo: string = "";
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
  if (c.object(root, "", ["request", "response", "removeResponse", "replaceInResponseBody"])) {
    config.request = headers(c, root.get("request"), "request");
    config.response = headers(c, root.get("response"), "response");
    const remove = c.array(root.get("removeResponse"), "removeResponse", "an array of header names");
    for (let i = 0; i < remove.length && !c.failed; i++) {
      config.removeResponse.push(c.str(remove[i], "removeResponse[" + i.toString() + "]", true).toLowerCase());
    }
    const replace = root.get("replaceInResponseBody");
    if (replace !== null && replace.kind != JKind.Null && c.object(replace, "replaceInResponseBody", ["from", "to"])) {
      config.bodyFrom = c.str(replace.get("from"), "replaceInResponseBody.from", true);
      config.bodyTo = c.str(replace.get("to"), "replaceInResponseBody.to", true);
      if (!c.failed && config.bodyFrom.length == 0) c.fail("replaceInResponseBody.from", "must not be empty");
    }
  }
  if (c.failed) out.error = c.error;
  else out.config = config;
  return out;
}

/** `{ "name": "value", ... }`; absent reads as none. */
function headers(c: Checker, v: JValue | null, path: string): Header[] {
  const list: Header[] = [];
  if (v === null || v.kind == JKind.Null || !c.is(v, JKind.Object, path, "an object of header names to values")) return list;
  for (let i = 0; i < v.keys.length && !c.failed; i++) {
    const name = v.keys[i].toLowerCase();
    const value = c.str(v.items[i], memberPath(path, v.keys[i]), true);
    list.push(new Header(name, value));
  }
  return list;
}
