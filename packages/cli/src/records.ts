/**
 * The records `gammaray crawl` writes: one volume header per file system,
 * then one entry per path. The same record is built as a JSON line (by
 * hand: this runs per file, and it is several times faster than
 * JSON.stringify of a nested object) or as a BSON document.
 *
 * Entry fields, in order (optional ones are left out, never null):
 * record "entry", partition, path, ino, then if the inode was readable
 * type, mode (07777), uid, gid, size, nlink, mtime, mtimeNsec, atime,
 * atimeNsec, ctime, ctimeNsec (the tree-entry fields of CLI.md, same
 * order), crtime, crtimeNsec (inodes large enough to hold it), target
 * (symlinks), rdev {major, minor} (chr/blk), flags (i_flags), xattrs
 * [{name, value}] (non-empty only; value is base64 in JSON, binary in
 * BSON), blocks [{logical, physical, length, initialized}] (non-empty
 * only), and errors [{name, kind, message}] when something was unreadable.
 */
import { decodeDevice, decodeName, Ext4Error, type Ext4Inode, type Extent, type JournalSuperblock, type Xattr } from '@gammaray/ext4';
import { errorKind } from './errors.js';
import { uuidString } from './format.js';
import { JsonBytes, lit } from './json-bytes.js';
import type { OpenedVolume } from './image.js';

/** What crawl learned about one path. */
export interface EntryFacts {
  readonly partition: number;
  readonly path: string;
  readonly ino: number;
  /** Undefined if the inode could not be read (then `errors` says why). */
  readonly inode: Ext4Inode | undefined;
  readonly target?: Uint8Array | undefined;
  readonly xattrs?: readonly Xattr[] | undefined;
  readonly blocks?: readonly Extent[] | undefined;
  readonly errors: readonly Error[];
}

/** One problem, as stored in a record's `errors`. */
export interface ErrorRecord {
  readonly name: string;
  readonly kind: string;
  readonly message: string;
}

/** The record form of an error. */
export function errorRecord(err: Error): ErrorRecord {
  return { name: err.name, kind: errorKind(err), message: err.message };
}

function isDevice(inode: Ext4Inode): boolean {
  return inode.type === 'chr' || inode.type === 'blk';
}

