import { createWriteStream, mkdtempSync, rmSync, statSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageLock } from '@gammaray/service-capture';
import { Child, captureVolumeArgs, checkImagesFree, checkMountPoint, diskIdFromImage, findNatsServer, howEnded, outputTail, planDisks, planVolumes } from '../src/commands/up.js';
import { UserError } from '../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'gammaray-up-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const image = (name: string): string => {
  const p = join(dir, name);
  writeFileSync(p, Buffer.alloc(4096));
  return p;
};

describe('gammaray up: planning', () => {
  it('derives disk ids from image names: lowercase, other characters as "-", extension dropped', () => {
    expect(diskIdFromImage('/x/Web Server.img')).toBe('web-server');
    expect(diskIdFromImage('db_01.raw')).toBe('db_01');
    expect(diskIdFromImage('...')).toBe('disk');
    expect(diskIdFromImage(`${'a'.repeat(100)}.img`)).toHaveLength(64);
  });

  it('takes --disk ids in image order and the names for the rest', () => {
    const a = image('alpha.img');
    const b = image('beta.img');
    expect(planDisks([a, b], ['vm1'])).toEqual([
      { id: 'vm1', image: a },
      { id: 'beta', image: b },
    ]);
  });

  it('refuses what cannot work, saying what to do', () => {
    const a = image('same.img');
    expect(() => planDisks([], [])).toThrow(/pass --image FILE/);
    expect(() => planDisks([a], ['x', 'y'])).toThrow(UserError);
    expect(() => planDisks([a], ['Bad Id'])).toThrow(/not valid/);
    expect(() => planDisks([a, a], [])).toThrow(/used twice/);
    expect(() => planDisks([join(dir, 'missing.img')], [])).toThrow(/does not exist/);
    mkdirSync(join(dir, 'adir'));
    expect(() => planDisks([join(dir, 'adir')], [])).toThrow(/is not a regular file or block device: pass --image FILE, a raw disk image/);
  });

  it('refuses an image another capture on this machine serves, before starting anything', async () => {
    const a = image('served.img');
    const b = image('free.img');
    const locks = join(dir, 'locks');
    const env = { GAMMARAY_LOCK_DIR: locks };
    await expect(checkImagesFree([{ id: 'a', image: a }, { id: 'b', image: b }], env)).resolves.toBeUndefined();
    const lock = ImageLock.acquire(statSync(a), a, 'vm7', locks)!; // ok: the lock dir is usable
    try {
      await expect(checkImagesFree([{ id: 'b', image: b }, { id: 'a', image: a }], env)).rejects.toThrow(
        new UserError(`image ${a} is already served on this machine by process ${process.pid} as disk vm7 (a gammaray capture or up): two writers would corrupt it; stop that one first, or serve a copy of the image`),
      );
    } finally {
      lock.release();
    }
    await expect(checkImagesFree([{ id: 'a', image: a }], env)).resolves.toBeUndefined();
  });

  it('refuses a --mount that is a file, a mount point or a non-empty directory, saying what to do', () => {
    expect(() => checkMountPoint(join(dir, 'new', 'mnt'))).not.toThrow();
    mkdirSync(join(dir, 'empty'));
    expect(() => checkMountPoint(join(dir, 'empty'))).not.toThrow();
    expect(() => checkMountPoint(image('afile'))).toThrow(/mount point .*afile is not a directory: pass --mount DIR, an empty directory/);
    expect(() => checkMountPoint('/proc')).toThrow(/mount point \/proc is already in use: proc proc is mounted there; unmount it first \(fusermount -u \/proc, or umount \/proc\), or pass another --mount DIR/);
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full', 'x'), '');
    expect(() => checkMountPoint(join(dir, 'full'))).toThrow(/mount point .*full is not empty \(FUSE mounts only on an empty directory\): pass --mount DIR/);
  });

  it('adds --partition and --volume to the disks and hands them to the capture as its own flags', () => {
    const disks = [
      { id: 'vm1', image: '/i/vm1.img' },
      { id: 'vm2', image: '/i/vm2.img' },
    ];
    const planned = planVolumes(disks, ['vm2=3', 'vm1=0'], ['vm2-boot=vm2:2', 'vm2-efi=vm2:1']);
    expect(planned).toEqual([
      { id: 'vm1', image: '/i/vm1.img', partition: 0, volumes: [] },
      { id: 'vm2', image: '/i/vm2.img', partition: 3, volumes: [{ id: 'vm2-boot', partition: 2 }, { id: 'vm2-efi', partition: 1 }] },
    ]);
    expect(captureVolumeArgs(planned)).toEqual(['--partition', 'vm1=0', '--partition', 'vm2=3', '--volume', 'vm2-boot=vm2:2', '--volume', 'vm2-efi=vm2:1']);
    expect(captureVolumeArgs(planVolumes(disks))).toEqual([]);
  });

  it('refuses --partition and --volume that name no disk, repeat an id or are malformed', () => {
    const disks = [{ id: 'vm1', image: '/i/vm1.img' }];
    const refused = (p: string[], v: string[]) => {
      try {
        planVolumes(disks, p, v);
      } catch (err) {
        expect(err).toBeInstanceOf(UserError);
        return (err as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify([p, v])}`);
    };
    expect(refused(['vm1'], [])).toMatch(/--partition must be ID=N/);
    expect(refused(['vm1=4097'], [])).toMatch(/--partition must be ID=N/);
    expect(refused(['vm2=1'], [])).toBe("--partition vm2=1 names disk vm2, which is not one of this up's disks (vm1): use the id of an --image (its --disk, or its file name)");
    expect(refused(['vm1=1', 'vm1=2'], [])).toMatch(/--partition vm1 is given twice/);
    expect(refused([], ['boot=vm1:0'])).toMatch(/--volume must be VOLUME=ID:N/);
    expect(refused([], ['boot=vm1'])).toMatch(/--volume must be VOLUME=ID:N/);
    expect(refused([], ['vm1=vm1:2'])).toMatch(/vm1 is already a disk or volume id/);
    expect(refused([], ['b=vm1:2', 'b=vm1:3'])).toMatch(/b is already a disk or volume id/);
    expect(refused([], ['b=vm9:2'])).toMatch(/names disk vm9/);
  });

  it('finds nats-server from GAMMARAY_NATS_SERVER or PATH, and reports none when there is none', () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const fake = join(bin, 'nats-server');
    writeFileSync(fake, '#!/bin/sh\n');
    chmodSync(fake, 0o755);
    expect(findNatsServer({ PATH: bin })).toBe(fake);
    expect(findNatsServer({ GAMMARAY_NATS_SERVER: fake })).toBe(fake);
    expect(findNatsServer({ GAMMARAY_NATS_SERVER: '/nonexistent/nats-server' })).toBeUndefined();
    const found = findNatsServer({ PATH: join(dir, 'empty') });
    // /usr/sbin is always searched; on a machine without nats-server there it is undefined.
    if (found !== undefined) expect(found).toMatch(/\/nats-server$/);
  });
});

describe('gammaray up: a service that dies', () => {
  it('shows the end of its output from a line boundary', () => {
    expect(outputTail('one\ntwo\n', 100)).toBe('one\ntwo');
    expect(outputTail('{"msg":"starting inferencer"}\n{"msg":"x"}\n', 20)).toBe('{"msg":"x"}');
    expect(outputTail(`${'a'.repeat(50)}\n`, 20)).toBe(`...${'a'.repeat(20)}`);
  });

  it('says how it ended: its exit code or the signal that killed it', () => {
    expect(howEnded(3, null)).toBe('exit code 3');
    expect(howEnded(null, 'SIGKILL')).toBe('killed by signal SIGKILL');
  });

  it('keeps whole lines of a killed child and the signal that ended it', async () => {
    // 3000 lines of 10 characters, more than the 2000 kept, then kill -9 of itself.
    const c = new Child('svc', 'sh', ['-c', "seq -f 'line %04g' 0 2999; kill -9 $$"], createWriteStream(join(dir, 'svc.log')));
    await c.exited;
    expect(c.ended).toBe('killed by signal SIGKILL');
    const tail = c.tail().split('\n');
    expect(tail[0]).toMatch(/^line \d{4}$/);
    expect(tail[tail.length - 1]).toBe('line 2999');
  });
});
