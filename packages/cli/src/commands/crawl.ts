import { open } from 'node:fs/promises';
import { Ext4Error, walkBatches, type Extent, type FileType, type Xattr } from '@gammaray/ext4';
import { ExitCode, UserError } from '../errors.js';
import { humanSize } from '../format.js';
import { describeVolumes, imageVolumes, isNoFileSystem, openImage, openedVolume, probe, probeError, volumeOptions, type OpenedVolume, type Probe } from '../image.js';
import { BufferedWriter, type Progress, type Terminal } from '../output.js';
import { JsonBytes } from '../json-bytes.js';
import { entryDoc, failedVolumeHeader, volumeHeader, writeEntryJson, type EntryFacts } from '../records.js';

/** Options of `gammaray crawl`. */
export interface CrawlOptions {
  /** `--out FILE.bson`: concatenated BSON documents. */
  readonly out: string | undefined;
  /** `--json`: JSON lines on stdout. */
  readonly json: boolean;
  /** `--partition N`: only that volume. */
  readonly partition: number | undefined;
  /** `--noload`: do not replay the journal (see VolumeOptions). */
  readonly noload?: boolean;
  /** `--lv VG/LV`: only this LVM logical volume. */
  readonly lv?: string;
}

/** Counts of one crawled volume, for the summary. */
interface VolumeStats {
  readonly label: string;
  readonly what: string;
  entries: number;
  withErrors: number;
  readonly byType: Map<FileType, number>;
}

/** Where records go. */
interface Sinks {
  readonly json: BufferedWriter | undefined;
  readonly bson: BufferedWriter | undefined;
}

/**
 * `gammaray crawl IMAGE`: every path of every ext2/3/4 file system on the
 * image (each partition, or the whole disk), as records (see records.ts) to
 * `--out` (BSON) and/or stdout (`--json`), else a summary on stdout.
 * Partitions without an ext file system are skipped with a note; entries
 * that could not be fully read carry `errors`, get a warning on stderr and
 * make the exit status 1.
 */
export async function runCrawl(term: Terminal, image: string, opts: CrawlOptions): Promise<ExitCode> {
  const src = await openImage(image);
  let bsonStream: { destroy(): void } | undefined;
  try {
    const vols = await imageVolumes(image, src, opts.partition, opts.lv);
    const partitioned = vols.some((v) => v.index !== 0);
    const probes: Probe[] = [];
    for (const v of vols) probes.push(await probe(image, v, volumeOptions(term, opts)));
    const candidates = probes.filter((p) => !isNoFileSystem(p));
    if (probes.length === 1 && probes[0]!.error !== undefined) throw probeError(probes[0]!, partitioned); // ok: length checked
    if (candidates.length === 0) throw new UserError(`${image}: no ext2/3/4 file system found in any of its partitions (${describeVolumes(vols)})`);

    let bson: BufferedWriter | undefined;
    if (opts.out !== undefined) {
      let fh;
      try {
        fh = await open(opts.out, 'w');
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new UserError(`cannot create ${opts.out}: ${e.code === 'ENOENT' ? 'no such directory' : e.code === 'EACCES' ? 'permission denied' : e.message}; check the --out path`);
      }
      const stream = fh.createWriteStream();
      bsonStream = stream;
      bson = new BufferedWriter(stream, opts.out, false);
    }
    const sinks: Sinks = { json: opts.json ? term.out : undefined, bson };
    const summary = !opts.json;
    // A progress line only where it cannot interleave with records on the same terminal.
    const progress = term.progress(term.stderrIsTty && !(opts.json && term.stdoutIsTty));
    const stats: VolumeStats[] = [];
    const skipped: string[] = [];
    let total = 0;
    try {
      for (const p of probes) {
        if (isNoFileSystem(p)) {
          skipped.push(p.label);
          if (!summary) term.note(`${p.label}: no ext2/3/4 file system; skipped`);
          continue;
        }
        if (p.fs === undefined) {
          const err = probeError(p, partitioned);
          term.warn(p.label, err.message.startsWith(`${p.label}: `) ? err.message.slice(p.label.length + 2) : err.message);
          await emit(sinks, failedVolumeHeader(p.volume.index, p.error));
          stats.push({ label: p.label, what: 'unreadable', entries: 0, withErrors: 1, byType: new Map() });
          continue;
        }
        const v = openedVolume(image, p, partitioned);
        const st = await crawlVolume(term, v, partitioned, sinks, progress, total);
        total += st.entries;
        stats.push(st);
      }
    } finally {
      progress.done();
    }
    await term.out.flush();
    if (bson !== undefined) {
      await bson.end(true);
      bsonStream = undefined;
    }
    if (summary) {
      await term.out.text(summaryText(stats, skipped, total, opts.out, bson?.written));
      await term.out.flush();
    }
    return term.warnings > 0 ? ExitCode.failure : ExitCode.ok;
  } finally {
    bsonStream?.destroy();
    await src.close();
  }
}

async function emit(sinks: Sinks, doc: Record<string, unknown>): Promise<void> {
  if (sinks.json) await sinks.json.text(`${JSON.stringify(doc)}\n`);
  if (sinks.bson) await sinks.bson.bytes((await bsonSerializer())(doc));
}

