/**
 * LVM2 physical volumes: the label, the PV header, the VG metadata (text format) of the first metadata area, and
 * the logical volumes that lie on this PV as one contiguous run of its extents (linear LVs, what installers make:
 * Ubuntu's `ubuntu-vg/ubuntu-lv`). Everything read is untrusted and bounded.
 *
 * On disk (lib/format_text/layout.h of LVM2):
 * - one of the first 4 sectors holds `label_header`: "LABELONE", le64 sector, le32 crc (of bytes 20..511),
 *   le32 offset of the PV header in the sector, "LVM2 001";
 * - `pv_header`: 32-byte uuid, le64 device size, then {le64 offset, le64 size} lists of data areas and of
 *   metadata areas, each ended by a zero entry (offsets from the PV's start);
 * - a metadata area starts with `mda_header`: le32 crc (of bytes 4..511), magic " LVM2 x[5A%r0N*>", le32
 *   version 1, le64 start, le64 size, then `raw_locn`s {le64 offset (from the area's start), le64 size, le32
 *   crc, le32 flags}: the first is the current metadata text, which wraps to byte 512 of the area at its end.
 * CRCs are LVM's: CRC-32 (reflected, 0xEDB88320) from 0xF597A6CF, without the final inversion.
 */
import type { BlockSource } from './block-source.js';
import { crc32 } from './crc32.js';
import { CorruptError, DiskCorruptKind } from './errors.js';

const SECTOR = 512;
const LABEL_SCAN_SECTORS = 4;
const MDA_HEADER_SIZE = 512;
const MDA_MAGIC = ' LVM2 x[5A%r0N*>';
const INITIAL_CRC = 0xf597a6cf;
/** Largest metadata text read (LVM's default metadata area is 1 MiB). */
export const MAX_LVM_METADATA_BYTES = 1024 * 1024;
/** Entries read from each pv_header list. */
const MAX_AREAS = 8;
/** Nesting of the metadata text (vg > logical_volumes > lv > segment > stripes is 5). */
const MAX_DEPTH = 16;
/** Logical volumes and segments looked at. */
const MAX_LVS = 1024;
const MAX_SEGMENTS = 1024;

/** A logical volume stored as one contiguous run on this PV. */
export interface LinearLv {
  /** `vg/lv`. */
  readonly name: string;
  /** First byte, from the PV's start. */
  readonly start: number;
  readonly size: number;
}

/** What {@link readLvmPv} finds on a PV. */
export interface LvmPv {
  readonly vg: string;
  /** The PV's uuid as LVM prints it (6-4-4-4-4-4-6). */
  readonly pvUuid: string;
  /** Bytes from the PV's start to its first extent (pe_start). */
  readonly dataStart: number;
  readonly extentSize: number;
  /** The linear LVs of this PV (others: striped, on several PVs, thin, RAID... are left out). */
  readonly lvs: readonly LinearLv[];
  /** Bytes from the PV's start to the end of its metadata (label, header and metadata areas before dataStart). */
  readonly metadataEnd: number;
}

function lvmCrc(data: Uint8Array, initial = INITIAL_CRC): number {
  // crc32() is zlib's: inverted before and after. LVM's is the same table walk without the inversions.
  return ~crc32(data, ~initial >>> 0) >>> 0;
}

function u64(v: DataView, at: number, what: string): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptError(DiskCorruptKind.Lvm, `LVM ${what} ${n} is too large`);
  return Number(n);
}

/** The PV uuid as LVM prints it. */
function uuidText(raw: Uint8Array): string {
  const s = new TextDecoder('latin1').decode(raw);
  const groups = [6, 4, 4, 4, 4, 4, 6];
  const out: string[] = [];
  let at = 0;
  for (const g of groups) {
    out.push(s.slice(at, at + g));
    at += g;
  }
  return out.join('-');
}

/**
 * The LVM2 PV on `src` (a whole disk or a partition), or undefined when `src` does not start with an LVM2
 * label. Throws CorruptError (kind `Lvm`) for a label whose header, metadata area or text is damaged.
 */
