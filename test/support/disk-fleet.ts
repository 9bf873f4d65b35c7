/**
 * Small ext4 disks for multi-disk tests (built with mkfs.ext4 -d), the physical block of each file's first block
 * (debugfs bmap on the starting image), and the oracle: the events one in-process DiskInferencer produces from a
 * disk's starting image and its whole recorded write stream, compared by key or by full fingerprint.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DiskInferencer, type BlockFetcher, type FsEvent } from '@gammaray/inferencer';
import { readRecords } from './writes-stream.js';

const exec = promisify(execFile);

/** Files of every fleet disk, one 4 KiB block each. */
export const FLEET_FILES = ['/a.txt', '/b.txt', '/sub/c.bin'] as const;
export const FLEET_BLOCK = 4096;

/** One disk of the fleet. */
export interface FleetDisk {
  readonly id: string;
  /** The image the capture serves (and changes). */
  readonly image: string;
  /** A copy of the image as built. */
  readonly start: string;
  /** Physical block of each of FLEET_FILES' first block. */
  readonly blocks: readonly number[];
}

/** Builds one 16 MiB ext4 image per id under `dir`. */
export async function buildFleet(dir: string, ids: readonly string[]): Promise<FleetDisk[]> {
  const out: FleetDisk[] = [];
  for (const id of ids) {
    const src = join(dir, `src-${id}`);
    mkdirSync(join(src, 'sub'), { recursive: true });
    for (const f of FLEET_FILES) writeFileSync(join(src, f), fleetFileContent(id, f));
    const image = join(dir, `${id}.img`);
    await exec('mkfs.ext4', ['-q', '-F', '-b', String(FLEET_BLOCK), '-d', src, image, '16M']);
    const blocks: number[] = [];
    for (const f of FLEET_FILES) {
      const { stdout } = await exec('debugfs', ['-R', `bmap ${f} 0`, image]);
      const n = Number(stdout.trim());
      if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`debugfs bmap ${f} said ${stdout}`);
      blocks.push(n);
    }
    const start = join(dir, `${id}.start.img`);
    copyFileSync(image, start);
    out.push({ id, image, start, blocks });
  }
  return out;
}

/** Overwrites a file's first block on a disk through an NBD URL with a byte pattern (qemu-io, a real client). */
export async function writeFleetFile(nbdUrl: string, disk: FleetDisk, file: number, pattern: number): Promise<void> {
  const block = disk.blocks[file]!; // ok: callers pass an index of FLEET_FILES
  await exec('qemu-io', ['-f', 'raw', '-c', `write -P 0x${pattern.toString(16)} ${block * FLEET_BLOCK} ${FLEET_BLOCK}`, nbdUrl]);
}

/** How events are compared: by (seq, idx, kind, path). */
export const eventKey = (e: FsEvent): string => `${e.seq}:${e.idx}:${e.kind}:${e.path}`;

/**
 * Everything about an event but its `ts` (a crawl stamps its snapshot with the time it ran), as one string:
 * fields in sorted order at every depth, `data` as its SHA-256. Two runs over the same records give equal strings.
 */
export function eventFingerprint(e: FsEvent): string {
  const canon = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return `sha256:${createHash('sha256').update(v).digest('hex')}`;
    if (v instanceof Date) return v.toISOString();
    if (Array.isArray(v)) return v.map(canon);
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .filter((k) => o[k] !== undefined)
          .sort()
          .map((k) => [k, canon(o[k])]),
      );
    }
    return v;
  };
  const { ts: _ts, ...rest } = e;
  return JSON.stringify(canon(rest));
}

/** The events of one DiskInferencer crawling the starting image at seq 0 and applying every record of the disk. */
export async function oracleFsEvents(natsUrl: string, disk: FleetDisk): Promise<FsEvent[]> {
  const bytes = readFileSync(disk.start);
  const fetcher: BlockFetcher = { size: bytes.length, read: async (o, l) => ({ data: Uint8Array.from(bytes.subarray(o, o + l)), seq: 0 }) };
  const { inferencer, events } = await DiskInferencer.bootstrap(fetcher, { disk: disk.id }, 0, new Date(0));
  const all = [...events];
  for (const r of await readRecords(natsUrl, disk.id)) all.push(...(await inferencer.apply(r.seq, r.rec)));
  return all;
}

/** {@link oracleFsEvents} as {@link eventKey}s. */
export async function oracleEvents(natsUrl: string, disk: FleetDisk): Promise<string[]> {
  return (await oracleFsEvents(natsUrl, disk)).map(eventKey);
}

/** The content of one of FLEET_FILES on disk `id` as built: one block of the disk id and path, repeated. */
export function fleetFileContent(id: string, file: (typeof FLEET_FILES)[number]): Uint8Array {
  return Buffer.alloc(FLEET_BLOCK, `${id}${file}`);
}
