/**
 * Corrupt input: mutates metadata of valid images (bit flips, zeroed blocks,
 * rec_len 0, extent index loops, block numbers past the end, absurd sizes
 * and counts) for 5,000+ cases. Each case must end within 2 s with a result
 * or a typed error (Ext4Error/DiskError), never another exception, and the
 * worker's heap must stay bounded. Cases run in worker threads so a case that
 * spins can be killed by the watchdog and reported with its seed.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, symlinkSync, linkSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBlockSource } from '@gammaray/disk';
import { prng } from '../../packages/disk/test/builders.js';
import { decodeExtentNode, descriptorBlock, Ext4Volume, groupHasSuper, walk, type ExtentIndex } from '@gammaray/ext4';

const CASES = Number(process.env.GAMMARAY_FUZZ_CASES ?? 5000);
/** Re-run chosen cases by seed (as printed in a failure), e.g. GAMMARAY_FUZZ_SEEDS=860,1230. */
const ONLY_SEEDS = process.env.GAMMARAY_FUZZ_SEEDS?.split(',').map(Number);
const CASE_TIMEOUT_MS = 2000;
const HEAP_LIMIT = 1024 * 1024 * 1024;

interface Region {
  readonly what: 'super' | 'gdt' | 'itable' | 'dir' | 'extent' | 'xattr' | 'indirect' | 'journal';
  readonly offset: number;
  readonly length: number;
}
interface Target {
  readonly image: string;
  readonly bytes: Buffer;
  readonly blockSize: number;
  readonly regions: Region[];
  readonly inodeOffsets: number[];
  readonly dirBlocks: number[];
  readonly extentNodes: { offset: number; block: number }[];
}

let work: string;
const targets: Target[] = [];

function makeTree(dir: string): void {
  mkdirSync(join(dir, 'd1/d2'), { recursive: true });
  writeFileSync(join(dir, 'd1/d2/f'), 'deep file\n');
  writeFileSync(join(dir, 'small'), 'x'.repeat(50));
  writeFileSync(join(dir, 'medium'), Buffer.alloc(70_000, 7));
  symlinkSync('d1/d2/f', join(dir, 'link'));
  symlinkSync('/' + 'long/'.repeat(20) + 'target', join(dir, 'slowlink'));
  linkSync(join(dir, 'small'), join(dir, 'hard'));
  mkdirSync(join(dir, 'many'));
  for (let i = 0; i < 400; i++) writeFileSync(join(dir, 'many', `file-with-a-longish-name-${i}`), String(i));
  // Fragmented: data every other block so the extent tree needs an index node.
  const frag = join(dir, 'frag');
  const fd = openSync(frag, 'w');
  for (let i = 0; i < 200; i++) writeSync(fd, Buffer.alloc(1024, i), 0, 1024, i * 8192);
  closeSync(fd);
  execFileSync('setfattr', ['-n', 'user.big', '-v', 'v'.repeat(700), join(dir, 'medium')]);
  execFileSync('setfattr', ['-n', 'user.small', '-v', 'tiny', join(dir, 'small')]);
}

