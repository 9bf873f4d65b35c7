/**
 * Scale-out of `gammaray inferencer` on one real nats-server: three real inferencer processes share the disks of
 * one real capture process; workers are killed with SIGKILL and restarted, one is paused past its lease, and the
 * events stream must hold, per disk, exactly the oracle's events, each once (the scenario is
 * test/support/scale-suite.ts). Needs `pnpm build` first (the CLI runs from its bundle).
 *
 * With `GAMMARAY_SCALE_FULL=1`, the acceptance test at full size (several minutes; not for CI): 30
 * disks, 20 kills at random moments, a real guest (QEMU TCG) creating, renaming and deleting files on two of
 * the disks through the capture while the kills go on, events compared with the oracle field by field (every
 * field but `ts`, data by hash), and a last step: the capture is stopped and each disk's events, folded over
 * its starting tree, must equal the kernel's view of the final image (read-only loop mount), content included.
 */
import { startNatsServer } from '../support/nats-server.js';
import { describeScaleOut } from '../support/scale-suite.js';

/** The full-size acceptance run (opt-in): 30 disks, 20 kills, real guests, final trees against the kernel. */
const FULL = process.env['GAMMARAY_SCALE_FULL'] === '1';

describeScaleOut({
  title: 'gammaray inferencer scale-out with real processes',
  full: FULL,
  disks: FULL ? 30 : 8,
  kills: FULL ? 20 : 3,
  guestDisks: FULL ? ['d0', 'd1'] : [],
  leaseTtlS: 2,
  startNats: () => startNatsServer({ jetstream: true }),
});
