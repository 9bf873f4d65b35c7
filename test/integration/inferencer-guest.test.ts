/**
 * The inference engine against real guests: a workload runs in a real Linux guest on a disk served by the
 * real capture; the recorded write stream is replayed through DiskInferencer (bootstrapped from the starting
 * image), and the inferred tree must equal the kernel's view of the final image (loop mount, read-only), and so
 * must the tree a consumer gets by folding the published events over the snapshot.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brief, checkAgainstKernel, fingerprint, replay, replayWithRestarts } from '../support/guest-replay.js';
import { recordGuestWorkload } from '../support/guest-stream.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
let work: string;
let nats: NatsServer;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-infer-guest-'));
  nats = await startNatsServer({ jetstream: true });
}, 60_000);

afterAll(async () => {
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('inference from a real guest', () => {
  it('file operations: create, append, overwrite, truncate, extend, sparse, mkdir/rmdir, renames, links, symlinks, chmod/chown/touch', async () => {
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'ops',
      files: { 'a.txt': 'alpha\n', 'dir/b.txt': 'bravo\n', 'keep/x.txt': 'x\n', 'victim.txt': 'victim\n', 'shrink.bin': 'z'.repeat(20000) },
      workload: [
        'set -e',
        'echo hello > new.txt',
        'echo more >> a.txt',
        'dd if=/dev/urandom of=over.bin bs=4k count=4 2>/dev/null',
        'sync',
        'printf XXXX | dd of=over.bin bs=1 seek=4100 conv=notrunc 2>/dev/null',
        'truncate -s 5000 shrink.bin',
        'truncate -s 1000000 sparse.bin',
        'printf sparse | dd of=sparse.bin bs=1 seek=409600 conv=notrunc 2>/dev/null',
        'mkdir -p d1/d2/d3',
        'rmdir d1/d2/d3',
        'mv new.txt renamed.txt',
        'mv renamed.txt keep/',
        'echo target > t1',
        'mv t1 victim.txt',
        'ln dir/b.txt hard.txt',
        'ln hard.txt hard2.txt',
        'rm hard2.txt',
        'ln -s dir/b.txt sym',
        'ln -s /a/very/long/target/that/does/not/fit/in/the/inode/itself/because/it/is/longer/than/sixty/bytes longsym',
        'chmod 600 a.txt',
        'setfattr -n user.color -v blue a.txt',
        'setfattr -n user.gone -v soon keep/x.txt',
        'chown 1000:1000 dir/b.txt',
        'touch -d "2001-02-03 04:05:06" keep/x.txt',
        'rm -r dir2 2>/dev/null || true',
        'mkdir dir2 && echo 1 > dir2/one && echo 2 > dir2/two',
        'sync',
        'rm -r dir2',
        'mv keep moved',
        'setfattr -x user.gone moved/x.txt',
        'sync',
      ].join('\n'),
    });
    const r = await replay(rec, 'ops');
    // Checkpointing and restoring between any two records changes nothing downstream, however far ahead of the
    // checkpoint the capture's image is when the restored engine reads blocks (a live guest keeps writing).
    for (const every of [1, 3]) {
      for (const ahead of [0, 4, Infinity]) expect(fingerprint(await replayWithRestarts(rec, 'ops', every, ahead)), `every ${every}, ahead ${ahead}`).toEqual(fingerprint(r.events));
      expect(fingerprint(await replayWithRestarts(rec, 'ops', every, Infinity, true)), 'deltas').toEqual(fingerprint(r.events));
    }
    expect(r.events[0]!.kind).toBe('snapshot'); // ok: bootstrap emits it first
    expect(r.events.filter((e) => e.kind === 'corrupt'), brief(r.events).join('\n')).toEqual([]);
    if (process.env.GAMMARAY_DEBUG_EVENTS) console.log(brief(r.events).join('\n'));
    await checkAgainstKernel(rec, r);
  }, 240_000);

  it('each step of a scripted workload gives exactly its events, and nothing spurious', async () => {
    const steps: [string, string[]][] = [
      ['echo hello > f1', ['create /f1', 'write /f1 @0+6']],
      ['echo world >> f1', ['write /f1 @6+6']],
      ['mv f1 f2', ['rename /f2 <- /f1']],
      ['mkdir d', ['create /d']],
      ['mv f2 d/f3', ['rename /d/f3 <- /f2']],
      ['ln d/f3 l1', ['link /l1']],
      ['rm l1', ['unlink /l1']],
      ['chmod 640 d/f3', ['attr /d/f3 mode']],
      ['setfattr -n user.k -v v1 d/f3', ['attr /d/f3 xattr.user.k']],
      ['setfattr -x user.k d/f3', ['attr /d/f3 xattr.user.k']],
      ['ln -s d/f3 s1', ['create /s1']],
      ['truncate -s 3 d/f3', ['truncate /d/f3 12->3']],
      ['rm d/f3', ['delete /d/f3']],
      ['rmdir d', ['delete /d']],
      ['rm s1', ['delete /s1']],
    ];
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'steps',
      workload: ['set -e', 'sync', ...steps.map(([cmd]) => `${cmd}\nsync`)].join('\n'),
    });
    const r = await replay(rec, 'steps');
    const got = brief(r.events.filter((e) => e.kind !== 'snapshot'));
    if (process.env.GAMMARAY_DEBUG_EVENTS) console.log(got.join('\n'));
    expect(got).toEqual(steps.flatMap(([, ev]) => ev));
    for (const ahead of [0, 2, Infinity]) expect(fingerprint(await replayWithRestarts(rec, 'steps', 1, ahead)), `ahead ${ahead}`).toEqual(fingerprint(r.events));
    expect(fingerprint(await replayWithRestarts(rec, 'steps', 1, Infinity, true)), 'deltas').toEqual(fingerprint(r.events));
    await checkAgainstKernel(rec, r, 0);
  }, 240_000);

  it('inodes freed and allocated again in one commit, and names moved out of a directory removed in it', async () => {
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'reuse',
      workload: [
        'set -e',
        // The same name, the same inode number, another file (and a setuid bit): a delete and a create.
        'dd if=/dev/urandom of=y bs=1000 count=9 2>/dev/null',
        'echo a > x',
        'sync',
        'rm y; echo evil > y; chmod 4755 y',
        'rm x; echo b > x',
        'sync',
        // A tree removed, its inodes taken by new files and directories in the same commit: every delete.
        'mkdir -p t/a/b/c t/a/d; echo x > t/a/b/c/f; echo y > t/a/g; echo z > t/a/d/h',
        'sync',
        'rm -rf t/a; mkdir t/n; mkdir t/n/m; echo new > t/n/m/k; echo new2 > t/n/l',
        'sync',
        // A file moved out of a directory that is then removed (what an installer does with its temp dir).
        'mkdir -p u/p/q; echo keep > u/p/q/x; echo gone > u/p/z',
        'sync',
        'mv u/p/q/x u/x; rm -rf u/p; mkdir u/r; echo other > u/r/w',
        'sync',
        // A name with an invalid UTF-8 byte, and a decoy that spells its escape: neither hides the other.
        'mkdir h; echo secret > "h/s$(printf \'\\377\')"',
        'sync',
        "echo decoy > 'h/s\\xff'",
        'sync',
        'echo more >> "h/s$(printf \'\\377\')"',
        'sync',
        // Swaps and a three-way rotation in one commit (exchanges), and a rename into a name another one leaves.
        'mkdir -p w/da w/db; echo A > w/da/f; echo B > w/db/f; echo sa > w/sa; echo sb > w/sb',
        'echo c1 > w/c1; echo c2 > w/c2; echo c3 > w/c3; echo k1 > w/k1; echo k2 > w/k2',
        'sync',
        'cd w; mv da tmpd; mv db da; mv tmpd db; mv sa tmps; mv sb sa; mv tmps sb',
        'mv c1 tmpc; mv c2 c1; mv c3 c2; mv tmpc c3; mv k1 k3; mv k2 k1; cd ..',
        'sync',
        // Names moved out of directories removed in the same commit: into a new directory, and over a name.
        'mkdir -p m/old m/etc m/stage; echo 1 > m/old/a; echo 2 > m/old/b; echo orig > m/etc/foo; echo new > m/stage/foo; echo j > m/stage/junk',
        'sync',
        'mkdir m/new; mv m/old/* m/new/; rmdir m/old; mv m/stage/foo m/etc/foo; rm -rf m/stage',
        'sync',
        // A write past end of file into its block and the next ones: the old end-of-file block's new bytes too.
        'printf "%0200d" 0 > grow',
        'sync',
        'head -c 8000 /dev/zero | tr "\\0" b | dd of=grow bs=1000 count=8 seek=1 conv=notrunc 2>/dev/null',
        'sync',
      ].join('\n'),
    });
    const r = await replay(rec, 'reuse');
    if (process.env.GAMMARAY_DEBUG_EVENTS) console.log(brief(r.events).join('\n'));
    expect(r.events.filter((e) => e.kind === 'corrupt'), brief(r.events).join('\n')).toEqual([]);
    const got = brief(r.events.filter((e) => e.kind !== 'snapshot' && e.kind !== 'attr' && e.kind !== 'write'));
    for (const want of ['delete /y', 'create /y', 'delete /x', 'create /x', 'delete /t/a/b/c/f', 'delete /t/a/b/c', 'delete /t/a/b', 'delete /t/a/g', 'delete /t/a/d/h', 'delete /t/a/d', 'delete /t/a', 'create /t/n/m/k', 'delete /u/p/z', 'delete /u/p/q', 'delete /u/p']) {
      expect(got, `${want}\n${got.join('\n')}`).toContain(want);
    }
    expect(got, got.join('\n')).toContain('create /h/s\\x5cxff');
    expect(got.filter((e) => e.startsWith('delete /h/')), got.join('\n')).toEqual([]);
    expect(brief(r.events.filter((e) => e.kind === 'write' && e.path === '/h/s\\xff')), brief(r.events).join('\n')).toEqual(['write /h/s\\xff @0+7', 'write /h/s\\xff @7+5']);
    const grow = r.events.filter((e) => e.kind === 'write' && e.path === '/grow').map((e) => `${e.offset}+${e.length}`);
    expect(grow[0]).toBe('0+200');
    expect(grow.slice(1).join(' '), grow.join(' ')).toMatch(/^1000\+/);
    const exchanges = r.events.filter((e) => e.kind === 'rename' && e.exchange).map((e) => `${e.path} <-> ${e.from}`);
    expect(exchanges.length, exchanges.join('\n')).toBe(4);
    const k3 = got.indexOf('rename /w/k3 <- /w/k1');
    expect(k3, got.join('\n')).toBeGreaterThanOrEqual(0);
    expect(k3).toBeLessThan(got.indexOf('rename /w/k1 <- /w/k2'));
    // The move comes before the removal of the directory it left, so that it can be applied.
    const moved = got.indexOf('rename /u/x <- /u/p/q/x');
    expect(moved, got.join('\n')).toBeGreaterThanOrEqual(0);
    expect(moved).toBeLessThan(got.indexOf('delete /u/p/q'));
    await checkAgainstKernel(rec, r);
  }, 240_000);

  it('2,000 files in one directory then half deleted, a 100 MiB file, writes with and without fsync', async () => {
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'bulk',
      sizeMiB: 256,
      workload: [
        'set -e',
        'mkdir many',
        'i=0; while [ $i -lt 2000 ]; do echo "file $i" > many/f$i; i=$((i+1)); done',
        'sync',
        'i=0; while [ $i -lt 2000 ]; do rm many/f$i; i=$((i+2)); done',
        'dd if=/dev/urandom of=big.bin bs=1M count=100 2>/dev/null',
        'echo synced > fsynced.txt && dd if=/dev/urandom of=fsynced.bin bs=4k count=3 conv=fsync 2>/dev/null',
        'echo unsynced > unsynced.txt',
      ].join('\n'),
      timeoutMs: 300_000,
    });
    const r = await replay(rec, 'bulk');
    expect(r.events.filter((e) => e.kind === 'corrupt')).toEqual([]);
    for (const ahead of [0, 25, Infinity]) expect(fingerprint(await replayWithRestarts(rec, 'bulk', 7, ahead)), `ahead ${ahead}`).toEqual(fingerprint(r.events));
    expect(fingerprint(await replayWithRestarts(rec, 'bulk', 21, Infinity, true)), 'deltas').toEqual(fingerprint(r.events));
    const creates = r.events.filter((e) => e.kind === 'create' && e.path.startsWith('/many/'));
    const deletes = r.events.filter((e) => e.kind === 'delete' && e.path.startsWith('/many/'));
    expect(creates.length).toBe(2000);
    expect(deletes.length).toBe(1000);
    const big = r.events.filter((e) => e.kind === 'write' && e.path === '/big.bin');
    if (process.env.GAMMARAY_DEBUG_EVENTS) {
      const spans = big.map((e) => [e.offset!, e.offset! + e.length!, e.seq, e.dataOmitted ? 'omitted' : 'data'] as const).sort((a, b) => a[0] - b[0]); // ok: writes carry offsets
      let at = 0;
      for (const s of spans) {
        if (s[0] !== at) console.log('GAP/OVERLAP at', at, 'next', s);
        at = Math.max(at, s[1]);
      }
      console.log('END', at, spans.length);
    }
    expect(big.reduce((n, e) => n + e.length!, 0)).toBe(100 * 1024 * 1024); // ok: writes carry length
    await checkAgainstKernel(rec, r, 1000);
  }, 400_000);

  it('ext2 (no journal): flushes are the consistency points', async () => {
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'ext2',
      mkfs: ['-t', 'ext2'],
      files: { 'old.txt': 'old\n', 'd/x': 'x\n' },
      workload: ['set -e', 'echo new > new.txt', 'mv old.txt older.txt', 'rm d/x', 'mkdir e', 'echo y > e/y', 'ln -s e/y link', 'sync'].join('\n'),
    });
    const r = await replay(rec, 'ext2');
    expect(r.inf.superblock.has.journal).toBe(false);
    for (const ahead of [0, 3, Infinity]) expect(fingerprint(await replayWithRestarts(rec, 'ext2', 1, ahead)), `ahead ${ahead}`).toEqual(fingerprint(r.events));
    expect(fingerprint(await replayWithRestarts(rec, 'ext2', 1, Infinity, true)), 'deltas').toEqual(fingerprint(r.events));
    const got = brief(r.events.filter((e) => e.kind !== 'snapshot' && e.kind !== 'attr' && e.kind !== 'write'));
    expect(got).toEqual(expect.arrayContaining(['create /new.txt', 'rename /older.txt <- /old.txt', 'delete /d/x', 'create /e', 'create /e/y', 'create /link']));
    await checkAgainstKernel(rec, r, 2);
  }, 240_000);

  it('a guest that writes garbage over its own inode table gets corrupt events; later changes still arrive', async () => {
    // Where the inode of /victim/v.txt lives, found on a throwaway image built the same way.
    const probe = await recordProbe();
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'hostile',
      files: PROBE_FILES,
      workload: ['set -e', `dd if=/dev/urandom of=/dev/vda bs=1024 seek=${probe.block} count=1 conv=notrunc 2>/dev/null`, 'sync', 'echo later > later.txt', 'sync'].join('\n'),
    });
    const r = await replay(rec, 'hostile');
    const kinds = r.events.map((e) => e.kind);
    expect(kinds).toContain('corrupt');
    expect(brief(r.events)).toContain('create /later.txt');
  }, 240_000);
});

const PROBE_FILES = { 'victim/v.txt': 'v\n', 'other.txt': 'o\n' };

/** The 1 KiB block holding /victim/v.txt's inode in an image built from PROBE_FILES (mkfs is deterministic in layout). */
async function recordProbe(): Promise<{ block: number }> {
  const src = join(work, 'probe.src');
  for (const [rel, content] of Object.entries(PROBE_FILES)) {
    mkdirSync(join(src, rel, '..'), { recursive: true });
    writeFileSync(join(src, rel), content);
  }
  const img = join(work, 'probe.img');
  await exec('mkfs.ext4', ['-q', '-F', '-d', src, img, '64M']);
  const { stdout } = await exec('debugfs', ['-R', 'imap /victim/v.txt', img]);
  const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(stdout);
  if (!m) throw new Error(`imap: ${stdout}`);
  return { block: Number(m[1]) }; // ok: matched
}

