// Delayed requests, held by the root context. A delayed request's stream returns StopIteration from
// on_request_headers and waits here with its due time; a tick (TICK_MS, running only while something
// waits) resumes the streams that are due, each after proxy_set_effective_context. Nothing blocks:
// other requests go through while these wait.
import { send_local_response } from "@solo-io/proxy-runtime";
import { AbortSpec } from "./config";
import { continueRequest, enterContext, nowNs, setTickPeriod } from "./host";
import { FaultCounters, KIND_ABORT } from "./metrics";

/** Tick period while delays are pending. 1 ms keeps a resume within ~2 ms of its due time. */
const TICK_MS: u32 = 1;

export class Pending {
  contextId: u32;
  dueNs: u64;
  /** Abort to apply once the delay is over (delay and abort combined), or null to resume. */
  abort: AbortSpec | null;
  host: string;

  constructor(contextId: u32, dueNs: u64, abort: AbortSpec | null, host: string) {
    this.contextId = contextId;
    this.dueNs = dueNs;
    this.abort = abort;
    this.host = host;
  }
}

export class DelayQueue {
  private pending: Pending[] = [];
  private ticking: bool = false;

  get size(): i32 {
    return this.pending.length;
  }

  /** Holds a stream until `delayMs` from now; starts the tick if it is not running. */
  add(contextId: u32, delayMs: u32, abort: AbortSpec | null, host: string): void {
    const due = nowNs() + <u64>delayMs * 1_000_000;
    this.pending.push(new Pending(contextId, due, abort, host));
    // Only on the first: restarting the timer for every new request would postpone the next tick.
    if (!this.ticking) this.ticking = setTickPeriod(TICK_MS);
  }

  /** The stream ended while delayed (client gone): forget it. */
  remove(contextId: u32): void {
    const list = this.pending;
    for (let i = 0; i < list.length; i++) {
      if (unchecked(list[i]).contextId == contextId) {
        list.splice(i, 1);
        return;
      }
    }
  }

  /** Resumes (or aborts) every due stream; stops the tick when nothing is left. */
  tick(counters: FaultCounters): void {
    const list = this.pending;
    if (list.length > 0) {
      const now = nowNs();
      let kept = 0;
      for (let i = 0, n = list.length; i < n; i++) {
        const p = unchecked(list[i]);
        if (p.dueNs > now) {
          unchecked((list[kept] = p));
          kept++;
          continue;
        }
        // A stream that is gone (its on_delete not seen yet) is simply dropped.
        if (!enterContext(p.contextId)) continue;
        const abort = p.abort;
        if (abort !== null) {
          sendAbort(abort);
          counters.count(KIND_ABORT, p.host);
        } else {
          continueRequest();
        }
      }
      list.length = kept;
    }
    if (list.length == 0 && this.ticking) {
      setTickPeriod(0);
      this.ticking = false;
    }
  }
}

const ABORT_BODY = "fault filter abort";
/** Envoy's response code details for the same reply. */
const ABORT_DETAILS = "fault_filter_abort";

/** The local reply of an abort on the effective context: the status, or 200 with a gRPC status. */
export function sendAbort(abort: AbortSpec): void {
  send_local_response(abort.httpStatus, ABORT_DETAILS, String.UTF8.encode(ABORT_BODY), [], abort.grpcStatus);
}
