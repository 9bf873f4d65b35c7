import { SliceBlockSource, type BlockSource } from './block-source.js';
import { readLvmPv, type LvmPv } from './lvm.js';
import { CorruptError, DiskCorruptKind } from './errors.js';
import { GPT_SECTOR_SIZES, MAX_MBR_LOGICAL, MBR_SECTOR_SIZE } from './limits.js';
import { decodeGptEntries, decodeGptHeader, GPT_PRIMARY_LBA, hasGptSignature, type GptEntry, type GptHeader } from './ondisk/gpt.js';
import { decodeEbr, decodeMbr, isMbrEntryUsed, isMbrExtendedType, MBR_TYPE_GPT_PROTECTIVE, type Mbr, type MbrEntry } from './ondisk/mbr.js';

/** How a disk is partitioned. */
export const PartitionScheme = {
  Gpt: 'gpt',
  Mbr: 'mbr',
  /** No partition table: the whole disk is one volume (e.g. a file system at offset 0). */
  None: 'none',
} as const;
/** See {@link PartitionScheme}. */
export type PartitionScheme = (typeof PartitionScheme)[keyof typeof PartitionScheme];

/** One partition, in bytes, already checked (or clipped) against the disk size. */
export interface Partition {
  /**
   * 1-based number as Linux gives it (`sdaN`): MBR primaries are their slot
   * 1-4, logicals count 5, 6, ... in chain order; GPT partitions are their
   * slot in the entry array + 1 (so 1..n for a table without holes).
   */
  readonly index: number;
  /** First byte on the disk. */
  readonly start: number;
  /** Length in bytes (> 0). */
  readonly size: number;
  /** MBR: the type byte as `0x83`; GPT: the type GUID, lowercase. */
  readonly type: string;
  /** GPT partition name, if not empty. */
  readonly name?: string;
  /**
   * Linux PARTUUID: the GPT unique partition GUID (lowercase), or for MBR the
   * disk signature and the index, `1a2b3c4d-05`.
   */
  readonly uuid?: string;
}

/** The result of {@link readPartitions}. */
export interface PartitionTable {
  /** Which table was found. */
  readonly scheme: PartitionScheme;
  /** Partitions in index order; for MBR includes the extended containers (see {@link isExtendedPartition}). */
  readonly partitions: readonly Partition[];
  /** GPT only: the primary header or entry array was bad and the backup was used. */
  readonly usedBackup?: boolean;
  /** Logical sector size the table's LBAs are counted in (512 for MBR and none). */
  readonly sectorSize: number;
  /** GPT disk GUID, or the MBR disk signature as 8 hex digits. */
  readonly diskId?: string;
  /** Damage that was tolerated (clipped partitions, broken EBR chain, bad primary GPT, ...). */
  readonly warnings: readonly string[];
}

/** Options of {@link readPartitions}. */
export interface ReadPartitionsOptions {
  /**
   * Throw instead of warn. By default the reader behaves like Linux: a
   * partition that runs past the end of the disk is clipped, one that starts
   * past it or ends before it starts is dropped, and a broken EBR chain ends
   * the logical partitions found so far - each with a warning. With `strict`
   * those become {@link CorruptError} `PartitionRange` / `MbrExtendedChain`.
   */
  readonly strict?: boolean;
}

/** A volume to look for a file system in: a partition, the whole unpartitioned disk, or an LVM logical volume. */
export interface Volume {
  /** The partition's index, or 0 for the whole disk when the scheme is `none` (an LV: its PV's). */
  readonly index: number;
  /** The volume's bytes (a window of the disk for a partition). */
  readonly source: BlockSource;
  /** The partition, absent for the whole disk. */
  readonly partition?: Partition;
  /** A linear LVM logical volume (`vg/lv`) on the PV that is this partition (or the whole disk). */
  readonly lv?: string;
  /** With `lv`: the LV's first byte in the partition (or disk). */
  readonly lvStart?: number;
}