async function crawlVolume(term: Terminal, v: OpenedVolume, partitioned: boolean, sinks: Sinks, progress: Progress, before: number): Promise<VolumeStats> {
  const { fs } = v;
  const sb = fs.superblock;
  const st: VolumeStats = {
    label: v.label,
    what: `${fs.kind}, ${humanSize(sb.blocksCount * sb.blockSize)}, ${sb.blockSize}-byte blocks${sb.volumeName ? `, label ${JSON.stringify(sb.volumeName)}` : ''}`,
    entries: 0,
    withErrors: 0,
    byType: new Map(),
  };
  const where = (path: string) => (partitioned ? `partition ${v.index}: ${path}` : path);
  const header = await volumeHeader(v);
  for (const e of header.errors) term.warn(where('(volume)'), e.message);
  await emit(sinks, header.doc);

  const { json, bson } = sinks;
  const serialize = bson ? await bsonSerializer() : undefined;
  const jsonBytes = new JsonBytes();
  for await (const batch of walkBatches(fs)) for (const item of batch) {
    // Copied only when this entry adds a problem of its own (rare).
    let errors: readonly Error[] = item.errors;
    const inode = item.inode;
    let target: Uint8Array | undefined;
    let xattrs: readonly Xattr[] | undefined;
    let blocks: readonly Extent[] | undefined;
    if (inode !== undefined) {
      const t = inode.type;
      if (t === 'symlink') {
        try {
          target = await fs.readLink(inode);
        } catch (err) {
          if (!(err instanceof Ext4Error)) throw err;
          errors = [...errors, err];
        }
      }
      try {
        xattrs = fs.readXattrsCached(inode) ?? (await fs.readXattrs(inode));
      } catch (err) {
        if (!(err instanceof Ext4Error)) throw err;
        errors = [...errors, err];
      }
      if (t === 'file' || t === 'dir' || t === 'symlink') {
        try {
          blocks = fs.blockMapCached(inode) ?? (await fs.blockMap(inode));
        } catch (err) {
          if (!(err instanceof Ext4Error)) throw err;
          errors = [...errors, err];
        }
      }
      st.byType.set(t, (st.byType.get(t) ?? 0) + 1);
    }
    st.entries++;
    if (errors.length > 0) {
      st.withErrors++;
      for (const e of errors) term.warn(where(item.path), e.message);
    }
    const facts: EntryFacts = { partition: v.index, path: item.path, ino: item.ino, inode, target, xattrs, blocks, errors };
    if (json) {
      writeEntryJson(facts, jsonBytes);
      if (jsonBytes.full) await json.bytes(jsonBytes.take());
    }
    if (bson) {
      const p = bson.bytes(serialize!(entryDoc(facts))); // ok: set whenever bson is
      if (p) await p;
    }
    progress.tick(before + st.entries);
  }
  if (json && jsonBytes.length > 0) await json.bytes(jsonBytes.take());
  return st;
}

const TYPE_ORDER: readonly FileType[] = ['file', 'dir', 'symlink', 'chr', 'blk', 'fifo', 'sock'];
const TYPE_NOUN: Readonly<Record<FileType, readonly [string, string]>> = {
  file: ['file', 'files'],
  dir: ['directory', 'directories'],
  symlink: ['symlink', 'symlinks'],
  chr: ['character device', 'character devices'],
  blk: ['block device', 'block devices'],
  fifo: ['fifo', 'fifos'],
  sock: ['socket', 'sockets'],
};

function count(n: number, t: FileType): string {
  return `${n} ${TYPE_NOUN[t][n === 1 ? 0 : 1]}`;
}

function summaryText(stats: readonly VolumeStats[], skipped: readonly string[], total: number, out: string | undefined, written: number | undefined): string {
  const lines: string[] = [];
  let withErrors = 0;
  for (const s of stats) {
    withErrors += s.withErrors;
    lines.push(`${s.label}: ${s.what}`);
    if (s.what === 'unreadable') continue;
    const parts = TYPE_ORDER.filter((t) => s.byType.has(t)).map((t) => count(s.byType.get(t) ?? 0, t));
    lines.push(`  ${s.entries} ${s.entries === 1 ? 'entry' : 'entries'}${parts.length ? `: ${parts.join(', ')}` : ''}`);
    lines.push(`  ${s.withErrors} with errors`);
  }
  for (const label of skipped) lines.push(`${label}: no ext2/3/4 file system (skipped)`);
  const fsCount = stats.length;
  lines.push(`total: ${total} entries in ${fsCount} file system${fsCount === 1 ? '' : 's'}, ${withErrors} with errors`);
  if (out !== undefined) lines.push(`wrote ${out} (${written ?? 0} bytes)`);
  return `${lines.join('\n')}\n`;
}


let serializeBson: ((doc: Record<string, unknown>) => Uint8Array) | undefined;

/** The bson encoder, loaded on first use so `--json` and summary runs skip loading it. */
async function bsonSerializer(): Promise<(doc: Record<string, unknown>) => Uint8Array> {
  serializeBson ??= (await import('bson')).serialize;
  return serializeBson;
}
