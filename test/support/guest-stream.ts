/**
 * Records what a real guest workload writes: builds an ext4 image (mkfs.ext4 -d from a source tree), serves it
 * with the real capture process into a real nats-server, boots the real guest on it, and returns the starting
 * image, the final image and every record of the write stream. Inference tests replay the records.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeWriteRecord, encodeWriteRecord } from '@gammaray/wire';
import { GUEST_OUTCOME, runGuest, type GuestResult } from '../guest/guest.js';
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
  /**
   * The file system's default mount options (mke2fs.conf `default_mntopts`, e.g. `acl,user_xattr,journal_data`):
   * how a data mode is chosen, since the guest's init mounts plainly.
   */
  readonly defaultMountOptions?: string;
  readonly workload: string;
  readonly timeoutMs?: number;
}

/** Bump when what a recording depends on changes (guest kernel, capture behaviour): old cache entries are ignored. */
const CACHE_VERSION = 1;

/**
 * Builds the image, runs the workload through the capture, reads back the stream. With `GAMMARAY_RECORDING_CACHE`
 * set to a directory, a recording made earlier with the same options (files, workload, size, mkfs) is reused
 * from there instead of booting the guest again: for iterating on the engine over the same streams. CI leaves it
 * unset (a stale recording would hide a change in the guest or the capture).
 */
export async function recordGuestWorkload(o: RecordOptions): Promise<RecordedWorkload> {
  const cacheRoot = process.env['GAMMARAY_RECORDING_CACHE'];
  if (!cacheRoot) return record(o);
  const key = createHash('sha256')
    .update(JSON.stringify([CACHE_VERSION, o.disk, Object.entries(o.files ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]), o.sizeMiB ?? 64, o.mkfs ?? [], o.workload, o.defaultMountOptions ?? '']))
    .digest('hex')
    .slice(0, 24);
  const dir = join(cacheRoot, `${o.disk}-${key}`);
  const stream = join(dir, 'records.bin');
  if (existsSync(join(dir, 'done'))) {
    // Copies where a recording would leave them: a test may change its images.
    const start = join(o.work, `${o.disk}.start.img`);
    const final = join(o.work, `${o.disk}.img`);
    copyFileSync(join(dir, 'start.img'), start);
    copyFileSync(join(dir, 'final.img'), final);
    const buf = readFileSync(stream);
    const records: StoredRecord[] = [];
    for (let off = 0; off < buf.length; ) {
      const seq = buf.readDoubleLE(off);
      const len = buf.readUInt32LE(off + 8);
      records.push({ seq, msgId: undefined, rec: decodeWriteRecord(buf.subarray(off + 12, off + 12 + len)) });
      off += 12 + len;
    }
    return { start, final, records, guest: { status: 0, outcome: GUEST_OUTCOME.exited, console: '(recording reused from the cache)', stderr: '', durationMs: 0 } };
  }
  const rec = await record(o);
  mkdirSync(dir, { recursive: true });
  copyFileSync(rec.start, join(dir, 'start.img'));
  copyFileSync(rec.final, join(dir, 'final.img'));
  const parts: Uint8Array[] = [];
  for (const r of rec.records) {
    const bytes = encodeWriteRecord(r.rec);
    const head = Buffer.alloc(12);
    head.writeDoubleLE(r.seq, 0);
    head.writeUInt32LE(bytes.length, 8);
    parts.push(head, bytes);
  }
  writeFileSync(stream, Buffer.concat(parts));
  writeFileSync(join(dir, 'done'), '');
  return rec;
}

async function record(o: RecordOptions): Promise<RecordedWorkload> {
  const src = join(o.work, `${o.disk}.src`);
  mkdirSync(src, { recursive: true });
  for (const [rel, content] of Object.entries(o.files ?? {})) {
    const p = join(src, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
  }
  const final = join(o.work, `${o.disk}.img`);
  let env = process.env;
  if (o.defaultMountOptions) {
    // mke2fs reads its configuration from MKE2FS_CONFIG: a copy of the system's with the default mount options.
    const conf = join(o.work, `${o.disk}.mke2fs.conf`);
    writeFileSync(conf, readFileSync('/etc/mke2fs.conf', 'utf8').replace('[defaults]', `[defaults]\n\tdefault_mntopts = ${o.defaultMountOptions}`));
    env = { ...process.env, MKE2FS_CONFIG: conf };
  }
  await exec('mkfs.ext4', ['-q', '-F', ...(o.mkfs ?? []), '-d', src, final, `${o.sizeMiB ?? 64}M`], { env });
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