async function collectTargets(image: string): Promise<Target> {
  const bytes = readFileSync(image);
  const vol = await Ext4Volume.open(new MemoryBlockSource(bytes));
  const sb = vol.superblock;
  const bs = sb.blockSize;
  const regions: Region[] = [{ what: 'super', offset: 1024, length: 1024 }];
  const descPerBlock = bs / sb.descSize;
  for (let m = 0; m < Math.ceil(sb.groupCount / descPerBlock); m++) {
    regions.push({ what: 'gdt', offset: descriptorBlock(sb, m, (g) => groupHasSuper(sb, g)) * bs, length: bs });
  }
  const inodeOffsets: number[] = [];
  const dirBlocks: number[] = [];
  const extentNodes: { offset: number; block: number }[] = [];
  const inodeOffset = (ino: number) => {
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    return vol.groupDesc(g).inodeTable * bs + ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize;
  };
  for await (const it of walk(vol)) {
    const inode = it.inode;
    if (!inode) throw new Error(`clean image ${image} has an unreadable entry ${it.path}`);
    const off = inodeOffset(inode.ino);
    inodeOffsets.push(off);
    regions.push({ what: 'itable', offset: off, length: sb.inodeSize });
    if (inode.fileAcl) regions.push({ what: 'xattr', offset: inode.fileAcl * bs, length: bs });
    if (inode.flags & 0x80000) {
      const root = decodeExtentNode(inode.iBlock, { inode: inode.ino }, undefined);
      if (root.depth > 0) {
        extentNodes.push({ offset: off + 0x28, block: -1 });
        for (const idx of root.entries as readonly ExtentIndex[]) {
          extentNodes.push({ offset: idx.leaf * bs, block: idx.leaf });
          regions.push({ what: 'extent', offset: idx.leaf * bs, length: bs });
        }
      }
    } else if (!(inode.flags & 0x10000000) && (inode.type === 'file' || inode.type === 'dir')) {
      const v = new DataView(inode.iBlock.buffer, inode.iBlock.byteOffset, 60);
      for (let k = 12; k < 15; k++) {
        const p = v.getUint32(k * 4, true);
        if (p) regions.push({ what: 'indirect', offset: p * bs, length: bs });
      }
    }
    if (inode.type === 'dir' && !(inode.flags & 0x10000000)) {
      for (const e of await vol.blockMap(inode)) {
        for (let k = 0; k < e.length && k < 64; k++) {
          dirBlocks.push((e.physical + k) * bs);
          regions.push({ what: 'dir', offset: (e.physical + k) * bs, length: bs });
        }
      }
    }
  }
  if (sb.has.journal) {
    const j = await vol.readInode(sb.journalInum);
    const first = (await vol.blockMap(j))[0];
    if (first) regions.push({ what: 'journal', offset: first.physical * bs, length: 1024 });
  }
  return { image, bytes, blockSize: bs, regions, inodeOffsets, dirBlocks, extentNodes };
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
function u16le(v: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v & 0xffff, true);
  return b;
}

type Mutation = { offset: number; bytes: Uint8Array };
const KINDS = ['bitflip', 'zero-block', 'rec-len', 'extent-loop', 'past-end', 'absurd-size', 'absurd-count', 'random-bytes'] as const;