/** True for an MBR extended partition (types 0x05, 0x0F, 0x85): a container of logicals, not a volume. */
export function isExtendedPartition(p: Partition): boolean {
  return p.type.startsWith('0x') && isMbrExtendedType(Number.parseInt(p.type.slice(2), 16));
}

/** The bytes of partition `p` of disk `src`. */
export function partitionSource(src: BlockSource, p: Partition): SliceBlockSource {
  return new SliceBlockSource(src, p.start, p.size);
}

/**
 * The volumes of `table` (from {@link readPartitions} on `src`): the whole
 * disk as index 0 when there is no table, else one per partition except MBR
 * extended containers.
 */
export function volumesFromTable(src: BlockSource, table: PartitionTable): Volume[] {
  if (table.scheme === PartitionScheme.None) return [Object.freeze({ index: 0, source: src })];
  return table.partitions.filter((p) => !isExtendedPartition(p)).map((p) => Object.freeze({ index: p.index, source: partitionSource(src, p), partition: p }));
}

/**
 * Reads the partition table of `src` and returns its volumes (see {@link volumesFromTable}), each LVM2 PV among
 * them replaced by its linear logical volumes (a PV whose metadata is damaged, or that has none, stays as it is).
 */
export async function listVolumes(src: BlockSource, options: ReadPartitionsOptions = {}): Promise<Volume[]> {
  const out: Volume[] = [];
  for (const v of volumesFromTable(src, await readPartitions(src, options))) {
    let pv: LvmPv | undefined;
    try {
      pv = await readLvmPv(v.source);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
    }
    if (!pv || pv.lvs.length === 0) {
      out.push(v);
      continue;
    }
    for (const lv of pv.lvs) out.push(Object.freeze({ ...v, source: new SliceBlockSource(v.source, lv.start, lv.size), lv: lv.name, lvStart: lv.start }));
  }
  return out;
}

/**
 * Reads the partition table of an untrusted disk.
 *
 * - MBR with a 0xEE entry, or no valid MBR but "EFI PART" at LBA 1: GPT
 *   (512-byte sectors, or 4096 if the header is only found there). A primary
 *   header or entry array that fails validation or its CRC32 falls back to the
 *   backup (at the primary's `alternate_lba` if that header was intact, else
 *   the last LBA); `usedBackup` tells which was used.
 * - MBR with used entries: primaries, extended containers and the logicals of
 *   their EBR chains (at most {@link MAX_MBR_LOGICAL} EBRs, loops detected).
 * - Otherwise (no 0x55AA, boot indicators that are not 0x00/0x80 as in a FAT
 *   boot sector, four empty slots, or no used slot on the disk): `none`.
 *
 * Partitions past the disk end are clipped or dropped with a warning unless
 * `options.strict` (see {@link ReadPartitionsOptions}).
 *
 * @throws {@link CorruptError} if a GPT is announced by a protective MBR but
 *   neither copy is usable, or in strict mode for the damage described above.
 * @throws IoError if the source fails.
 */
export async function readPartitions(src: BlockSource, options: ReadPartitionsOptions = {}): Promise<PartitionTable> {
  const ctx = new Reader(src, options.strict ?? false);
  if (src.size < MBR_SECTOR_SIZE) {
    ctx.warnings.push(`disk of ${src.size} bytes is smaller than one sector`);
    return ctx.none();
  }
  let mbr: Mbr | undefined;
  try {
    mbr = decodeMbr(await src.read(0, MBR_SECTOR_SIZE));
  } catch (err) {
    if (!(err instanceof CorruptError)) throw err;
  }
  const used = mbr?.entries.filter(isMbrEntryUsed) ?? [];
  if (used.some((e) => e.type === MBR_TYPE_GPT_PROTECTIVE)) {
    if (used.length > 1) ctx.warnings.push('hybrid MBR (0xEE and other entries): using the GPT');
    return ctx.readGpt(await ctx.gptSectorSize());
  }
  if (mbr !== undefined && used.length > 0) {
    const table = await ctx.readMbr(mbr);
    if (table.partitions.length > 0) return table;
    // Every used slot pointed off the disk: boot code that happens to pass the
    // boot-indicator check, not a table. (Strict mode threw already.)
    ctx.warnings.push('no MBR partition lies on the disk; treating the disk as unpartitioned');
    return ctx.none();
  }

  // No usable MBR. A GPT whose protective MBR was wiped is still found (as
  // with Linux's gpt=force), but only if the primary header is there, and a
  // broken one means "no table" rather than an error.
  for (const ss of GPT_SECTOR_SIZES) {
    if (src.size >= 2 * ss && hasGptSignature(await src.read(ss, 8))) {
      ctx.warnings.push('GPT without a protective MBR');
      try {
        return await ctx.readGpt(ss);
      } catch (err) {
        if (!(err instanceof CorruptError)) throw err;
        ctx.warnings.length = 0;
        ctx.warnings.push(`ignoring a damaged GPT without a protective MBR: ${err.message}`);
        return ctx.none();
      }
    }
  }
  return ctx.none();
}

