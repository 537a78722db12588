// request.auth.*: the end-user identity of a request, from the JWT payload the authn filter verified
// and left in the stream's filter state (property `wasmesh.jwt_payload`, set with proxy_set_property;
// see filters/authn). Read and parsed at most once per request, only when a policy asks.
//
//   request.auth.principal   "<iss>/<sub>" (both present), what requestPrincipals match
//   request.auth.audiences   "aud": a string or each string of a list
//   request.auth.presenter   "azp"
//   request.auth.claims[a][b] the claim b of the object claim a: a string, or each string of a list
//
// A request without a verified token (no authn filter, no token, or a token that failed: the authn
// filter answered 401 and the request never got here) has none of them: positive conditions on them
// fail, negated ones hold, as for any absent attribute.
import { JKind, JValue, parseJson } from "../../common/assembly/json";
import { getPropertyBytes } from "./host";

const P_JWT_PAYLOAD = String.UTF8.encode("wasmesh\0jwt_payload");

export class RequestAuth {
  private read: bool = false;
  private payload: JValue | null = null;

  private root(): JValue | null {
    if (!this.read) {
      this.read = true;
      const bytes = getPropertyBytes(P_JWT_PAYLOAD);
      if (bytes !== null && bytes.byteLength > 0) {
        const v = parseJson(String.UTF8.decode(bytes)).value;
        if (v !== null && v.kind == JKind.Object) this.payload = v;
      }
    }
    return this.payload;
  }

  /** The values of a request.auth attribute (path: ["principal"], ["audiences"], ["presenter"], ["claims", ...]); null when absent. */
  values(path: string[]): string[] | null {
    const p = this.root();
    if (p === null || path.length == 0) return null;
    const field = path[0];
    if (field == "principal") {
      const iss = p.get("iss");
      const sub = p.get("sub");
      if (iss === null || sub === null || iss.kind != JKind.String || sub.kind != JKind.String) return null;
      if (iss.text.length == 0 || sub.text.length == 0) return null;
      return [iss.text + "/" + sub.text];
    }
    if (field == "audiences") return strings(p.get("aud"));
    if (field == "presenter") return strings(p.get("azp"));
    let v: JValue | null = p;
    for (let i = 1; i < path.length && v !== null; i++) {
      if (v.kind != JKind.Object) return null;
      v = v.get(path[i]);
    }
    return strings(v);
  }
}

/** A string as one value; a list as its strings; anything else: absent. */
function strings(v: JValue | null): string[] | null {
  if (v === null) return null;
  if (v.kind == JKind.String) return [v.text];
  if (v.kind != JKind.Array) return null;
  const out: string[] = [];
  for (let i = 0; i < v.items.length; i++) {
    const item = v.items[i];
    if (item.kind == JKind.String) out.push(item.text);
  }
  return out.length > 0 ? out : null;
}
