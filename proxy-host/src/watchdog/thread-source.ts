// The watchdog thread's code (run with `new Worker(source, { eval: true })`, like the filter
// compiler's workers: plain JavaScript, so it runs the same under tsx, tsc output or plain node).
//
// It shares one Int32Array with the main thread (layout in heartbeat.ts). The main thread adds 1 to
// BEAT on a short timer; this thread wakes every pollMs (Atomics.wait on STOP, so stop() wakes it at
// once) and measures, on its own clock, how long BEAT has not moved. Past stallMs it counts a stall
// (STALLS, STALLED, and a line on stderr); past exitMs it writes a line with fs.writeSync (the main
// thread is stuck, so nothing it would log gets out) and kills the whole process with SIGKILL: the
// one signal a stuck process cannot ignore, so its supervisor (the primary, `wasmesh run`, kubelet)
// starts a new one. Timings are as seen from here: within one poll and one beat of the truth.
export const WATCHDOG_THREAD_SOURCE = String.raw`
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { buffer, stallMs, exitMs, pollMs, label } = workerData;
const a = new Int32Array(buffer);
const BEAT = 0, STALLS = 1, STALLED = 2, STALL_MS = 3, STOP = 4;
const line = (level, message) => { try { fs.writeSync(2, new Date().toISOString() + ' ' + level + ' [watchdog] ' + label + message + '\n'); } catch {} };
let lastBeat = Atomics.load(a, BEAT);
let lastChange = performance.now();
let stalled = false;
while (Atomics.load(a, STOP) === 0) {
  Atomics.wait(a, STOP, 0, pollMs);
  if (Atomics.load(a, STOP) !== 0) break;
  const now = performance.now();
  const beat = Atomics.load(a, BEAT);
  if (beat !== lastBeat) {
    if (stalled) {
      const ms = Math.round(now - lastChange);
      Atomics.store(a, STALL_MS, ms);
      Atomics.store(a, STALLED, 0);
      stalled = false;
      line('warn', 'event loop running again after ' + ms + ' ms');
    }
    lastBeat = beat;
    lastChange = now;
    continue;
  }
  const age = now - lastChange;
  if (!stalled && age > stallMs) {
    stalled = true;
    Atomics.store(a, STALLED, 1);
    Atomics.add(a, STALLS, 1);
    line('warn', 'event loop blocked for more than ' + stallMs + ' ms: not ready' + (exitMs > 0 ? '; killing the process at ' + exitMs + ' ms' : ''));
  }
  if (stalled) Atomics.store(a, STALL_MS, Math.round(age));
  if (exitMs > 0 && age > exitMs) {
    line('critical', 'event loop blocked for ' + Math.round(age) + ' ms (limit ' + exitMs + ' ms): killing process ' + process.pid + ' (SIGKILL) so that its supervisor replaces it');
    process.kill(process.pid, 'SIGKILL');
  }
}
`;
