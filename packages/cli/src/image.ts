/**
 * Opening an image: the file, its partition table, and the ext2/3/4 file
 * system of one volume, with every failure turned into a message that says
 * what to do.
 */
import { CorruptError as DiskCorruptError, FileBlockSource, IoError as DiskIoError, listVolumes, probeSourceFormat, type BlockSource, type ImageFormat, type Partition, type Volume } from '@gammaray/disk';
import { CorruptError, CorruptKind, Ext4Volume, IncompatibleError } from '@gammaray/ext4';
import { replayJournal } from '@gammaray/inferencer';
import { RuntimeFailure, UserError, isReaderError } from './errors.js';
import { humanSize, shellWord } from './format.js';

/** A volume whose file system was opened. */
export interface OpenedVolume {
  /** Partition index (0 = the whole disk). */
  readonly index: number;
  readonly partition: Partition | undefined;
  readonly fs: Ext4Volume;
  /** How messages name it: `disk.img` or `disk.img partition 2`. */
  readonly label: string;
  /** The arguments that select it again in a suggested command: `disk.img --partition 2`. */
  readonly selector: string;
  /** An LVM logical volume (`vg/lv`) on the PV that is partition `index`. */
  readonly lv?: string;
  /** With `lv`: its first byte in the partition (or disk). */
  readonly lvStart?: number;
  /** The journal transactions replayed in memory to read it (see VolumeOptions), if any. */
  readonly replayed?: { readonly transactions: number; readonly blocks: number };
}

/** The result of trying one volume: its file system, or why there is none. */
export type Probe = { readonly volume: Volume; readonly label: string } & (
  | { readonly fs: Ext4Volume; readonly error?: undefined; readonly replayed?: { readonly transactions: number; readonly blocks: number } }
  | { readonly fs?: undefined; readonly error: Error; readonly format?: ImageFormat }
);

/** How volumes are opened. */
export interface VolumeOptions {
  /**
   * `--noload`: read the metadata as last written home, without replaying the journal (as `mount -o noload`).
   * By default a file system whose superblock asks for recovery is read with its journal's committed
   * transactions replayed in memory, as the kernel would mount it; the image is never written.
   */
  readonly noload?: boolean;
  /** `--lv VG/LV`: the LVM logical volume to read. */
  readonly lv?: string;
  /** Where to say that a journal was replayed (or could not be). */
  readonly note?: (message: string) => void;
}

/** A command's VolumeOptions: its `--noload`, and notes on the terminal. */
export function volumeOptions(term: { note(message: string): void }, opts: { readonly noload?: boolean; readonly lv?: string }): VolumeOptions {
  return { noload: opts.noload === true, ...(opts.lv !== undefined ? { lv: opts.lv } : {}), note: (m) => term.note(m) };
}

/** Opens the image file read-only; a missing or unreadable file is a user error. */
export async function openImage(image: string): Promise<FileBlockSource> {
  try {
    return await FileBlockSource.open(image);
  } catch (err) {
    if (err instanceof DiskIoError) throw new UserError(`${err.message}; check the IMAGE argument (a raw disk or file system image)`);
    throw err;
  }
}

/** `image`, `image partition N`, or with ` LV vg/lv` for a logical volume. */
export function volumeLabel(image: string, v: Volume): string {
  return `${v.index === 0 ? image : `${image} partition ${v.index}`}${v.lv ? ` LV ${v.lv}` : ''}`;
}

/**
 * The volumes to look at: all of them, or the one `--partition` picked.
 * Partition 0 is the whole image as one file system, ignoring any
 * partition table (an escape hatch for a damaged or misdetected table).
 */
export async function imageVolumes(image: string, src: BlockSource, partition: number | undefined, lv?: string): Promise<Volume[]> {
  const all = await partitionVolumes(image, src, partition);
  if (lv === undefined) return all;
  const v = all.filter((x) => x.lv === lv);
  if (v.length === 0) {
    const lvs = all.filter((x) => x.lv !== undefined);
    throw new UserError(`${image} has no LVM logical volume ${lv}${partition !== undefined ? ` in partition ${partition}` : ''} (${lvs.length > 0 ? `its logical volumes: ${describeVolumes(lvs)}; pass one of those to --lv` : 'it has none that gammaray reads: linear ones on a PV of this disk'})`);
  }
  return v;
}

