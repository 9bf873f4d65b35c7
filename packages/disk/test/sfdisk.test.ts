// Tables written by the real util-linux / gptfdisk tools, checked against what
// `sfdisk --json` reads back from the same image.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileBlockSource, listVolumes, readPartitions, type PartitionTable } from '../src/index.js';

function has(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const HAVE_SFDISK = has('sfdisk');
const HAVE_SGDISK = has('sgdisk');

interface SfdiskJson {
  partitiontable: {
    label: 'gpt' | 'dos';
    id: string;
    sectorsize: number;
    partitions: { node: string; start: number; size: number; type: string; uuid?: string; name?: string }[];
  };
}

const IMAGE_BYTES = 64 * 1024 * 1024;
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gammaray-disk-'));
});
afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

async function sparseImage(name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, IMAGE_BYTES);
  return path;
}

function sfdisk(img: string, script: string): void {
  execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', img], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

function sfdiskJson(img: string): SfdiskJson['partitiontable'] {
  return (JSON.parse(execFileSync('sfdisk', ['--json', img], { encoding: 'utf8' })) as SfdiskJson).partitiontable;
}

function zeroSector(img: string, lba: number): void {
  execFileSync('dd', ['if=/dev/zero', `of=${img}`, 'bs=512', `seek=${lba}`, 'count=1', 'conv=notrunc', 'status=none']);
}

async function read(img: string): Promise<PartitionTable> {
  const src = await FileBlockSource.open(img);
  try {
    return await readPartitions(src, { strict: true });
  } finally {
    await src.close();
  }
}

/** Our partitions in sfdisk's terms: 1-based index from the node name, sectors, lowercase type. */
function expectSame(ours: PartitionTable, theirs: SfdiskJson['partitiontable'], img: string): void {
  const ss = theirs.sectorsize;
  expect(ours.sectorSize).toBe(ss);
  const want = theirs.partitions.map((p) => ({
    index: Number(p.node.slice(img.length)),
    start: p.start * ss,
    size: p.size * ss,
    type: theirs.label === 'gpt' ? p.type.toLowerCase() : `0x${Number.parseInt(p.type, 16).toString(16).padStart(2, '0')}`,
    ...(p.uuid !== undefined ? { uuid: p.uuid.toLowerCase() } : {}),
    ...(p.name !== undefined ? { name: p.name } : {}),
  }));
  const got = ours.partitions.map((p) => ({
    index: p.index,
    start: p.start,
    size: p.size,
    type: p.type,
    ...(theirs.label === 'gpt' ? { uuid: p.uuid } : {}),
    ...(p.name !== undefined ? { name: p.name } : {}),
  }));
  expect(got).toEqual(want);
  expect(ours.diskId).toBe(theirs.label === 'gpt' ? theirs.id.toLowerCase() : theirs.id.replace(/^0x/, ''));
}

describe.skipIf(!HAVE_SFDISK)('against sfdisk', () => {
  it('reads a GPT written by sfdisk, and its backup when the primary header is zeroed', async () => {
    const img = await sparseImage('gpt.img');
    sfdisk(img, 'label: gpt\n,20M\n,20M\n');
    const theirs = sfdiskJson(img);
    const ours = await read(img);
    expect(ours).toMatchObject({ scheme: 'gpt', usedBackup: false, warnings: [] });
    expect(ours.partitions).toHaveLength(2);
    expectSame(ours, theirs, img);

    zeroSector(img, 1);
    const backup = await read(img);
    expect(backup.usedBackup).toBe(true);
    expect(backup.warnings.join()).toMatch(/primary GPT unusable/);
    expectSame(backup, theirs, img);
  });

  it('reads the backup when the primary entry array is damaged', async () => {
    const img = await sparseImage('gpt-entries.img');
    sfdisk(img, 'label: gpt\n,20M\n,20M\n');
    const theirs = sfdiskJson(img);
    zeroSector(img, 2);
    const ours = await read(img);
    expect(ours.usedBackup).toBe(true);
    expect(ours.warnings.join()).toMatch(/partition_entry_array_crc32/);
    expectSame(ours, theirs, img);
  });

  it('reads a DOS table with an extended partition and two logicals', async () => {
    const img = await sparseImage('dos.img');
    // Explicit starts inside the 40 MiB extended partition make sfdisk create logicals 5 and 6.
    sfdisk(img, 'label: dos\n,10M,83\n,40M,5\nstart=24576,size=10M,type=83\nstart=47104,size=10M,type=83\n');
    const theirs = sfdiskJson(img);
    expect(theirs.partitions.map((p) => p.node.slice(img.length))).toEqual(['1', '2', '5', '6']);
    const ours = await read(img);
    expect(ours).toMatchObject({ scheme: 'mbr', warnings: [] });
    expectSame(ours, theirs, img);

    const src = await FileBlockSource.open(img);
    try {
      const vols = await listVolumes(src);
      expect(vols.map((v) => [v.index, v.source.size])).toEqual([
        [1, 10 << 20],
        [5, 10 << 20],
        [6, 10 << 20],
      ]);
    } finally {
      await src.close();
    }
  });

  it.skipIf(!HAVE_SGDISK)('reads names and types written by sgdisk', async () => {
    const img = await sparseImage('sgdisk.img');
    execFileSync('sgdisk', ['-n', '1:2048:+10M', '-t', '1:ef00', '-c', '1:EFI boot', '-n', '2:0:+20M', '-t', '2:8300', '-c', '2:root fs é', '-n', '4:0:+5M', '-t', '4:8200', img], {
      stdio: 'ignore',
    });
    const theirs = sfdiskJson(img);
    const ours = await read(img);
    expect(ours.partitions.map((p) => p.index)).toEqual([1, 2, 4]);
    expect(ours.partitions.map((p) => p.name)).toEqual(['EFI boot', 'root fs é', undefined]);
    expectSame(ours, theirs, img);
  });

  it('reports no table for an image without one', async () => {
    const img = await sparseImage('blank.img');
    const ours = await read(img);
    expect(ours).toMatchObject({ scheme: 'none', partitions: [], warnings: [] });
  });
});
