/**
 * A hostile guest: what it writes may be garbage or a crafted trap. Changes are made to a copy of the image with
 * debugfs or raw byte patches, turned into the write records the capture would publish (every changed block,
 * then a flush), and fed to the inference engine: damage gives `corrupt` events, and everything else keeps
 * being served and followed.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskInferencer } from '@gammaray/inferencer';
import { EditedDisk as Disk } from '../support/edited-disk.js';

const exec = promisify(execFile);
const BS = 4096;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-infer-hostile-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a hostile guest', () => {
  it('garbage, loops and extents off the disk give corrupt events; the rest is still followed', async () => {
    const src = join(work, 'src');
    for (const d of ['a/b', 'd2']) mkdirSync(join(src, d), { recursive: true });
    writeFileSync(join(src, 'a/b/c.txt'), 'c\n');
    writeFileSync(join(src, 'f1.txt'), 'f'.repeat(5000));
    writeFileSync(join(src, 'keep.txt'), 'keep\n');
    writeFileSync(join(src, 'd2/other.txt'), 'other\n');
    const img = join(work, 'hostile.img');
    // No journal: every flush is a consistency point, so each crafted change is looked at at once.
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
    const disk = new Disk(img);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
    const ino = (path: string) => inf.tree().find((e) => e.path === path)!.ino; // ok: paths from the fixture

    // 1. A directory made its own descendant (a hard link to a directory): reported, kept out of the tree.
    const loop = await disk.change(inf, () => disk.debugfs('ln /a /a/b/loop').then(() => undefined));
    expect(loop.filter((e) => e.kind === 'corrupt').map((e) => e.corruptKind)).toContain('DirectoryLink');
    expect(inf.tree().some((e) => e.path.includes('/loop'))).toBe(false);

    // 2. An extent pointing past the end of the disk.
    const f1 = ino('/f1.txt');
    const off = await disk.change(inf, () => disk.debugfs(`sif <${f1}> block[5] 0x7ffffff0`).then(() => undefined));
    expect(off.filter((e) => e.kind === 'corrupt' && e.ino === f1).length).toBe(1);
    expect(inf.tree().find((e) => e.path === '/f1.txt')?.size).toBe(5000);

    // 3. Business as usual next to the damage.
    const ok = await disk.change(inf, async () => {
      writeFileSync(join(work, 'new.txt'), 'new\n');
      await disk.debugfs(`write ${join(work, 'new.txt')} /d2/new.txt`);
    });
    expect(ok.map((e) => `${e.kind} ${e.path}`)).toContain('create /d2/new.txt');

    // 4. Random bytes over the inode table block that holds the root and the first files.
    const at = await disk.inodeOffset(ino('/keep.txt'));
    const garbage = await disk.change(inf, () => {
      const b = readFileSync(img);
      const block = Math.floor(at / BS) * BS;
      for (let i = 0; i < BS; i++) b[block + i] = (i * 7919 + 13) & 0xff;
      writeFileSync(img, b);
    });
    const corrupt = garbage.filter((e) => e.kind === 'corrupt');
    expect(corrupt.length).toBeGreaterThan(0);
    for (const e of corrupt) expect(e.message).toBeTruthy();
    // Nothing was thrown away on the strength of garbage: the tree still has every file.
    const paths = inf.tree().map((e) => e.path);
    for (const p of ['/keep.txt', '/d2/other.txt', '/d2/new.txt', '/a/b/c.txt', '/f1.txt']) expect(paths).toContain(p);

    // 5. A directory block of garbage: reported, its old entries kept.
    const d2 = inf.nodes.get(ino('/d2'))!; // ok: fixture
    const dirBlock = d2.owned[0]!; // ok: a directory owns its block
    const dirEvents = await disk.change(inf, () => {
      const b = readFileSync(img);
      b.fill(0xff, dirBlock * BS, dirBlock * BS + BS);
      writeFileSync(img, b);
    });
    expect(dirEvents.some((e) => e.kind === 'corrupt')).toBe(true);
    expect(inf.tree().map((e) => e.path)).toContain('/d2/other.txt');
  }, 120_000);

  it('a directory naming 1,500 cleared inodes gives at most MAX_CORRUPT_EVENTS_PER_RECORD corrupt events and one that counts the rest', async () => {
    const src = join(work, 'src-many');
    mkdirSync(join(src, 'many'), { recursive: true });
    for (let i = 0; i < 1500; i++) writeFileSync(join(src, 'many', `f${i}`), '');
    writeFileSync(join(src, 'keep.txt'), 'keep\n');
    const img = join(work, 'many.img');
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '2048', '-d', src, img, '32M']);
    // Every file's inode zeroed (debugfs clri), its name left in the directory.
    const { stdout } = await exec('debugfs', ['-R', 'ls -l /many', img]);
    const inos = [...stdout.matchAll(/^\s*(\d+)\s+100644/gm)].map((m) => Number(m[1]));
    expect(inos.length).toBe(1500);
    const script = join(work, 'clri.txt');
    writeFileSync(script, inos.map((i) => `clri <${i}>`).join('\n') + '\n');
    await exec('debugfs', ['-w', '-f', script, img]);
    const { inferencer: inf, events } = await DiskInferencer.bootstrap(new Disk(img).fetcher(), { disk: 'many' }, 0, new Date());
    const corrupt = events.filter((e) => e.kind === 'corrupt');
    expect(corrupt.length).toBe(1001);
    expect(corrupt.at(-1)).toMatchObject({ corruptKind: 'TooManyProblems', message: expect.stringMatching(/^500 more problems/) });
    expect(new Set(corrupt.map((e) => e.idx)).size).toBe(1001); // distinct msg ids
    expect(inf.tree().map((e) => e.path)).toContain('/keep.txt');
  }, 60_000);

  it('garbage over the superblock of a mounted file system does not blind the engine, and survives a checkpoint', async () => {
    const src = join(work, 'src-sb');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd/one.txt'), 'one\n');
    // Without a journal, so that each flush is looked at (inferencer-fuzz.test.ts does the same through jbd2
    // commits on journalled images).
    {
      const img = join(work, 'sb.img');
      await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
      const disk = new Disk(img);
      const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      // A guest's root writes over its superblock (its kernel goes on from the copy in memory): the geometry
      // fields and the checksum are garbage now, so no valid superblock is on the disk.
      const garbage = Buffer.alloc(1024);
      for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) & 0xff;
      // The guest's kernel keeps the valid one: debugfs (the guest's ext4 here) works from it between smashes.
      let valid = Buffer.alloc(0);
      const smash = () => {
        const b = readFileSync(img);
        valid = Buffer.from(b.subarray(1024, 2048));
        garbage.copy(b, 1024);
        writeFileSync(img, b);
      };
      const unsmash = () => {
        const b = readFileSync(img);
        valid.copy(b, 1024);
        writeFileSync(img, b);
      };
      const first = await disk.change(inf, smash);
      const reported = first.filter((e) => e.kind === 'corrupt' && e.corruptKind !== undefined && e.message?.startsWith('superblock:'));
      expect(reported.length, JSON.stringify(first)).toBe(1);
      // Work in the guest goes on and is followed; the same garbage again is not reported again.
      const next = await disk.change(inf, async () => {
        unsmash();
        writeFileSync(join(work, 'two.txt'), 'two\n');
        await disk.debugfs(`write ${join(work, 'two.txt')} /d/two.txt`);
        smash();
      });
      expect(next.map((e) => `${e.kind} ${e.path}`)).toContain('create /d/two.txt');
      expect(next.filter((e) => e.kind === 'corrupt')).toEqual([]);
      // The checkpoint keeps the superblock in force: it restores to the same tree.
      const restored = await DiskInferencer.restore(inf.checkpoint(), disk.fetcher(), { disk: 'hostile' });
      expect(restored.tree()).toEqual(inf.tree());
      expect(restored.tree().map((e) => e.path)).toContain('/d/two.txt');
    }
  }, 120_000);

  it('a crawl over a damaged root, directory block or journal superblock serves what it can, says what it cannot, and fills in once repaired', async () => {
    const src = join(work, 'src-crawl');
    mkdirSync(join(src, 'big'), { recursive: true });
    mkdirSync(join(src, 'a'), { recursive: true });
    writeFileSync(join(src, 'a/x.txt'), 'x\n');
    // Enough long names for several linear directory blocks.
    for (let i = 0; i < 300; i++) writeFileSync(join(src, 'big', `file-with-a-rather-long-name-${String(i).padStart(4, '0')}.txt`), `${i}\n`);
    const img = join(work, 'crawl.img');
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal,^dir_index', '-b', String(BS), '-N', '512', '-d', src, img, '16M']);
    const pristine = readFileSync(img);
    const clean = (await DiskInferencer.bootstrap(new Disk(img).fetcher(), { disk: 'hostile' }, 0, new Date())).inferencer;
    const whole = clean.tree().map((e) => e.path);
    expect(whole.length).toBe(1 + 1 + 1 + 1 + 1 + 300); // /, lost+found, a, a/x.txt, big, 300 files
    const ino = (path: string) => clean.tree().find((e) => e.path === path)!.ino; // ok: paths from the fixture
    const garble = (b: Buffer, at: number, n: number) => {
      for (let i = 0; i < n; i++) b[at + i] = (i * 7919 + 13) & 0xff;
    };

    // 1. One block of /big is garbage: the crawl lists the others, reports that one, and its names come back as
    //    creates when the guest writes the block again.
    {
      const big = clean.nodes.get(ino('/big'))!; // ok: fixture
      expect(big.owned.length).toBeGreaterThanOrEqual(3);
      const bad = big.owned[1]!; // ok: checked above
      const b = Buffer.from(pristine);
      garble(b, bad * BS, BS);
      writeFileSync(img, b);
      const disk = new Disk(img);
      const { inferencer: inf, events } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      const corrupt = events.filter((e) => e.kind === 'corrupt');
      expect(corrupt.length).toBeGreaterThanOrEqual(1);
      expect(corrupt[0]!.path).toBe('/big');
      const partial = inf.tree().map((e) => e.path);
      const missing = whole.filter((p) => !partial.includes(p));
      expect(missing.length).toBeGreaterThan(0);
      expect(missing.every((p) => p.startsWith('/big/'))).toBe(true);
      expect(partial).toContain('/a/x.txt');
      const healed = await disk.change(inf, () => writeFileSync(img, pristine));
      expect(healed.filter((e) => e.kind === 'create').map((e) => e.path).sort()).toEqual(missing.sort());
      expect(inf.tree()).toEqual(clean.tree());
    }

    // 2. The root inode is garbage: the crawl gives an empty root and says so; everything comes back as creates
    //    when the inode is written again, and the stand-in survives a checkpoint meanwhile.
    {
      const b = Buffer.from(pristine);
      const at = await new Disk(img).inodeOffset(2);
      garble(b, at, 256);
      writeFileSync(img, b);
      const disk = new Disk(img);
      const { inferencer: inf, events } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      expect(events.filter((e) => e.kind === 'corrupt').length).toBeGreaterThanOrEqual(1);
      expect(events.filter((e) => e.kind === 'corrupt').every((e) => e.path === '/' && e.ino === 2)).toBe(true);
      expect(events[0]).toMatchObject({ kind: 'snapshot', files: 0, dirs: 1 });
      expect(inf.tree().map((e) => e.path)).toEqual(['/']);
      const restored = await DiskInferencer.restore(inf.checkpoint(), disk.fetcher(), { disk: 'hostile' });
      const healed = await disk.change(restored, () => writeFileSync(img, pristine));
      const creates = healed.filter((e) => e.kind === 'create').map((e) => e.path);
      expect(creates.sort()).toEqual(whole.filter((p) => p !== '/').sort());
      expect(restored.tree()).toEqual(clean.tree());
      // Parents come before their children.
      expect(creates.indexOf('/a')).toBeLessThan(creates.indexOf('/a/x.txt'));
    }

    // 3. The root's directory block is garbage: no names yet, one report; rewritten, they all come back.
    {
      const b = Buffer.from(pristine);
      garble(b, clean.nodes.get(2)!.owned[0]! * BS, BS); // ok: the root owns its block
      writeFileSync(img, b);
      const disk = new Disk(img);
      const { inferencer: inf, events } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      expect(events.filter((e) => e.kind === 'corrupt').map((e) => e.path)).toEqual(['/']);
      expect(inf.tree().map((e) => e.path)).toEqual(['/']);
      await disk.change(inf, () => writeFileSync(img, pristine));
      expect(inf.tree()).toEqual(clean.tree());
    }

    // 5. A directory's inode is garbage: it and its subtree are left out (reported); once the guest writes the
    //    inode again they come in as creates, with no change to the directory naming it.
    {
      const b = Buffer.from(pristine);
      const at = await new Disk(img).inodeOffset(ino('/a'));
      garble(b, at, 256);
      writeFileSync(img, b);
      const disk = new Disk(img);
      const { inferencer: inf, events } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      expect(events.filter((e) => e.kind === 'corrupt').length).toBeGreaterThanOrEqual(1);
      expect(inf.tree().map((e) => e.path)).toEqual(whole.filter((p) => p !== '/a' && p !== '/a/x.txt'));
      // Across a checkpoint, too.
      const restored = await DiskInferencer.restore(inf.checkpoint(), disk.fetcher(), { disk: 'hostile' });
      const healed = await disk.change(restored, () => writeFileSync(img, pristine));
      expect(healed.filter((e) => e.kind === 'create').map((e) => e.path)).toEqual(['/a', '/a/x.txt']);
      expect(restored.tree()).toEqual(clean.tree());
    }

    // 4. A journalled disk whose journal superblock is garbage: crawled whole, reported, and followed at flushes.
    {
      const jimg = join(work, 'crawl-j.img');
      await exec('mkfs.ext4', ['-q', '-F', '-b', String(BS), '-N', '512', '-d', src, jimg, '16M']);
      const { stdout } = await exec('debugfs', ['-R', 'bmap <8> 0', jimg]);
      const jsb = Number(stdout.trim());
      expect(jsb).toBeGreaterThan(0);
      const b = readFileSync(jimg);
      const pristineJ = Buffer.from(b);
      garble(b, jsb * BS, BS);
      writeFileSync(jimg, b);
      const disk = new Disk(jimg);
      const { inferencer: inf, events } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
      expect(events.filter((e) => e.kind === 'corrupt').map((e) => e.message ?? '').join('\n')).toMatch(/^journal: .*followed without it/m);
      expect(inf.tree().map((e) => e.path)).toEqual(whole);
      const next = await disk.change(inf, async () => {
        writeFileSync(join(work, 'late.txt'), 'late\n');
        await disk.debugfs(`write ${join(work, 'late.txt')} /a/late.txt`);
      });
      expect(next.map((e) => `${e.kind} ${e.path}`)).toContain('create /a/late.txt');
      expect(inf.resyncReason).toBeUndefined();
      // The journal superblock is written again (or was only not written yet: an image still being copied over
      // the disk): the engine asks to be crawled again, and the new crawl follows the journal's commits.
      await disk.change(inf, () => {
        const now = readFileSync(jimg);
        pristineJ.copy(now, jsb * BS, jsb * BS, jsb * BS + BS);
        writeFileSync(jimg, now);
      });
      expect(inf.resyncReason).toMatch(/journal superblock reads back/);
      const again = (await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, disk.seq, new Date())).inferencer;
      expect(again.resyncReason).toBeUndefined();
      const journalled = await disk.changeJournaled(again, async () => {
        writeFileSync(join(work, 'later.txt'), 'later\n');
        await disk.debugfs(`write ${join(work, 'later.txt')} /a/later.txt`);
      });
      expect(journalled.map((e) => `${e.kind} ${e.path}`)).toContain('create /a/later.txt');
    }
  }, 120_000);

  it.each([
    ['a journal (committed in a jbd2 transaction)', true],
    ['no journal (at flushes)', false],
  ])('a new file whose inode is garbage stays out of the tree until the guest writes the inode again, then is created: %s', async (_name, journalled) => {
    const src = join(work, `src-late-${journalled}`);
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd/one.txt'), 'one\n');
    const img = join(work, `late-${journalled}.img`);
    await exec('mkfs.ext4', ['-q', '-F', ...(journalled ? [] : ['-O', '^has_journal']), '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
    const disk = new Disk(img);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
    const change = (edit: () => Promise<void> | void) => (journalled ? disk.changeJournaled(inf, edit) : disk.change(inf, edit));
    let good = Buffer.alloc(0);
    let at = 0;
    const made = await change(async () => {
      writeFileSync(join(work, 'two.txt'), 'two\n');
      await disk.debugfs(`write ${join(work, 'two.txt')} /d/two.txt`);
      const { stdout } = await exec('debugfs', ['-R', 'stat /d/two.txt', img]);
      const ino = Number(/Inode: (\d+)/.exec(stdout)?.[1]);
      at = await disk.inodeOffset(ino);
      const b = readFileSync(img);
      good = Buffer.from(b.subarray(at, at + 256));
      for (let i = 0; i < 256; i++) b[at + i] = (i * 31 + 5) & 0xff;
      writeFileSync(img, b);
    });
    expect(made.filter((e) => e.kind === 'corrupt').length).toBeGreaterThanOrEqual(1);
    expect(inf.tree().map((e) => e.path)).not.toContain('/d/two.txt');
    // Business as usual in the meantime, and across a checkpoint.
    const other = await change(async () => {
      writeFileSync(join(work, 'three.txt'), 'three\n');
      await disk.debugfs(`write ${join(work, 'three.txt')} /three.txt`);
    });
    expect(other.map((e) => `${e.kind} ${e.path}`)).toContain('create /three.txt');
    const restored = await DiskInferencer.restore(inf.checkpoint(), disk.fetcher(), { disk: 'hostile' });
    // The guest's kernel writes the inode out again: nothing else changes, yet the file comes in.
    const healed = await (journalled ? disk.changeJournaled(restored, repair) : disk.change(restored, repair));
    function repair() {
      const b = readFileSync(img);
      good.copy(b, at);
      writeFileSync(img, b);
    }
    expect(healed.map((e) => `${e.kind} ${e.path}`)).toContain('create /d/two.txt');
    expect(restored.tree().map((e) => e.path)).toContain('/d/two.txt');
  }, 60_000);

  it('a name for the root, or a directory moved into its own subtree, is reported and makes no cycle', async () => {
    const src = join(work, 'src-cycle');
    mkdirSync(join(src, 'a/b'), { recursive: true });
    writeFileSync(join(src, 'a/b/f.txt'), 'f\n');
    const img = join(work, 'cycle.img');
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
    const disk = new Disk(img);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'hostile' }, 0, new Date());
    const before = inf.tree();

    // An entry naming the root: the tree would contain itself (and grew without bound until the path limit).
    const root = await disk.change(inf, () => disk.debugfs('ln <2> /a/b/up').then(() => undefined));
    expect(root.filter((e) => e.kind === 'corrupt').map((e) => e.corruptKind)).toContain('DirectoryLink');
    expect(inf.tree()).toEqual(before);

    // /a renamed to /a/b/a: a cycle cut off from the root. The kernel's view has no /a any more (fsck would
    // put it in lost+found); nor has the engine's, which reports the name it refused.
    const moved = await disk.change(inf, async () => {
      await disk.debugfs('ln /a /a/b/a');
      await disk.debugfs('unlink /a');
    });
    expect(moved.filter((e) => e.kind === 'corrupt').map((e) => e.corruptKind)).toContain('DirectoryLink');
    expect(moved.filter((e) => e.kind !== 'corrupt').map((e) => `${e.kind} ${e.path}`)).toEqual(['delete /a']);
    expect(inf.tree().map((e) => e.path)).toEqual(['/', '/lost+found']);
    expect(inf.nodes.size).toBe(2);
  }, 120_000);
});
