// What the filter reads as bytes on every request and turns into strings: a peer's exchange header,
// a certificate's principal, the authority's service. A connection or a peer sends the same bytes
// request after request, so each memo keeps the last bytes and what they became: a repeat costs one
// byte comparison instead of a decode (and, for a peer, a base64 decode and a map lookup).
import { UNKNOWN } from "./peer";
import { Report } from "./report";

/** The last bytes seen, copied. */
export class LastBytes {
  private bytes: ArrayBuffer = new ArrayBuffer(0);
  private known: bool = false;

  /** True when the `len` bytes at `ptr` are the ones remembered. */
  matches(ptr: usize, len: usize): bool {
    return this.known && <usize>this.bytes.byteLength == len && memory.compare(changetype<usize>(this.bytes), ptr, len) == 0;
  }

  remember(ptr: usize, len: usize): void {
    if (<usize>this.bytes.byteLength != len) this.bytes = new ArrayBuffer(<i32>len);
    memory.copy(changetype<usize>(this.bytes), ptr, len);
    this.known = true;
  }
}

/** UTF-8 bytes as a string, decoded again only when the bytes change. */
export class DecodedText {
  private last: LastBytes = new LastBytes();
  private value: string = "";

  decode(ptr: usize, len: usize): string {
    if (!this.last.matches(ptr, len)) {
      this.value = String.UTF8.decodeUnsafe(ptr, len);
      this.last.remember(ptr, len);
    }
    return this.value;
  }
}

/**
 * destination_service, _name and _namespace for the last authority seen on one side (the rules
 * depend on the side and on the local workload, which is fixed per VM). `found` is false for a request
 * without an authority.
 */
export class ServiceMemo {
  private last: LastBytes = new LastBytes();
  private found: bool = false;
  private computed: bool = false;
  private service: string = UNKNOWN;
  private name: string = UNKNOWN;
  private namespace: string = UNKNOWN;

  /** Fills `r` from the memo when the authority is the one remembered; false when it must be computed. */
  apply(r: Report, found: bool, ptr: usize, len: usize): bool {
    if (!this.computed || found != this.found || (found && !this.last.matches(ptr, len))) return false;
    r.destinationService = this.service;
    r.destinationServiceName = this.name;
    r.destinationServiceNamespace = this.namespace;
    return true;
  }

  /** Remembers what was computed into `r` for this authority. */
  remember(r: Report, found: bool, ptr: usize, len: usize): void {
    this.found = found;
    if (found) this.last.remember(ptr, len);
    this.service = r.destinationService;
    this.name = r.destinationServiceName;
    this.namespace = r.destinationServiceNamespace;
    this.computed = true;
  }
}