/**
 * The same workload on each file-system layout the guest's kernel mounts that mke2fs makes (besides the default:
 * 1 KiB blocks at this size, flex_bg, extents, journal): the inferred tree and the folded events equal the kernel's
 * view, and no `corrupt` event appears; and the same on the default layout in the data modes other than ordered.
 * Until 2026-11-27, 1 KiB blocks with bigalloc were unreadable (the descriptors were looked for in the
 * superblock's block), and data=writeback gave `corrupt` events and a wrong tree (a data block freed and made a
 * directory block in one transaction was read from its old home content).
 */
describe('inference on every layout', () => {
  const LAYOUTS: [string, string[]][] = [
    ['ext3', ['-t', 'ext3']],
    ['b4096', ['-b', '4096']],
    ['inline', ['-O', 'inline_data']],
    ['bigalloc4k', ['-b', '4096', '-O', 'bigalloc', '-C', '16384']],
    ['bigalloc1k', ['-O', 'bigalloc', '-C', '16384']],
    ['noflexbg', ['-O', '^flex_bg']],
    ['metabg', ['-O', 'meta_bg,^resize_inode']],
    ['nojournal', ['-O', '^has_journal']],
  ];
  /** Data modes, set as the file system's default mount options (mke2fs.conf `default_mntopts`): init mounts plainly. */
  const MODES: [string, string[], string][] = [
    ['data=journal', [], 'acl,user_xattr,journal_data'],
    ['data=writeback', [], 'acl,user_xattr,journal_data_writeback'],
    ['nodelalloc', [], 'acl,user_xattr,nodelalloc'],
  ];
  it.each([...LAYOUTS.map(([n, m]) => [n, m, ''] as [string, string[], string]), ...MODES])('%s: the tree and the folded events equal the kernel\'s view', async (name, mkfs, mntopts) => {
    const key = name.replace(/[^a-z0-9]+/g, '');
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: `lay-${key}`,
      mkfs,
      defaultMountOptions: mntopts,
      files: { 'a.txt': 'alpha\n', 'dir/b.txt': 'bravo\n', 'big.bin': 'q'.repeat(50000), 'small': 'tiny' },
      workload: [
        'set -e',
        // The options in effect (those from the superblock's defaults included), on one console line.
        'echo "OPTIONS $(tr "\\n" , < /proc/fs/ext4/vda/options)"',
        'echo hello > new.txt',
        'echo more >> a.txt',
        'dd if=/dev/urandom of=two.bin bs=64k count=32 2>/dev/null',
        'sync',
        'printf XXXX | dd of=two.bin bs=1 seek=70000 conv=notrunc 2>/dev/null',
        'truncate -s 5000 big.bin',
        'mkdir -p d1/d2 && echo z > d1/d2/z',
        'mv new.txt d1/renamed.txt',
        'ln dir/b.txt hard.txt',
        'ln -s dir/b.txt sym',
        'chmod 600 a.txt',
        'setfattr -n user.color -v blue a.txt',
        'echo more >> small',
        'mkdir many; i=0; while [ $i -lt 200 ]; do echo "file $i" > many/f$i; i=$((i+1)); done',
        'sync',
        'i=0; while [ $i -lt 200 ]; do rm many/f$i; i=$((i+2)); done',
        'rm -r d1/d2',
        'echo tail >> two.bin',
        'sync',
      ].join('\n'),
    });
    const options = /OPTIONS (\S*)/.exec(rec.guest.console)?.[1] ?? '';
    if (mntopts) expect(options.split(',')).toContain(mntopts.includes('journal_data_writeback') ? 'data=writeback' : mntopts.includes('journal_data') ? 'data=journal' : 'nodelalloc');
    const r = await replay(rec, `lay-${key}`);
    expect(r.events.filter((e) => e.kind === 'corrupt'), brief(r.events).join('\n')).toEqual([]);
    // big.bin is only truncated: no write event of it reaches past its new end-of-file block (with data=writeback
    // its freed blocks, reused as directory blocks in the same transaction, were once reported as its data).
    // Without a journal they still are: a write to a block the tree maps is reported at once, before the flush
    // that shows the block was freed (README, Known limits).
    if (r.inf.superblock.has.journal) {
      const bs = r.inf.superblock.blockSize;
      const past = r.events.filter((e) => e.kind === 'write' && e.path === '/big.bin' && e.offset! + e.length! > Math.ceil(5000 / bs) * bs); // ok: writes carry both
      expect(past.map((e) => `${e.offset}+${e.length}`)).toEqual([]);
    }
    await checkAgainstKernel(rec, r, 2);
  }, 240_000);
});