/** The volumes of `image` in `partition` (all of them when undefined; see {@link imageVolumes}). */
async function partitionVolumes(image: string, src: BlockSource, partition: number | undefined): Promise<Volume[]> {
  if (partition === 0) return [Object.freeze({ index: 0, source: src })];
  let vols: Volume[];
  try {
    vols = await listVolumes(src);
  } catch (err) {
    if (err instanceof DiskCorruptError) {
      throw new UserError(`${image}: damaged partition table (${err.message}); pass --partition 0 to read the whole image as one file system`);
    }
    if (isReaderError(err)) throw new RuntimeFailure(`${image}: cannot read the partition table: ${err.message}`, { cause: err });
    throw err;
  }
  if (partition === undefined) {
    if (vols.length === 0) throw new UserError(`${image}: the partition table lists no partitions; pass --partition 0 to read the whole image as one file system`);
    return vols;
  }
  const v = vols.filter((x) => x.index === partition);
  if (v.length === 0) {
    const have = vols.length === 1 && vols[0]!.index === 0 ? 'it has no partition table; omit --partition' : `its partitions: ${describeVolumes(vols)}; pass one of those to --partition`; // ok: length checked
    throw new UserError(`${image} has no partition ${partition} (${have})`);
  }
  return v;
}

/** `1 (16 MiB), 2 (16 MiB "data")`, and `2 LV vg/root (64 MiB)` for a logical volume. */
export function describeVolumes(vols: readonly Volume[]): string {
  return vols.map((v) => `${v.index}${v.lv ? ` LV ${v.lv}` : ''} (${humanSize(v.source.size)}${v.partition?.name ? ` ${JSON.stringify(v.partition.name)}` : ''})`).join(', ');
}

/** Tries to open the file system of `volume`; never throws for bad disk data. */
export async function probe(image: string, volume: Volume, opts: VolumeOptions = {}): Promise<Probe> {
  const label = volumeLabel(image, volume);
  let fs: Ext4Volume;
  try {
    fs = await Ext4Volume.open(volume.source);
  } catch (err) {
    if (!isReaderError(err)) throw err;
    // No file system on a whole image: a qcow2 (VMDK...) given as raw says so (see probeError).
    const format = err instanceof CorruptError && err.kind === CorruptKind.SuperblockMagic && volume.index === 0 && volume.lv === undefined ? await probeSourceFormat(volume.source).catch(() => undefined) /* unreadable: the superblock error says enough */ : undefined;
    return format ? { volume, label, error: err, format } : { volume, label, error: err };
  }
  if (opts.noload || !fs.superblock.has.needsRecovery) return { volume, label, fs };
  try {
    const r = await replayJournal(volume.source, fs);
    if (!r) return { volume, label, fs };
    const replayed = await Ext4Volume.open(r.source);
    opts.note?.(
      `${label}: the journal holds ${r.transactions} committed transaction${r.transactions === 1 ? '' : 's'} not yet written home (the guest crashed or is running); read with them replayed in memory (${r.blocks} blocks), as the kernel would mount it; the image is not changed (--noload reads without them)`,
    );
    return { volume, label, fs: replayed, replayed: { transactions: r.transactions, blocks: r.blocks } };
  } catch (err) {
    if (!isReaderError(err)) throw err;
    opts.note?.(`${label}: the journal asks for recovery but cannot be replayed (${(err as Error).message}); reading the metadata as last written home, as mount -o noload would`);
    return { volume, label, fs };
  }
}

/** Whether a failed probe found no ext2/3/4 superblock at all (as opposed to one we cannot read). */
export function isNoFileSystem(p: Probe): boolean {
  return p.error instanceof CorruptError && p.error.kind === CorruptKind.SuperblockMagic;
}

