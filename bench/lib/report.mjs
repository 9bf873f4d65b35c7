// What every bench script reports with: progress lines on stderr, a failure the bench itself found (printed
// without a stack), the top-level error handler, and the clean-up of cache entries an interrupted run left.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { exitAfterChildren } from './procs.mjs';

/** A failure the bench detected (a check that did not hold): printed as its message alone. */
export class BenchError extends Error {
  name = 'BenchError';
}

/** A progress printer: `bench/NAME: msg` on stderr. */
export function noter(name) {
  return (msg) => process.stderr.write(`${name}: ${msg}\n`);
}

/** Runs `main`; on failure prints it (a BenchError without its stack), kills the children and exits 1. */
export function runMain(name, main) {
  main().catch((err) => {
    process.stderr.write(`${name}: error: ${err instanceof BenchError ? err.message : err?.stack ?? err}\n`);
    void exitAfterChildren(1);
  });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Removes `<name>.<pid>.tmp` entries of `dir` whose process is gone (`what`: the interrupted work, for the note). */
export function removeAbandoned(dir, note, what) {
  for (const name of readdirSync(dir)) {
    const m = /\.(\d+)\.tmp$/.exec(name);
    if (m && !alive(Number(m[1]))) {
      note(`removing ${name}, left by an interrupted ${what}`);
      rmSync(join(dir, name), { recursive: true, force: true });
    }
  }
}
