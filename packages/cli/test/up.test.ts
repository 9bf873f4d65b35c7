import { mkdtempSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { diskIdFromImage, findNatsServer, planDisks } from '../src/commands/up.js';
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
