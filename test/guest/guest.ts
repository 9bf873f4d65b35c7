import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { ERROR_MARKER, EXIT_MARKER, buildInitramfs, initrdWithWorkload } from './build-initramfs.js';
import type { BuildInitramfsOptions } from './build-initramfs.js';

/** Exit statuses {@link runGuest} and `run-guest` use when the workload's own status is unknown (as timeout(1)). */
export const GUEST_EXIT = {
  /** The run exceeded its timeout; QEMU was killed. */
  timeout: 124,
  /** QEMU exited (or failed to start the guest) without the guest printing the exit marker. */
  noReport: 125,
} as const;

/** How a guest run ended. */
export const GUEST_OUTCOME = {
  /** The guest printed the exit marker; `status` is the workload's exit status. */
  exited: 'exited',
  timeout: 'timeout',
  noReport: 'no-report',
} as const;
export type GuestOutcome = (typeof GUEST_OUTCOME)[keyof typeof GUEST_OUTCOME];

/** QEMU `-drive cache=` modes; `none` (O_DIRECT on the host side, flushes passed through) is the default. */
export type DriveCache = 'none' | 'writeback' | 'writethrough' | 'directsync' | 'unsafe';

/** Options for {@link runGuest}. */
export interface GuestOptions {
  /** QEMU NBD URL of the root disk: `nbd://127.0.0.1:10809[/export]` or `nbd+unix:///export?socket=/path`. */
  readonly nbd: string;
  /** Workload script text, run by busybox `sh` with cwd /mnt and `MNT=/mnt`. */
  readonly workload: string;
  /** Whole-run limit, boot included (default 60 s). QEMU is killed and the status is 124 past it. */
  readonly timeoutMs?: number;
  /** Called with guest console text as it arrives (serial port, `\r\n` line ends). */
  readonly onConsole?: (text: string) => void;
  /** `-drive cache=` mode (default `none`). */
  readonly cache?: DriveCache;
  /** Extra `-drive` suboptions appended verbatim, e.g. `aio=threads,discard=unmap`. */
  readonly driveOpts?: string;
  /** Extra kernel command line, appended after the harness's own. */
  readonly append?: string;
  /** Guest memory in MiB (default 512). */
  readonly memoryMb?: number;
  /** QEMU binary (default `qemu-system-x86_64`). */
  readonly qemu?: string;
  /** Extra QEMU arguments appended verbatim. */
  readonly qemuArgs?: readonly string[];
  /** Passed to {@link buildInitramfs}. */
  readonly image?: BuildInitramfsOptions;
  /** Aborting kills QEMU; the result then reads like a timeout. */
  readonly signal?: AbortSignal;
}

/** What a guest run left behind. */
export interface GuestResult {
  /** The workload's exit status, or 124 (timeout) / 125 (never reported). */
  readonly status: number;
  readonly outcome: GuestOutcome;
  /** Everything the guest wrote to its serial console. */
  readonly console: string;
  /** QEMU's own stderr (NBD connect errors land here). */
  readonly stderr: string;
  /** The reason the guest init gave for not running the workload, from its error marker. */
  readonly guestError?: string;
  /** Wall time from spawning QEMU to its exit. */
  readonly durationMs: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** After the marker, QEMU should exit at once (poweroff -f); past this it is killed and the status kept. */
const POWEROFF_GRACE_MS = 10_000;
const EXIT_LINE = new RegExp(`^${EXIT_MARKER}(\\d{1,3})\\r?$`, 'gm');
const ERROR_LINE = new RegExp(`^${ERROR_MARKER}(.*?)\\r?$`, 'm');

/** The last exit marker on the console (the workload's own output comes before init's), or `undefined`. */
export function parseExitMarker(consoleText: string): number | undefined {
  let status: number | undefined;
  for (const m of consoleText.matchAll(EXIT_LINE)) status = Number(m[1]);
  return status;
}

/** QEMU's option parser splits on commas; a literal comma in a value is written twice. */
function qemuOptValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** The QEMU command line for a run, exported so a test or a human can see exactly what boots. */
export function qemuArgs(kernel: string, initrd: string, options: GuestOptions): string[] {
  const drive = [`file=${qemuOptValue(options.nbd)}`, 'format=raw', 'if=virtio', `cache=${options.cache ?? 'none'}`];
  if (options.driveOpts) drive.push(options.driveOpts);
  // panic=-1 + -no-reboot: a dying init ends QEMU at once instead of hanging until the timeout.
  const append = ['console=ttyS0', 'quiet', 'panic=-1', 'rdinit=/init', options.append ?? ''].filter(Boolean);
  return [
    '-nodefaults',
    '-no-user-config',
    '-machine', 'q35',
    '-accel', 'tcg',
    '-cpu', 'max',
    '-smp', '1',
    '-m', String(options.memoryMb ?? 512),
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', kernel,
    '-initrd', initrd,
    '-append', append.join(' '),
    '-drive', drive.join(','),
    ...(options.qemuArgs ?? []),
  ];
}

/**
 * Boots a throwaway Linux guest under QEMU TCG whose /dev/vda is the NBD export `nbd`, runs `workload` on it
 * (mounted ext4 rw at /mnt), unmounts, powers off, and reports the workload's exit status from the console
 * marker. Never uses KVM (it hangs on this fleet). Rejects only when QEMU cannot be started or the initramfs
 * cannot be built; a guest that fails is a result with status 124/125, so a test can print its console.
 */
export async function runGuest(options: GuestOptions): Promise<GuestResult> {
  const image = await buildInitramfs(options.image);
  const dir = await mkdtemp(join(tmpdir(), 'gammaray-guest-'));
  try {
    const initrd = join(dir, 'initrd');
    await writeFile(initrd, initrdWithWorkload(await readFile(image.initramfs), options.workload));
    return await runQemu(options.qemu ?? 'qemu-system-x86_64', qemuArgs(image.kernel, initrd, options), options);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runQemu(qemu: string, args: string[], options: GuestOptions): Promise<GuestResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const decoder = new StringDecoder('utf8');
    let consoleText = '';
    let stderr = '';
    let timedOut = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const onAbort = (): void => {
      timedOut = true;
      kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const onText = (text: string): void => {
      if (text === '') return;
      consoleText += text;
      options.onConsole?.(text);
      if (graceTimer === undefined && parseExitMarker(consoleText) !== undefined) {
        graceTimer = setTimeout(kill, POWEROFF_GRACE_MS);
      }
    };
    child.stdout.on('data', (chunk: Buffer) => onText(decoder.write(chunk)));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      options.signal?.removeEventListener('abort', onAbort);
      reject(new Error(`cannot start ${qemu} (apt-get install qemu-system-x86)`, { cause: e }));
    });
    child.on('close', () => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      options.signal?.removeEventListener('abort', onAbort);
      onText(decoder.end());
      const marker = parseExitMarker(consoleText);
      const guestError = ERROR_LINE.exec(consoleText)?.[1];
      const outcome: GuestOutcome =
        marker !== undefined ? GUEST_OUTCOME.exited : timedOut ? GUEST_OUTCOME.timeout : GUEST_OUTCOME.noReport;
      const status =
        marker ?? (outcome === GUEST_OUTCOME.timeout ? GUEST_EXIT.timeout : GUEST_EXIT.noReport);
      resolve({
        status,
        outcome,
        console: consoleText,
        stderr,
        ...(guestError !== undefined ? { guestError } : {}),
        durationMs: Date.now() - started,
      });
    });
  });
}