function b64(v: Uint8Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

/** The entry as one JSON line (without the newline). */
export function entryJson(f: EntryFacts): string {
  let s = `{"record":"entry","partition":${f.partition},"path":${JSON.stringify(f.path)},"ino":${f.ino}`;
  const i = f.inode;
  if (i !== undefined) {
    s +=
      `,"type":"${i.type}","mode":${i.mode & 0o7777},"uid":${i.uid},"gid":${i.gid},"size":${i.size},"nlink":${i.linksCount}` +
      `,"mtime":${i.mtime.sec},"mtimeNsec":${i.mtime.nsec},"atime":${i.atime.sec},"atimeNsec":${i.atime.nsec},"ctime":${i.ctime.sec},"ctimeNsec":${i.ctime.nsec}`;
    if (i.crtime !== undefined) s += `,"crtime":${i.crtime.sec},"crtimeNsec":${i.crtime.nsec}`;
    if (f.target !== undefined) s += `,"target":${JSON.stringify(decodeName(f.target))}`;
    if (isDevice(i)) {
      const d = decodeDevice(i.iBlock);
      s += `,"rdev":{"major":${d.major},"minor":${d.minor}}`;
    }
    s += `,"flags":${i.flags}`;
    if (f.xattrs !== undefined && f.xattrs.length > 0) {
      s += ',"xattrs":[';
      for (let k = 0; k < f.xattrs.length; k++) {
        const x = f.xattrs[k]!; // ok: k < length
        s += `${k ? ',' : ''}{"name":${JSON.stringify(x.name)},"value":"${b64(x.value)}"}`;
      }
      s += ']';
    }
    if (f.blocks !== undefined && f.blocks.length > 0) {
      s += ',"blocks":[';
      for (let k = 0; k < f.blocks.length; k++) {
        const e = f.blocks[k]!; // ok: k < length
        s += `${k ? ',' : ''}{"logical":${e.logical},"physical":${e.physical},"length":${e.length},"initialized":${e.initialized}}`;
      }
      s += ']';
    }
  }
  if (f.errors.length > 0) s += `,"errors":${JSON.stringify(f.errors.map(errorRecord))}`;
  return `${s}}`;
}

const K = {
  entry: lit('{"record":"entry","partition":'),
  path: lit(',"path":'),
  ino: lit(',"ino":'),
  type: lit(',"type":'),
  mode: lit(',"mode":'),
  uid: lit(',"uid":'),
  gid: lit(',"gid":'),
  size: lit(',"size":'),
  nlink: lit(',"nlink":'),
  mtime: lit(',"mtime":'),
  mtimeNsec: lit(',"mtimeNsec":'),
  atime: lit(',"atime":'),
  atimeNsec: lit(',"atimeNsec":'),
  ctime: lit(',"ctime":'),
  ctimeNsec: lit(',"ctimeNsec":'),
  crtime: lit(',"crtime":'),
  crtimeNsec: lit(',"crtimeNsec":'),
  target: lit(',"target":'),
  rdevMajor: lit(',"rdev":{"major":'),
  rdevMinor: lit(',"minor":'),
  close: lit('}'),
  flags: lit(',"flags":'),
  xattrs: lit(',"xattrs":['),
  xName: lit('{"name":'),
  xValue: lit(',"value":'),
  blocks: lit(',"blocks":['),
  bLogical: lit('{"logical":'),
  bPhysical: lit(',"physical":'),
  bLength: lit(',"length":'),
  bInit: lit(',"initialized":'),
  comma: lit(','),
  endArr: lit(']'),
  errors: lit(',"errors":'),
  endLine: lit('}\n'),
} as const;
const TYPE_LIT: Readonly<Record<string, Uint8Array>> = Object.fromEntries(['file', 'dir', 'symlink', 'chr', 'blk', 'fifo', 'sock'].map((t) => [t, lit(`"${t}"`)]));

/**
 * Appends the entry as one JSON line (with its newline) to `out`, byte for
 * byte what `entryJson(f) + "\n"` is; the crawl's hot path.
 */
export function writeEntryJson(f: EntryFacts, out: JsonBytes): void {
  out.raw(K.entry).num(f.partition).raw(K.path).str(f.path).raw(K.ino).num(f.ino);
  const i = f.inode;
  if (i !== undefined) {
    out.raw(K.type).raw(TYPE_LIT[i.type] ?? lit(JSON.stringify(i.type)));
    out.raw(K.mode).num(i.mode & 0o7777).raw(K.uid).num(i.uid).raw(K.gid).num(i.gid).raw(K.size).num(i.size).raw(K.nlink).num(i.linksCount);
    out.raw(K.mtime).num(i.mtime.sec).raw(K.mtimeNsec).num(i.mtime.nsec);
    out.raw(K.atime).num(i.atime.sec).raw(K.atimeNsec).num(i.atime.nsec);
    out.raw(K.ctime).num(i.ctime.sec).raw(K.ctimeNsec).num(i.ctime.nsec);
    if (i.crtime !== undefined) out.raw(K.crtime).num(i.crtime.sec).raw(K.crtimeNsec).num(i.crtime.nsec);
    if (f.target !== undefined) out.raw(K.target).str(decodeName(f.target));
    if (isDevice(i)) {
      const d = decodeDevice(i.iBlock);
      out.raw(K.rdevMajor).num(d.major).raw(K.rdevMinor).num(d.minor).raw(K.close);
    }
    out.raw(K.flags).num(i.flags);
    if (f.xattrs !== undefined && f.xattrs.length > 0) {
      out.raw(K.xattrs);
      for (let k = 0; k < f.xattrs.length; k++) {
        const x = f.xattrs[k]!; // ok: k < length
        if (k) out.raw(K.comma);
        out.raw(K.xName).str(x.name).raw(K.xValue).str(b64(x.value)).raw(K.close);
      }
      out.raw(K.endArr);
    }
    if (f.blocks !== undefined && f.blocks.length > 0) {
      out.raw(K.blocks);
      for (let k = 0; k < f.blocks.length; k++) {
        const e = f.blocks[k]!; // ok: k < length
        if (k) out.raw(K.comma);
        out.raw(K.bLogical).num(e.logical).raw(K.bPhysical).num(e.physical).raw(K.bLength).num(e.length).raw(K.bInit).bool(e.initialized).raw(K.close);
      }
      out.raw(K.endArr);
    }
  }
  if (f.errors.length > 0) out.raw(K.errors).raw(Buffer.from(JSON.stringify(f.errors.map(errorRecord)), 'utf8'));
  out.raw(K.endLine);
}

/** The entry as a BSON-ready document, fields in the same order as {@link entryJson}. */
export function entryDoc(f: EntryFacts): Record<string, unknown> {
  const d: Record<string, unknown> = { record: 'entry', partition: f.partition, path: f.path, ino: f.ino };
  const i = f.inode;
  if (i !== undefined) {
    d.type = i.type;
    d.mode = i.mode & 0o7777;
    d.uid = i.uid;
    d.gid = i.gid;
    d.size = i.size;
    d.nlink = i.linksCount;
    d.mtime = i.mtime.sec;
    d.mtimeNsec = i.mtime.nsec;
    d.atime = i.atime.sec;
    d.atimeNsec = i.atime.nsec;
    d.ctime = i.ctime.sec;
    d.ctimeNsec = i.ctime.nsec;
    if (i.crtime !== undefined) {
      d.crtime = i.crtime.sec;
      d.crtimeNsec = i.crtime.nsec;
    }
    if (f.target !== undefined) d.target = decodeName(f.target);
    if (isDevice(i)) {
      const dev = decodeDevice(i.iBlock);
      d.rdev = { major: dev.major, minor: dev.minor };
    }
    d.flags = i.flags;
    if (f.xattrs !== undefined && f.xattrs.length > 0) d.xattrs = f.xattrs.map((x) => ({ name: x.name, value: x.value })); // bson stores a Uint8Array as binary (subtype 0)
    if (f.blocks !== undefined && f.blocks.length > 0) {
      d.blocks = f.blocks.map((e) => ({ logical: e.logical, physical: e.physical, length: e.length, initialized: e.initialized }));
    }
  }
  if (f.errors.length > 0) d.errors = f.errors.map(errorRecord);
  return d;
}

/** The `journal` summary of a volume header. */
export function journalSummary(inum: number, j: JournalSuperblock): Record<string, unknown> {
  const features = Object.entries(j.has)
    .filter(([, on]) => on)
    .map(([name]) => name);
  return {
    inode: inum,
    version: j.version,
    blockSize: j.blockSize,
    maxLen: j.maxLen,
    first: j.first,
    sequence: j.sequence,
    start: j.start,
    // No transactions to replay: cleanly unmounted, or the journal was replayed.
    clean: j.start === 0,
    errno: j.errno,
    features,
  };
}

/**
 * The volume header of an opened file system (JSON.stringify or BSON
 * serialize it as is). Reads the journal superblock; a failure there goes
 * into `errors`, which the caller also reports.
 */
export async function volumeHeader(v: OpenedVolume): Promise<{ doc: Record<string, unknown>; errors: Error[] }> {
  const sb = v.fs.superblock;
  const errors: Error[] = [];
  const doc: Record<string, unknown> = {
    record: 'volume',
    partition: v.index,
    kind: v.fs.kind,
    blockSize: sb.blockSize,
    blocksCount: sb.blocksCount,
    inodesCount: sb.inodesCount,
    uuid: uuidString(sb.uuid),
    volumeName: sb.volumeName,
    features: [...sb.features],
  };
  if (v.lv !== undefined) {
    doc.lv = v.lv;
    doc.lvStart = v.lvStart ?? 0;
  }
  if (v.partition !== undefined) {
    doc.partitionStart = v.partition.start;
    doc.partitionSize = v.partition.size;
    doc.partitionType = v.partition.type;
    if (v.partition.name !== undefined) doc.partitionName = v.partition.name;
    if (v.partition.uuid !== undefined) doc.partitionUuid = v.partition.uuid;
  }
  try {
    const j = await v.fs.journalSuperblock();
    if (j !== undefined) doc.journal = journalSummary(sb.journalInum, j);
    // Read with the journal's committed transactions replayed in memory (the file system needed recovery).
    if (v.replayed !== undefined && doc.journal !== undefined) doc.journal = { ...(doc.journal as Record<string, unknown>), replayed: v.replayed };
  } catch (err) {
    if (!(err instanceof Ext4Error)) throw err;
    errors.push(err);
  }
  if (errors.length > 0) doc.errors = errors.map(errorRecord);
  return { doc, errors };
}

/** The header of a volume whose file system could not be opened. */
export function failedVolumeHeader(partition: number, err: Error): Record<string, unknown> {
  return { record: 'volume', partition, errors: [errorRecord(err)] };
}
