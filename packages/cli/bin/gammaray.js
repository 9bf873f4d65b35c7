#!/usr/bin/env node
// The CLI runs from one bundled file (built by `pnpm build`): loading one module instead of
// thirty takes ~50 ms off every command, a third of Node's own start-up.
import { main } from '../dist/gammaray.cjs';

main(process.argv).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`gammaray: internal error: ${err?.stack ?? err}\n`); process.exitCode = 1; },
);