export async function readLvmPv(src: BlockSource): Promise<LvmPv | undefined> {
  if (src.size < LABEL_SCAN_SECTORS * SECTOR) return undefined;
  const head = await src.read(0, LABEL_SCAN_SECTORS * SECTOR);
  let label = -1;
  for (let s = 0; s < LABEL_SCAN_SECTORS; s++) {
    if (new TextDecoder('latin1').decode(head.subarray(s * SECTOR, s * SECTOR + 8)) === 'LABELONE') {
      label = s;
      break;
    }
  }
  if (label < 0) return undefined;
  const sec = head.subarray(label * SECTOR, (label + 1) * SECTOR);
  const v = new DataView(sec.buffer, sec.byteOffset, SECTOR);
  if (new TextDecoder('latin1').decode(sec.subarray(24, 32)) !== 'LVM2 001') return undefined;
  if (v.getUint32(16, true) !== lvmCrc(sec.subarray(20))) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM label checksum mismatch', { block: label });
  const off = v.getUint32(20, true);
  if (off < 32 || off + 32 + 8 + 16 > SECTOR) throw new CorruptError(DiskCorruptKind.Lvm, `LVM pv_header offset ${off} is outside the label sector`, { block: label });
  const pvUuid = uuidText(sec.subarray(off, off + 32));
  // Data areas, then metadata areas, each list ended by a zero entry, all inside the label sector.
  let at = off + 40;
  const lists: [number, number][][] = [[], []];
  for (const list of lists) {
    for (let n = 0; ; n++) {
      if (at + 16 > SECTOR || n > MAX_AREAS) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM pv_header area list runs past the label sector', { block: label });
      const o = u64(v, at, 'area offset');
      const sz = u64(v, at + 8, 'area size');
      at += 16;
      if (o === 0 && sz === 0) break;
      list.push([o, sz]);
    }
  }
  const [data, mdas] = lists as [[number, number][], [number, number][]];
  const dataStart = data[0]?.[0];
  if (dataStart === undefined || dataStart <= 0 || dataStart >= src.size) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM PV has no data area inside it');
  const mda = mdas[0];
  if (!mda) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM PV has no metadata area (its VG metadata is on another PV)');
  const [mdaStart, mdaSize] = mda;
  if (mdaSize < MDA_HEADER_SIZE || mdaStart + mdaSize > src.size) throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata area ${mdaStart}+${mdaSize} is outside the PV`);
  const mh = await src.read(mdaStart, MDA_HEADER_SIZE);
  const mv = new DataView(mh.buffer, mh.byteOffset, MDA_HEADER_SIZE);
  if (new TextDecoder('latin1').decode(mh.subarray(4, 20)) !== MDA_MAGIC) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM metadata area header has no magic');
  if (mv.getUint32(0, true) !== lvmCrc(mh.subarray(4))) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM metadata area header checksum mismatch');
  const tOff = u64(mv, 40, 'metadata offset');
  const tSize = u64(mv, 48, 'metadata size');
  const tCrc = mv.getUint32(56, true);
  if (tSize === 0 || tSize > MAX_LVM_METADATA_BYTES || tOff < MDA_HEADER_SIZE || tOff >= mdaSize || tSize > mdaSize - MDA_HEADER_SIZE) {
    throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata text ${tOff}+${tSize} does not fit its ${mdaSize}-byte area`);
  }
  // The text is a circular buffer after the header: it may wrap to byte MDA_HEADER_SIZE.
  const first = Math.min(tSize, mdaSize - tOff);
  const text = new Uint8Array(tSize);
  text.set(await src.read(mdaStart + tOff, first), 0);
  if (first < tSize) text.set(await src.read(mdaStart + MDA_HEADER_SIZE, tSize - first), first);
  if (lvmCrc(text) !== tCrc) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM metadata text checksum mismatch');
  const doc = parseLvmText(new TextDecoder('utf-8').decode(text.subarray(0, text.indexOf(0) < 0 ? text.length : text.indexOf(0))));
  return describe(doc, pvUuid, Math.max(dataStart, mdaStart + mdaSize), src.size);
}

/** A value of LVM's text format. */
export type LvmValue = string | number | LvmValue[] | LvmSection;
/** A section `name { key = value ... }`. */
export interface LvmSection {
  readonly [key: string]: LvmValue;
}

/**
 * Parses LVM's text metadata format (`key = value`, `name { ... }`, arrays `[a, b]`, "strings", numbers,
 * `#` comments). Throws CorruptError on anything else.
 */
export function parseLvmText(text: string): LvmSection {
  let i = 0;
  const bad = (what: string): CorruptError => new CorruptError(DiskCorruptKind.Lvm, `LVM metadata text: ${what} at character ${i}`);
  const skip = (): void => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i]!)) i++; // ok: in range
      if (text[i] !== '#') return;
      while (i < text.length && text[i] !== '\n') i++;
    }
  };
  const ident = (): string => {
    const m = /^[A-Za-z0-9_.+\-]+/.exec(text.slice(i, i + 256));
    if (!m) throw bad('expected a name');
    i += m[0].length;
    return m[0];
  };
  const value = (depth: number): LvmValue => {
    skip();
    const c = text[i];
    if (c === '"') {
      let s = '';
      for (i++; i < text.length && text[i] !== '"'; i++) {
        if (text[i] === '\\') i++;
        s += text[i] ?? '';
      }
      if (text[i] !== '"') throw bad('unterminated string');
      i++;
      return s;
    }
    if (c === '[') {
      if (depth > MAX_DEPTH) throw bad('arrays nest too deeply');
      i++;
      const out: LvmValue[] = [];
      for (;;) {
        skip();
        if (text[i] === ']') {
          i++;
          return out;
        }
        out.push(value(depth + 1));
        skip();
        if (text[i] === ',') i++;
        else if (text[i] !== ']') throw bad('expected , or ]');
      }
    }
    const m = /^-?\d+(\.\d+)?/.exec(text.slice(i, i + 32));
    if (!m) throw bad('expected a value');
    i += m[0].length;
    return Number(m[0]);
  };
  const section = (depth: number, top: boolean): LvmSection => {
    if (depth > MAX_DEPTH) throw bad('sections nest too deeply');
    const out: Record<string, LvmValue> = Object.create(null) as Record<string, LvmValue>;
    for (;;) {
      skip();
      if (i >= text.length) {
        if (top) return out;
        throw bad('unterminated section');
      }
      if (text[i] === '}') {
        if (top) throw bad('unexpected }');
        i++;
        return out;
      }
      const key = ident();
      skip();
      if (text[i] === '{') {
        i++;
        out[key] = section(depth + 1, false);
      } else if (text[i] === '=') {
        i++;
        out[key] = value(depth);
      } else {
        throw bad('expected = or {');
      }
    }
  };
  return section(0, true);
}