interface GptCopy {
  readonly header?: GptHeader;
  readonly entries?: GptEntry[];
  readonly error?: CorruptError;
}

/** State of one readPartitions call. */
class Reader {
  readonly warnings: string[] = [];

  constructor(
    private readonly src: BlockSource,
    private readonly strict: boolean,
  ) {}

  none(): PartitionTable {
    return this.table({ scheme: PartitionScheme.None, partitions: [], sectorSize: MBR_SECTOR_SIZE });
  }

  /** Throws `err` in strict mode, else records it. */
  problem(err: CorruptError): void {
    if (this.strict) throw err;
    this.warnings.push(err.message);
  }

  private table(t: Omit<PartitionTable, 'warnings'>): PartitionTable {
    return Object.freeze({ ...t, partitions: Object.freeze(t.partitions), warnings: Object.freeze([...this.warnings]) });
  }

  /**
   * Checks a partition of `sectors` sectors at `lba` against the disk: returns
   * its byte range, clipped to the disk, or undefined if nothing of it is on
   * the disk. Only comparisons before multiplying, so nothing exceeds 2^53.
   */
  place(index: number, lba: number, sectors: number, sectorSize: number, fields: readonly [string, string]): { start: number; size: number } | undefined {
    const diskSectors = Math.floor(this.src.size / sectorSize);
    if (lba >= diskSectors) {
      this.problem(
        new CorruptError(DiskCorruptKind.PartitionRange, `partition ${index} starts at sector ${lba}, beyond the ${diskSectors}-sector disk; ignored`, {
          block: lba,
          field: fields[0],
        }),
      );
      return undefined;
    }
    if (sectors > diskSectors - lba) {
      this.problem(
        new CorruptError(DiskCorruptKind.PartitionRange, `partition ${index} (sectors ${lba}+${sectors}) extends past the ${diskSectors}-sector disk; truncated`, {
          block: lba,
          field: fields[1],
        }),
      );
      sectors = diskSectors - lba;
    }
    return { start: lba * sectorSize, size: sectors * sectorSize };
  }

  // ---- MBR ----

  async readMbr(mbr: Mbr): Promise<PartitionTable> {
    const sig = mbr.diskSignature.toString(16).padStart(8, '0');
    const partitions: Partition[] = [];
    const add = (index: number, e: MbrEntry, lba: number): void => {
      const r = this.place(index, lba, e.sectorCount, MBR_SECTOR_SIZE, ['start_sect', 'nr_sects']);
      if (r === undefined) return;
      const type = `0x${e.type.toString(16).padStart(2, '0')}`;
      partitions.push(Object.freeze({ index, start: r.start, size: r.size, type, uuid: `${sig}-${index.toString(16).padStart(2, '0')}` }));
    };
    for (const e of mbr.entries) if (isMbrEntryUsed(e)) add(e.slot + 1, e, e.startLba);

    const chain = { visited: new Set<number>(), next: 5 };
    for (const e of mbr.entries) {
      if (isMbrEntryUsed(e) && isMbrExtendedType(e.type)) await this.readLogicals(e, chain, add);
    }
    return this.table({ scheme: PartitionScheme.Mbr, partitions, sectorSize: MBR_SECTOR_SIZE, diskId: sig });
  }

