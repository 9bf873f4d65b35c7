import { spawn } from 'node:child_process';
import { existsSync, linkSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskBusyError, ImageLock, imageLockHolder } from '../src/index.js';

const work = mkdtempSync(join(tmpdir(), 'gammaray-image-lock-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('ImageLock', () => {
  it('refuses an image a live process holds (also through a hard link), takes over a dead holder, and releases only its own', async () => {
    const dir = join(work, 'locks');
    const image = join(work, 'disk.img');
    writeFileSync(image, Buffer.alloc(4096));
    linkSync(image, join(work, 'alias.img'));
    const st = statSync(image);
    // Another live process holds it (a lock file naming a sleeping child).
    const other = spawn('sleep', ['30']);
    await new Promise((r) => other.once('spawn', r));
    const path = join(dir, `${st.dev}-${st.ino}.lock`);
    ImageLock.acquire(st, image, 'd1', dir)!.release(); // makes the directory
    writeFileSync(path, JSON.stringify({ pid: other.pid, image, disk: 'theirs' }));
    expect(() => ImageLock.acquire(statSync(join(work, 'alias.img')), join(work, 'alias.img'), 'd2', dir)).toThrow(DiskBusyError);
    expect(() => ImageLock.acquire(st, image, 'd2', dir)).toThrow(/already served on this machine by process \d+ \(disk theirs/);
    // It dies (kill -9): the lock is stale and taken over.
    other.kill('SIGKILL');
    await new Promise((r) => other.once('exit', r));
    const mine = ImageLock.acquire(st, image, 'd2', dir)!;
    expect(existsSync(path)).toBe(true);
    // This process holds it now: a second open here is refused too.
    expect(() => ImageLock.acquire(st, image, 'd3', dir)).toThrow(DiskBusyError);
    mine.release();
    expect(readdirSync(dir)).toEqual([]);
    // A half-written lock file counts as stale once it is a few seconds old (its writer died); a fresh one may be
    // a taker about to write its pid (see PidLock).
    writeFileSync(path, '{"pid":');
    const past = (Date.now() - 60_000) / 1000;
    utimesSync(path, past, past);
    ImageLock.acquire(st, image, 'd4', dir)!.release();
    // Releasing does not remove a successor's lock.
    const a = ImageLock.acquire(st, image, 'd5', dir)!;
    writeFileSync(path, JSON.stringify({ pid: process.pid, image, disk: 'successor' }));
    a.release();
    expect(existsSync(path)).toBe(true);
  });

  it('gives no lock (and no error) when the lock directory cannot be made', () => {
    const file = join(work, 'not-a-dir');
    writeFileSync(file, '');
    const image = join(work, 'other.img');
    writeFileSync(image, Buffer.alloc(512));
    expect(ImageLock.acquire(statSync(image), image, 'd', join(file, 'locks'))).toBeUndefined();
  });
});

describe('imageLockHolder', () => {
  it('names the live holder of an image (also through a hard link), and none once it is released', () => {
    const dir = join(work, 'holder-locks');
    const image = join(work, 'held.img');
    writeFileSync(image, Buffer.alloc(4096));
    linkSync(image, join(work, 'held-alias.img'));
    expect(imageLockHolder(statSync(image), dir)).toBeUndefined();
    const lock = ImageLock.acquire(statSync(image), image, 'vm1', dir)!;
    expect(imageLockHolder(statSync(join(work, 'held-alias.img')), dir)).toMatchObject({ pid: process.pid, image, disk: 'vm1' });
    lock.release();
    expect(imageLockHolder(statSync(image), dir)).toBeUndefined();
  });
});
