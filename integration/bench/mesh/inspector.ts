// The inspector of a running sidecar, opened without restarting it: the process (or the `wasmesh run`
// that starts it) gets NODE_OPTIONS=--inspect-port=127.0.0.1:<port>, which only sets where the
// inspector would listen; SIGUSR1 to the sidecar alone opens it. Used for CPU profiles over exactly
// one window (the V8 profiler from its start to its end) and for a full GC before reading memory. Positions are mapped back to the
// TypeScript sources through the inline source maps tsx gives every module (collected from the
// debugger's scriptParsed events, with the debugger switched off again before profiling).
import { writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { WebSocket } from 'undici';

interface CallFrame {
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface Profile {
  nodes: Array<{ callFrame: CallFrame }>;
}

export class SidecarInspector {
  readonly #ws: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #sourceMapUrls = new Map<string, string>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: { scriptId: string; sourceMapURL?: string } };
      if (msg.id !== undefined) {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(msg.error.message));
        else p?.resolve(msg.result);
      } else if (msg.method === 'Debugger.scriptParsed' && msg.params?.sourceMapURL) {
        this.#sourceMapUrls.set(msg.params.scriptId, msg.params.sourceMapURL);
      }
    });
  }

  /** Opens the sidecar's inspector (SIGUSR1) on the port its NODE_OPTIONS named, and connects. */
  static async attach(pid: number, inspectPort: number, opts: { profiler: boolean }): Promise<SidecarInspector> {
    process.kill(pid, 'SIGUSR1');
    const deadline = Date.now() + 15_000;
    let wsUrl: string | undefined;
    while (!wsUrl) {
      try {
        const list = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`, { signal: AbortSignal.timeout(1000) })).json()) as Array<{ webSocketDebuggerUrl?: string }>;
        wsUrl = list[0]?.webSocketDebuggerUrl;
      } catch {
        // not listening yet
      }
      if (!wsUrl) {
        if (Date.now() > deadline) throw new Error(`the inspector of process ${pid} did not open on port ${inspectPort} within 15 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const ws = new WebSocket(wsUrl);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`could not connect to ${wsUrl}`)), { once: true });
    });
    const inspector = new SidecarInspector(ws);
    if (opts.profiler) {
      // enable replays scriptParsed for every script already loaded (with its source map url).
      await inspector.call('Debugger.enable');
      await inspector.call('Debugger.disable');
      await inspector.call('Profiler.enable');
    }
    return inspector;
  }

  call<T>(method: string, params: object = {}): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  startProfile(): Promise<void> {
    return this.call('Profiler.start');
  }

  /** Two full collections (the second frees what the first's finalizers released), then V8's heap figures. */
  async collectGarbage(): Promise<{ usedBytes: number; totalBytes: number }> {
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
    const { usedSize, totalSize } = await this.call<{ usedSize: number; totalSize: number }>('Runtime.getHeapUsage');
    return { usedBytes: usedSize, totalBytes: totalSize };
  }

  /** Stops the profiler and writes the profile (positions in the TypeScript sources) to `file`. */
  async stopProfileAndWrite(file: string): Promise<void> {
    const { profile } = await this.call<{ profile: Profile }>('Profiler.stop');
    const maps = new Map<string, SourceMap | undefined>();
    for (const node of profile.nodes) {
      const f = node.callFrame;
      if (f.lineNumber < 0) continue;
      if (!maps.has(f.scriptId)) maps.set(f.scriptId, decodeInlineMap(this.#sourceMapUrls.get(f.scriptId)));
      const entry = maps.get(f.scriptId)?.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
      if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
        f.url = entry.originalSource;
        f.lineNumber = entry.originalLine;
        f.columnNumber = entry.originalColumn ?? 0;
      }
    }
    writeFileSync(file, JSON.stringify(profile));
  }

  close(): void {
    this.#ws.close();
  }
}

function decodeInlineMap(url: string | undefined): SourceMap | undefined {
  const m = url ? /^data:application\/json[^,]*;base64,(.*)$/.exec(url) : null;
  if (!m) return undefined;
  try {
    return new SourceMap(JSON.parse(Buffer.from(m[1]!, 'base64').toString('utf8')));
  } catch {
    return undefined;
  }
}
