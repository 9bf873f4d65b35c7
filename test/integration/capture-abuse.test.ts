/**
 * 1,000 hostile NBD sessions against a real `gammaray capture` process (random bytes, truncated headers, huge
 * lengths, unknown options and commands, reads past the end, stalls, a second writer on a busy disk) while
 * qemu-io keeps writing and verifying its own disk: the capture stays up and the well-behaved client is
 * unaffected.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostileSession } from '../../packages/nbd/test/hostile.js';
import { startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
const SESSIONS = 1000;
const CONCURRENCY = 32;
let work: string;
let nats: NatsServer;
let cap: CaptureProcess;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-capture-abuse-'));
  nats = await startNatsServer({ jetstream: true });
  for (const name of ['good', 'scratch', 'other']) {
    writeFileSync(join(work, `${name}.img`), '');
    truncateSync(join(work, `${name}.img`), 16 * 1024 * 1024);
  }
  cap = await startCapture(nats.url, { good: join(work, 'good.img'), scratch: join(work, 'scratch.img'), other: join(work, 'other.img') });
}, 60_000);

afterAll(async () => {
  await cap?.stop();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

it(`survives ${SESSIONS} hostile sessions while qemu-io writes and verifies its own disk`, async () => {
  let done = false;
  let verified = 0;
  const wellBehaved = (async () => {
    while (!done) {
      const p = 1 + (verified % 250);
      const { stdout } = await exec('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', `write -P ${p} 1M 256k`, '-c', `read -P ${p} 1M 256k`, '-c', 'flush', cap.url('good')]);
      expect(stdout).not.toMatch(/Pattern verification failed|error/i);
      verified++;
    }
  })();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < SESSIONS) {
        next++;
        await hostileSession(cap.port, 'other');
      }
    }),
  );
  done = true;
  await wellBehaved;
  expect(verified).toBeGreaterThan(3);
  expect(cap.child.exitCode).toBeNull();
  // Still serving: a fresh client works on every disk.
  for (const disk of ['good', 'scratch', 'other']) {
    const { stdout } = await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 64k', '-c', 'read -P 7 0 64k', cap.url(disk)]);
    expect(stdout, disk).not.toMatch(/Pattern verification failed|error/i);
  }
  expect(await cap.stop()).toBe(0);
}, 240_000);
