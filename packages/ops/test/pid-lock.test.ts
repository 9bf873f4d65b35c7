import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PidLock, readHolder } from '../src/pid-lock.js';

const dir = mkdtempSync(join(tmpdir(), 'gammaray-pidlock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const busy = (h: { pid: number }) => new Error(`busy ${h.pid}`);

describe('PidLock', () => {
  it('is held by a live process, taken over from a dead one, and released only by its holder', () => {
    const path = join(dir, 'a.lock');
    const lock = PidLock.acquire(path, { what: 'test' }, busy);
    expect(readHolder(path)).toMatchObject({ pid: process.pid, what: 'test' });
    expect(() => PidLock.acquire(path, {}, busy)).toThrow(`busy ${process.pid}`);
    lock.release();
    expect(existsSync(path)).toBe(false);
    // A holder that has exited: its pid is not running (or runs another process, started later).
    const dead = spawnSync('true').pid!; // ok: spawned and reaped
    writeFileSync(path, JSON.stringify({ pid: dead, started: '1' }));
    const again = PidLock.acquire(path, {}, busy);
    expect(readHolder(path)?.pid).toBe(process.pid);
    // Another holder's file (written after ours) is not removed by our release.
    writeFileSync(path, JSON.stringify({ pid: dead }));
    again.release();
    expect(readFileSync(path, 'utf8')).toContain(String(dead));
  });

  it('waits for a lock file being written (empty, fresh) instead of taking it for stale; an old empty one is stale', () => {
    const path = join(dir, 'b.lock');
    writeFileSync(path, '');
    const t0 = Date.now();
    expect(() => PidLock.acquire(path, {}, busy)).toThrow('busy 0');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(path, old, old);
    PidLock.acquire(path, {}, busy).release();
  });
});