function isSection(v: LvmValue | undefined): v is LvmSection {
  return v !== undefined && typeof v === 'object' && !Array.isArray(v);
}

function num(v: LvmValue | undefined, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata: ${what} is not a non-negative integer`);
  return v;
}

/** The VG of `doc` as seen from the PV `pvUuid`: its linear LVs on it. */
function describe(doc: LvmSection, pvUuid: string, metadataEnd: number, pvSize: number): LvmPv {
  const vgName = Object.keys(doc).find((k) => isSection(doc[k]) && isSection((doc[k] as LvmSection)['physical_volumes']));
  if (vgName === undefined) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM metadata names no volume group');
  const vg = doc[vgName] as LvmSection;
  const extentSize = num(vg['extent_size'], 'extent_size') * SECTOR;
  if (extentSize === 0) throw new CorruptError(DiskCorruptKind.Lvm, 'LVM metadata: extent_size is 0');
  const pvs = vg['physical_volumes'] as LvmSection;
  const mine = Object.keys(pvs).find((k) => isSection(pvs[k]) && (pvs[k] as LvmSection)['id'] === pvUuid);
  if (mine === undefined) throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata of VG ${vgName} does not list this PV (${pvUuid})`);
  const peStart = num((pvs[mine] as LvmSection)['pe_start'], 'pe_start') * SECTOR;
  // Where the extents start bounds every LV and the metadata range watched for changes: inside the PV.
  if (peStart === 0 || peStart >= pvSize) throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata: pe_start ${peStart} bytes is outside the ${pvSize}-byte PV`);
  if (extentSize > pvSize) throw new CorruptError(DiskCorruptKind.Lvm, `LVM metadata: extent_size ${extentSize} bytes is larger than the ${pvSize}-byte PV`);
  const lvs: LinearLv[] = [];
  const lvSection = vg['logical_volumes'];
  const names = isSection(lvSection) ? Object.keys(lvSection).slice(0, MAX_LVS) : [];
  for (const name of names) {
    const lv = (lvSection as LvmSection)[name];
    if (!isSection(lv)) continue;
    const segs: [number, number, number][] = []; // [start extent of the LV, extent count, first PV extent]
    let linear = true;
    for (const key of Object.keys(lv).slice(0, MAX_SEGMENTS)) {
      const seg = lv[key];
      if (!key.startsWith('segment') || !isSection(seg)) continue;
      const stripes = seg['stripes'];
      if (seg['type'] !== 'striped' || seg['stripe_count'] !== 1 || !Array.isArray(stripes) || stripes.length !== 2 || stripes[0] !== mine) {
        linear = false;
        break;
      }
      segs.push([num(seg['start_extent'], 'start_extent'), num(seg['extent_count'], 'extent_count'), num(stripes[1], 'stripe start')]);
    }
    if (!linear || segs.length === 0) continue;
    // One contiguous run: segments in LV order whose PV extents follow each other.
    segs.sort((a, b) => a[0] - b[0]);
    let ok = segs[0]![0] === 0; // ok: length checked
    for (let k = 1; ok && k < segs.length; k++) {
      const [s0, n0, p0] = segs[k - 1]!; // ok: k >= 1
      const [s1, , p1] = segs[k]!; // ok: k < length
      ok = s1 === s0 + n0 && p1 === p0 + n0;
    }
    if (!ok) continue;
    const extents = segs.reduce((n, s) => n + s[1], 0);
    const start = peStart + segs[0]![2] * extentSize; // ok: length checked
    const size = extents * extentSize;
    if (start + size > pvSize || size === 0) continue;
    lvs.push({ name: `${vgName}/${name}`, start, size });
  }
  return { vg: vgName, pvUuid, dataStart: peStart, extentSize, lvs, metadataEnd: Math.max(metadataEnd, peStart) };
}