  private chainProblem(message: string, block: number, field: string, cause?: unknown): void {
    this.problem(new CorruptError(DiskCorruptKind.MbrExtendedChain, message, { block, field, cause }));
  }

  /**
   * Follows the EBR chain of the extended primary `ext`. Ends because every
   * step either adds a new sector to `chain.visited` (capped at
   * MAX_MBR_LOGICAL, shared by all extended primaries) or stops.
   */
  private async readLogicals(ext: MbrEntry, chain: { visited: Set<number>; next: number }, add: (index: number, e: MbrEntry, lba: number) => void): Promise<void> {
    const diskSectors = Math.floor(this.src.size / MBR_SECTOR_SIZE);
    const extStart = ext.startLba;
    // u32 + u32: exact.
    const extEnd = Math.min(extStart + ext.sectorCount, diskSectors);
    // A container that is not on the disk at all was already reported by place().
    if (extStart >= extEnd) return;
    let ebrLba = extStart;
    for (;;) {
      if (chain.visited.has(ebrLba)) {
        this.chainProblem(`EBR chain of partition ${ext.slot + 1} loops back to sector ${ebrLba}`, ebrLba, 'start_sect');
        return;
      }
      if (chain.visited.size >= MAX_MBR_LOGICAL) {
        this.chainProblem(`more than ${MAX_MBR_LOGICAL} EBRs; ignoring the rest`, ebrLba, 'start_sect');
        return;
      }
      chain.visited.add(ebrLba);
      let ebr: Mbr;
      try {
        ebr = decodeEbr(await this.src.read(ebrLba * MBR_SECTOR_SIZE, MBR_SECTOR_SIZE), ebrLba);
      } catch (err) {
        if (!(err instanceof CorruptError)) throw err;
        this.problem(err);
        return;
      }
      // Slot 0 is the logical partition and slot 1 the link; like Linux, take
      // the first data entry of slots 0-1 and the first extended entry of all four.
      const [s0, s1] = ebr.entries;
      const logical = [s0, s1].find((e) => e !== undefined && isMbrEntryUsed(e) && !isMbrExtendedType(e.type));
      if (logical !== undefined) add(chain.next++, logical, ebrLba + logical.startLba);
      const link = ebr.entries.find((e) => isMbrEntryUsed(e) && isMbrExtendedType(e.type));
      if (link === undefined) return;
      const next = extStart + link.startLba;
      if (next >= extEnd) {
        this.chainProblem(`EBR at sector ${ebrLba} links to sector ${next}, outside extended partition ${ext.slot + 1} (sectors ${extStart}..${extEnd - 1} on disk)`, ebrLba, 'start_sect');
        return;
      }
      ebrLba = next;
    }
  }

  // ---- GPT ----

  /** The logical sector size whose LBA 1 (else last LBA) holds "EFI PART"; 512 if none does. */
  async gptSectorSize(): Promise<number> {
    for (const ss of GPT_SECTOR_SIZES) {
      if (this.src.size >= 2 * ss && hasGptSignature(await this.src.read(ss, 8))) return ss;
    }
    for (const ss of GPT_SECTOR_SIZES) {
      const last = Math.floor(this.src.size / ss) - 1;
      if (last >= 2 && hasGptSignature(await this.src.read(last * ss, 8))) return ss;
    }
    return GPT_SECTOR_SIZES[0];
  }

  private async readGptCopy(lba: number, sectorSize: number, diskSectors: number): Promise<GptCopy> {
    let header: GptHeader;
    try {
      header = decodeGptHeader(await this.src.read(lba * sectorSize, sectorSize), lba, diskSectors);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      return { error: err };
    }
    try {
      // decodeGptHeader checked that the array lies on the disk.
      const bytes = await this.src.read(header.entriesLba * sectorSize, header.entryArrayBytes);
      return { header, entries: decodeGptEntries(bytes, header) };
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      return { header, error: err };
    }
  }

