// Shared by the bench's child processes: announce readiness on stdout, and exit when told to
// (SIGTERM/SIGINT) or when the parent goes away (its end of our stdin closes).

/** Prints the line the bench waits for: `BENCH_READY {"port":N}`. */
export function announceReady(info) {
  process.stdout.write(`BENCH_READY ${JSON.stringify(info)}\n`);
}

/** Calls stop() once on SIGTERM, SIGINT or parent exit, then exits (exit code 0, so --cpu-prof is written). */
export function exitWith(stop) {
  let stopping = false;
  const run = () => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(0), 3000);
    hard.unref();
    Promise.resolve()
      .then(stop)
      .catch(() => {})
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', run);
  process.on('SIGINT', run);
  process.stdin.on('end', run);
  process.stdin.on('close', run);
  process.stdin.on('error', run);
  process.stdin.resume();
}