function makeCase(seed: number): { image: string; kind: string; mutations: Mutation[] } {
  const r = prng(seed);
  const t = targets[Math.floor(r() * targets.length)]!;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const kind = pick(KINDS);
  const muts: Mutation[] = [];
  const region = pick(t.regions);
  switch (kind) {
    case 'bitflip': {
      const n = 1 + Math.floor(r() * 8);
      for (let i = 0; i < n; i++) {
        const off = region.offset + Math.floor(r() * region.length);
        const original = t.bytes[off]!;
        muts.push({ offset: off, bytes: Uint8Array.of(original ^ (1 << Math.floor(r() * 8))) });
      }
      break;
    }
    case 'zero-block':
      muts.push({ offset: region.offset, bytes: new Uint8Array(region.length) });
      break;
    case 'rec-len': {
      const blk = t.dirBlocks.length ? pick(t.dirBlocks) : region.offset;
      const img = t.bytes;
      // Walk the clean chain a random number of steps, then damage that rec_len.
      let off = 0;
      const steps = Math.floor(r() * 20);
      for (let i = 0; i < steps; i++) {
        const rl = img.readUInt16LE(blk + off + 4);
        if (rl < 8 || off + rl >= t.blockSize) break;
        off += rl;
      }
      const value = pick([0, 1, 4, 7, 9, 0xfffc, 0xffff, t.blockSize, Math.floor(r() * 65536)]);
      muts.push({ offset: blk + off + 4, bytes: u16le(value) });
      if (r() < 0.3) muts.push({ offset: blk + off + 6, bytes: Uint8Array.of(pick([0, 255, Math.floor(r() * 256)])) });
      break;
    }
    case 'extent-loop': {
      if (t.extentNodes.length < 2) return makeCase(seed + 0x9e3779b9);
      const node = pick(t.extentNodes);
      const target = pick(t.extentNodes.filter((n) => n.block >= 0));
      const entry = Math.floor(r() * 3);
      muts.push({ offset: node.offset + 12 + entry * 12 + 4, bytes: u32le(target.block) });
      if (r() < 0.5) muts.push({ offset: node.offset + 6, bytes: u16le(pick([0, 1, 2, 5, 6, 0xffff])) });
      break;
    }
    case 'past-end': {
      const where = pick([...t.extentNodes.map((n) => n.offset + 12 + 8), ...t.inodeOffsets.map((o) => o + 0x28 + 12 + 8), ...t.inodeOffsets.map((o) => o + 0x68)]);
      muts.push({ offset: where, bytes: u32le(pick([0xffffffff, 0x7fffffff, 0x10000000, Math.floor(r() * 2 ** 32)])) });
      if (r() < 0.5) muts.push({ offset: where - 2, bytes: u16le(pick([0xffff, 1, 0x8000])) });
      break;
    }
    case 'absurd-size': {
      const o = pick(t.inodeOffsets);
      muts.push({ offset: o + 0x4, bytes: u32le(pick([0xffffffff, 0x80000000, Math.floor(r() * 2 ** 32)])) });
      muts.push({ offset: o + 0x6c, bytes: u32le(pick([0xffffffff, 0x1fffff, 0x200000, 0x100, Math.floor(r() * 2 ** 32)])) });
      break;
    }
    case 'absurd-count': {
      const choices: Mutation[] = [
        { offset: 1024 + 0x0, bytes: u32le(pick([0, 0xffffffff, 1])) }, // s_inodes_count
        { offset: 1024 + 0x4, bytes: u32le(pick([0, 0xffffffff, 1])) }, // s_blocks_count_lo
        { offset: 1024 + 0x20, bytes: u32le(pick([0, 1, 0xffffffff])) }, // s_blocks_per_group
        { offset: 1024 + 0x28, bytes: u32le(pick([0, 1, 0xffffffff])) }, // s_inodes_per_group
        { offset: 1024 + 0x18, bytes: u32le(pick([7, 31, 0xffffffff])) }, // s_log_block_size
        { offset: 1024 + 0x58, bytes: u16le(pick([0, 1, 127, 0xffff])) }, // s_inode_size
        { offset: 1024 + 0xfe, bytes: u16le(pick([0, 1, 0xffff, 4096])) }, // s_desc_size
        { offset: 1024 + 0x104, bytes: u32le(pick([0, 1, 0xffffffff])) }, // s_first_meta_bg
      ];
      if (t.extentNodes.length) {
        const n = pick(t.extentNodes);
        choices.push({ offset: n.offset + 2, bytes: u16le(pick([0, 0xffff, 5, 341])) }); // eh_entries
        choices.push({ offset: n.offset + 4, bytes: u16le(pick([0, 0xffff, 5, 341])) }); // eh_max
      }
      if (t.inodeOffsets.length) {
        const o = pick(t.inodeOffsets);
        choices.push({ offset: o + 0x1a, bytes: u16le(pick([0, 0xffff])) }); // i_links_count
        choices.push({ offset: o + 0x80, bytes: u16le(pick([0xffff, 2, 0x7f, 0x200])) }); // i_extra_isize
        choices.push({ offset: o, bytes: u16le(pick([0, 0xffff, 0o120777, 0o040755, 0o020644])) }); // i_mode
      }
      const xr = t.regions.filter((x) => x.what === 'xattr');
      if (xr.length) {
        const x = pick(xr);
        choices.push({ offset: x.offset + 8, bytes: u32le(pick([0, 2, 0xffffffff])) }); // h_blocks
        choices.push({ offset: x.offset + 32 + 8, bytes: u32le(pick([0xffffffff, 65536, 4096])) }); // e_value_size
        choices.push({ offset: x.offset + 32 + 2, bytes: u16le(pick([0xffff, 4090])) }); // e_value_offs
      }
      muts.push(pick(choices));
      break;
    }
    case 'random-bytes': {
      const len = 1 + Math.floor(r() * 64);
      const off = region.offset + Math.floor(r() * Math.max(1, region.length - len));
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = Math.floor(r() * 256);
      muts.push({ offset: off, bytes: b });
      break;
    }
  }
  return { image: t.image, kind, mutations: muts };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-corrupt-'));
  const src = join(work, 'src');
  mkdirSync(src);
  makeTree(src);
  const specs: [string, string, string[]][] = [
    ['ext4-nocsum-1k', 'mkfs.ext4', ['-b', '1024', '-O', '^metadata_csum']],
    ['ext4-nocsum-4k', 'mkfs.ext4', ['-b', '4096', '-O', '^metadata_csum,^64bit']],
    ['ext4-csum', 'mkfs.ext4', ['-b', '4096']],
    ['ext4-inline', 'mkfs.ext4', ['-b', '1024', '-O', 'inline_data,^metadata_csum']],
    ['ext4-metabg', 'mkfs.ext4', ['-b', '1024', '-O', 'meta_bg,^resize_inode,^metadata_csum']],
    ['ext2', 'mkfs.ext2', ['-b', '1024']],
    ['ext3', 'mkfs.ext3', ['-b', '2048']],
  ];
  for (const [name, tool, args] of specs) {
    const img = join(work, `${name}.img`);
    execFileSync(tool, ['-q', '-F', '-E', 'root_owner=0:0', ...args, '-d', src, img, '12M'], { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1600000000' } });
    targets.push(await collectTargets(img));
    console.info(`corrupt-input: built ${name}`);
  }
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('corrupt input', () => {
  it('the clean images read without errors (the baseline the mutations start from)', () => {
    expect(targets.length).toBe(7);
    for (const t of targets) expect(t.regions.length).toBeGreaterThan(10);
  });

  it(`ends every one of ${CASES} mutated-metadata cases within ${CASE_TIMEOUT_MS} ms with a result or a typed error`, async () => {
    const workerUrl = new URL('./exercise.mjs', import.meta.url);
    const nWorkers = 2;
    const failures: string[] = [];
    const byKind = new Map<string, number>();
    let maxMs = 0;
    let maxHeap = 0;
    let typedErrors = 0;
    let next = 0;
    const runWorker = async (): Promise<void> => {
      let worker = new Worker(workerUrl, { execArgv: [] });
      try {
        const total = ONLY_SEEDS?.length ?? CASES;
        while (next < total) {
          const id = ONLY_SEEDS ? ONLY_SEEDS[next++]! - 1 : next++; // ok: next < total
          const c = makeCase(id + 1);
          byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
          const res = await new Promise<{ ms: number; heap: number; errors: string[]; untyped: string[] } | 'timeout'>((resolve) => {
            const timer = setTimeout(() => resolve('timeout'), CASE_TIMEOUT_MS + 3000);
            const onError = (err: Error) => {
              clearTimeout(timer);
              resolve({ ms: 0, heap: 0, errors: [], untyped: [`worker crashed: ${err.stack ?? err}`] });
            };
            worker.once('error', onError);
            worker.once('message', (m) => {
              clearTimeout(timer);
              worker.off('error', onError);
              resolve(m);
            });
            worker.postMessage({ id, image: c.image, mutations: c.mutations });
          });
          if (res === 'timeout') {
            failures.push(`seed ${id + 1} (${c.kind} on ${c.image}): did not finish; worker killed`);
            await worker.terminate();
            worker = new Worker(workerUrl, { execArgv: [] });
            continue;
          }
          maxMs = Math.max(maxMs, res.ms);
          maxHeap = Math.max(maxHeap, res.heap);
          typedErrors += res.errors.length;
          if (res.ms > CASE_TIMEOUT_MS) failures.push(`seed ${id + 1} (${c.kind}): took ${res.ms.toFixed(0)} ms`);
          for (const u of res.untyped) failures.push(`seed ${id + 1} (${c.kind} on ${c.image}): untyped error ${u}`);
        }
      } finally {
        await worker.terminate();
      }
    };
    await Promise.all(Array.from({ length: nWorkers }, runWorker));
    console.info(`corrupt-input: ${ONLY_SEEDS?.length ?? CASES} cases ${JSON.stringify(Object.fromEntries(byKind))}; typed errors ${typedErrors}; slowest ${maxMs.toFixed(1)} ms; max worker heap ${(maxHeap / 2 ** 20).toFixed(0)} MiB`);
    expect(failures.slice(0, 20)).toEqual([]);
    if (!ONLY_SEEDS) expect(typedErrors).toBeGreaterThan(CASES / 4);
    expect(maxHeap).toBeLessThan(HEAP_LIMIT);
  }, 900_000);
});
