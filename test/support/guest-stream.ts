/**
 * Records what a real guest workload writes: builds an ext4 image (mkfs.ext4 -d from a source tree), serves it
 * with the real capture process into a real nats-server, boots the real guest on it, and returns the starting
 * image, the final image and every record of the write stream. Inference tests replay the records.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runGuest, type GuestResult } from '../guest/guest.js';
import { startCapture } from './capture-process.js';
import { readRecords, type StoredRecord } from './writes-stream.js';

const exec = promisify(execFile);

/** What {@link recordGuestWorkload} leaves behind. */
export interface RecordedWorkload {
  /** The image before the guest booted. */
  readonly start: string;
  /** The image after the guest powered off. */
  readonly final: string;
  readonly records: StoredRecord[];
  readonly guest: GuestResult;
}

/** Options of {@link recordGuestWorkload}. */
export interface RecordOptions {
  readonly nats: string;
  readonly work: string;
  readonly disk: string;
  /** Files of the starting tree: relative path -> content. */
  readonly files?: Record<string, string | Uint8Array>;
  /** Image size in MiB (default 64). */
  readonly sizeMiB?: number;
  /** Extra mkfs.ext4 arguments (e.g. `-O ^has_journal`, `-t ext2`). */
  readonly mkfs?: readonly string[];
  readonly workload: string;
  readonly timeoutMs?: number;
}

/** Builds the image, runs the workload through the capture, reads back the stream. */
export async function recordGuestWorkload(o: RecordOptions): Promise<RecordedWorkload> {
  const src = join(o.work, `${o.disk}.src`);
  mkdirSync(src, { recursive: true });
  for (const [rel, content] of Object.entries(o.files ?? {})) {
    const p = join(src, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
  }
  const final = join(o.work, `${o.disk}.img`);
  await exec('mkfs.ext4', ['-q', '-F', ...(o.mkfs ?? []), '-d', src, final, `${o.sizeMiB ?? 64}M`]);
  const start = join(o.work, `${o.disk}.start.img`);
  copyFileSync(final, start);
  const cap = await startCapture(o.nats, { [o.disk]: final });
  let guest: GuestResult;
  try {
    guest = await runGuest({ nbd: cap.url(o.disk), workload: o.workload, timeoutMs: o.timeoutMs ?? 120_000 });
  } finally {
    await cap.stop();
  }
  if (guest.status !== 0) throw new Error(`guest workload failed (${guest.status}):\n${guest.console}\n${guest.stderr}`);
  return { start, final, records: await readRecords(o.nats, o.disk), guest };
}
