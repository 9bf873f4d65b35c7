import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildInitramfs } from './build-initramfs.js';
import { GUEST_EXIT, runGuest } from './guest.js';
import type { DriveCache } from './guest.js';

const USAGE = `usage:
  run-guest --nbd URL --workload FILE [--timeout S] [--cache none|writeback|...] [--drive-opts OPTS]
            [--append KERNEL_ARGS] [--memory MIB]
  run-guest build-initramfs     build (or find cached) the base initramfs; prints kernel and initramfs paths

Boots a QEMU TCG guest whose /dev/vda is the NBD export URL (nbd://host:port[/export] or
nbd+unix:///export?socket=PATH), runs FILE with busybox sh in /mnt, syncs, unmounts, powers off.
Streams the guest console to stdout. Exit status: the workload's, 124 on timeout, 125 if the guest never reported.
`;

const CACHES: readonly DriveCache[] = ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'];

function usageError(message: string): number {
  process.stderr.write(`run-guest: ${message}\n${USAGE}`);
  return 2;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'build-initramfs') {
    const image = await buildInitramfs();
    process.stdout.write(`kernel=${image.kernel}\ninitramfs=${image.initramfs}\n`);
    return 0;
  }
  const { values } = parseArgs({
    args: [...argv],
    options: {
      nbd: { type: 'string' },
      workload: { type: 'string' },
      timeout: { type: 'string', default: '60' },
      cache: { type: 'string', default: 'none' },
      'drive-opts': { type: 'string' },
      append: { type: 'string' },
      memory: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.nbd === undefined) return usageError('--nbd is required');
  if (values.workload === undefined) return usageError('--workload is required');
  const timeoutS = Number(values.timeout);
  if (!(timeoutS > 0)) return usageError(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  const cache = values.cache as DriveCache; // ok: checked against CACHES next
  if (!CACHES.includes(cache)) return usageError(`--cache must be one of ${CACHES.join(', ')}`);
  const memoryMb = values.memory === undefined ? undefined : Number(values.memory);
  if (memoryMb !== undefined && !(memoryMb >= 64)) return usageError('--memory must be at least 64 (MiB)');

  const result = await runGuest({
    nbd: values.nbd,
    workload: await readFile(values.workload, 'utf8'),
    timeoutMs: timeoutS * 1000,
    cache,
    ...(values['drive-opts'] !== undefined ? { driveOpts: values['drive-opts'] } : {}),
    ...(values.append !== undefined ? { append: values.append } : {}),
    ...(memoryMb !== undefined ? { memoryMb } : {}),
    onConsole: (text) => process.stdout.write(text),
  });
  if (result.stderr !== '') process.stderr.write(result.stderr);
  if (result.status === GUEST_EXIT.timeout && result.outcome === 'timeout') {
    process.stderr.write(`run-guest: timed out after ${timeoutS} s; QEMU killed\n`);
  } else if (result.outcome === 'no-report') {
    process.stderr.write(`run-guest: guest never reported an exit status${result.guestError ? `: ${result.guestError}` : ''}\n`);
  }
  return result.status;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`run-guest: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = GUEST_EXIT.noReport;
  },
);