/** The error a failed probe means to the user. */
export function probeError(p: Probe, partitioned: boolean): Error {
  const err = p.error;
  if (err === undefined) return new Error('probe succeeded');
  if (p.format) {
    const { format, evidence } = p.format;
    return new UserError(`${p.label} is a ${format} image (${evidence}), not a raw disk: gammaray reads raw images; convert it (qemu-img convert -f ${format} -O raw ${shellWord(p.label)} DISK.raw), or read its raw view through qemu-storage-daemon's FUSE export (README, "Other image formats")`);
  }
  if (err instanceof CorruptError && err.kind === CorruptKind.SuperblockMagic) {
    const hint = partitioned
      ? 'pick another partition with --partition N'
      : 'gammaray reads raw ext2/3/4 file system images and raw partitioned disks (convert others with qemu-img convert -O raw)';
    return new UserError(`${p.label}: no ext2/3/4 file system found (${err.message}); ${hint}`);
  }
  if (err instanceof IncompatibleError) {
    return new UserError(`${p.label}: the file system uses features gammaray cannot read (${err.features.join(', ')}); read it with a Linux kernel that supports them instead`);
  }
  if (err instanceof CorruptError) {
    return new UserError(`${p.label}: the ext2/3/4 superblock is damaged (${err.message}); check a copy of the image with e2fsck -fn`);
  }
  return new RuntimeFailure(`${p.label}: cannot read the file system: ${err.message}`, { cause: err });
}

/**
 * Picks the one file system a command works on: the volume `--partition`
 * names, the whole disk, or the only partition holding an ext2/3/4 file
 * system. Several candidates or none are user errors that list the
 * partitions.
 */
export async function openOneVolume(image: string, src: BlockSource, partition: number | undefined, opts: VolumeOptions = {}): Promise<OpenedVolume> {
  const vols = await imageVolumes(image, src, partition, opts.lv);
  const partitioned = vols.some((v) => v.index !== 0 || v.lv !== undefined);
  const probes: Probe[] = [];
  // Notes only for the volume used (probes of the others are not reported).
  let notes: string[] = [];
  const quiet = { ...opts, note: (m: string) => notes.push(m) };
  for (const v of vols) probes.push(await probe(image, v, quiet));
  const say = (p: Probe): Probe => {
    for (const m of notes) if (m.startsWith(`${p.label}: `)) opts.note?.(m);
    notes = [];
    return p;
  };
  if (probes.length === 1) return openedVolume(image, say(probes[0]!), partitioned); // ok: length checked
  const candidates = probes.filter((p) => !isNoFileSystem(p));
  if (candidates.length === 1) return openedVolume(image, say(candidates[0]!), partitioned); // ok: length checked
  if (candidates.length === 0) {
    throw new UserError(`${image}: no ext2/3/4 file system found in any of its partitions (${describeVolumes(vols)})`);
  }
  const list = candidates.map((p) => `${p.volume.index}${p.volume.lv ? ` LV ${p.volume.lv}` : ''} (${p.fs ? p.fs.kind : 'unreadable'})`).join(', ');
  const lvs = candidates.some((p) => p.volume.lv !== undefined) ? ' (and --lv VG/LV for a logical volume)' : '';
  throw new UserError(`${image} holds ${candidates.length} ext2/3/4 file systems (partitions ${list}); choose one with --partition N${lvs}`);
}

/**
 * The opened volume of a probe (probeError when it has no file system), with the arguments that select it again:
 * `--partition N` for a partition, `--lv VG/LV` for a logical volume (never `--partition 0`, which reads the whole
 * image as one file system and so finds no logical volume).
 */
export function openedVolume(image: string, p: Probe, partitioned: boolean): OpenedVolume {
  if (p.fs === undefined) throw probeError(p, partitioned);
  const base = p.volume.index !== 0 ? `${shellWord(image)} --partition ${p.volume.index}` : shellWord(image);
  const selector = p.volume.lv ? `${base} --lv ${shellWord(p.volume.lv)}` : base;
  const lv = p.volume.lv !== undefined ? { lv: p.volume.lv, lvStart: p.volume.lvStart ?? 0 } : {};
  return { index: p.volume.index, partition: p.volume.partition, fs: p.fs, label: p.label, selector, ...lv, ...(p.replayed ? { replayed: p.replayed } : {}) };
}

/** Opens `image`, picks its volume (see {@link openOneVolume}), runs `fn`, and closes the image. */
export async function withVolume<T>(image: string, partition: number | undefined, fn: (v: OpenedVolume) => Promise<T>, opts: VolumeOptions = {}): Promise<T> {
  const src = await openImage(image);
  try {
    return await fn(await openOneVolume(image, src, partition, opts));
  } finally {
    await src.close();
  }
}
