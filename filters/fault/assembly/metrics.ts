// fault_injected_total{kind="delay"|"abort",host="..."}: one counter series per kind and request host,
// named with the label-in-name convention of wasm/src/metrics/registry.ts. The host comes from the
// request, so the number of series is capped: past MAX_HOSTS distinct hosts, the rest count under
// host="_other_".
import { defineCounter, incrementCounter } from "./host";

export const KIND_DELAY = "delay";
export const KIND_ABORT = "abort";

const MAX_HOSTS: i32 = 256;
const OTHER_HOST = "_other_";

export class FaultCounters {
  /** Metric id by "kind\nhost"; -1 when the host refused the name. */
  private ids: Map<string, i64> = new Map();
  private hosts: Map<string, bool> = new Map();

  count(kind: string, host: string): void {
    let h = host;
    if (!this.hosts.has(h)) {
      if (this.hosts.size >= MAX_HOSTS) h = OTHER_HOST;
      else this.hosts.set(h, true);
    }
    const key = kind + "\n" + h;
    let id: i64;
    if (this.ids.has(key)) {
      id = this.ids.get(key);
    } else {
      id = defineCounter("fault_injected_total{kind=\"" + kind + "\",host=\"" + escapeLabel(h) + "\"}");
      this.ids.set(key, id);
    }
    if (id >= 0) incrementCounter(<u32>id);
  }
}

/** Prometheus label value escaping: backslash and double quote (header values carry no newline). */
function escapeLabel(value: string): string {
  let out = "";
  let run = 0;
  for (let i = 0, n = value.length; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c == 0x5c || c == 0x22 || c == 0x0a) {
      out += value.substring(run, i) + (c == 0x0a ? "\\n" : "\\" + String.fromCharCode(c));
      run = i + 1;
    }
  }
  return run == 0 ? value : out + value.substring(run);
}
