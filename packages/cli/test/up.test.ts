import { mkdtempSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureVolumeArgs, diskIdFromImage, findNatsServer, planDisks, planVolumes } from '../src/commands/up.js';
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
    expect(() => planDisks([join(dir, 'adir')], [])).toThrow(/not a regular file/);
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