  async readGpt(sectorSize: number): Promise<PartitionTable> {
    const diskSectors = Math.floor(this.src.size / sectorSize);
    const lastLba = diskSectors - 1;
    if (lastLba < 2) {
      throw new CorruptError(DiskCorruptKind.GptHeader, `disk of ${this.src.size} bytes is too small for a GPT`, { block: GPT_PRIMARY_LBA, field: 'signature' });
    }
    const primary = await this.readGptCopy(GPT_PRIMARY_LBA, sectorSize, diskSectors);
    let used = primary;
    let usedBackup = false;
    if (primary.entries !== undefined && primary.header !== undefined) {
      await this.checkBackupHeader(primary.header, sectorSize, diskSectors);
    } else {
      // An intact primary header knows where its backup is; otherwise the spec
      // puts it in the last LBA.
      const candidates = new Set<number>();
      if (primary.header !== undefined && primary.header.alternateLba > GPT_PRIMARY_LBA && primary.header.alternateLba <= lastLba) candidates.add(primary.header.alternateLba);
      candidates.add(lastLba);
      const errors: string[] = [];
      let found: GptCopy | undefined;
      for (const lba of candidates) {
        const copy = await this.readGptCopy(lba, sectorSize, diskSectors);
        if (copy.entries !== undefined) {
          found = copy;
          break;
        }
        errors.push(copy.error?.message ?? `no GPT at LBA ${lba}`);
      }
      const perr = primary.error ?? new CorruptError(DiskCorruptKind.GptHeader, 'primary GPT unusable', { block: GPT_PRIMARY_LBA });
      if (found === undefined) {
        throw new CorruptError(perr.kind, `no usable GPT: primary: ${perr.message}; backup: ${errors.join('; ')}`, { block: perr.block, field: perr.field, cause: perr });
      }
      this.warnings.push(`primary GPT unusable (${perr.message}); using the backup at LBA ${found.header?.myLba}`);
      used = found;
      usedBackup = true;
    }
    const header = used.header as GptHeader; // ok: a copy with entries always has its header
    const entries = used.entries as GptEntry[]; // ok: checked above
    if (header.revision !== 0x00010000) this.warnings.push(`GPT revision 0x${header.revision.toString(16)} (expected 0x10000)`);
    if (header.lastUsableLba > lastLba) this.warnings.push(`GPT last usable LBA ${header.lastUsableLba} is beyond the ${diskSectors}-sector disk (truncated image?)`);

    const partitions: Partition[] = [];
    for (const e of entries) {
      const index = e.slot + 1;
      if (e.lastLba < e.firstLba) {
        this.problem(
          new CorruptError(DiskCorruptKind.PartitionRange, `partition ${index} ends (LBA ${e.lastLba}) before it starts (LBA ${e.firstLba}); ignored`, {
            block: header.entriesLba,
            field: 'ending_lba',
          }),
        );
        continue;
      }
      // At most 2^53 - 1 - 0 + 1: still exact.
      const r = this.place(index, e.firstLba, e.lastLba - e.firstLba + 1, sectorSize, ['starting_lba', 'ending_lba']);
      if (r === undefined) continue;
      const p: Partition = { index, start: r.start, size: r.size, type: e.typeGuid, uuid: e.uniqueGuid, ...(e.name !== '' ? { name: e.name } : {}) };
      partitions.push(Object.freeze(p));
    }
    return this.table({ scheme: PartitionScheme.Gpt, partitions, usedBackup, sectorSize, diskId: header.diskGuid });
  }

  /** With a good primary, only warns about a missing or damaged backup header (Linux does the same). */
  private async checkBackupHeader(primary: GptHeader, sectorSize: number, diskSectors: number): Promise<void> {
    const alt = primary.alternateLba;
    if (alt <= GPT_PRIMARY_LBA || alt >= diskSectors) {
      this.warnings.push(`backup GPT header LBA ${alt} is not on the ${diskSectors}-sector disk`);
      return;
    }
    try {
      decodeGptHeader(await this.src.read(alt * sectorSize, sectorSize), alt, diskSectors);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      this.warnings.push(`backup GPT header is damaged: ${err.message}`);
    }
  }
}
