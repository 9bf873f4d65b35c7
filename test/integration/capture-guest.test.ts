/**
 * A real Linux guest (QEMU TCG, test/guest) whose root disk is served by `gammaray capture`: what the guest
 * wrote is in the image, the writes stream replays to the same image, and stopping NATS while the guest writes
 * loses and duplicates nothing (writes wait; the guest carries on once NATS is back).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGuest } from '../guest/guest.js';
import { CLI, startCapture as startCaptureProcess } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { readRecords, replay, sha256 } from '../support/writes-stream.js';

const exec = promisify(execFile);

let work: string;
let nats: NatsServer;

async function startCapture(disk: string, image: string): Promise<{ url: string; logs(): string; stop(): Promise<number | null> }> {
  const cap = await startCaptureProcess(nats.url, { [disk]: image });
  return { url: cap.url(disk), logs: cap.logs, stop: cap.stop };
}

async function freshImage(name: string): Promise<{ image: string; start: string }> {
  const image = join(work, `${name}.img`);
  await exec('mkfs.ext4', ['-q', '-F', image, '64M']);
  const start = join(work, `${name}.start.img`);
  copyFileSync(image, start);
  return { image, start };
}

/** sha256 lines the guest printed: `<hash>  <path>`. */
function guestHashes(console: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of console.matchAll(/^([0-9a-f]{64}) {2}(\S+)\r?$/gm)) out.set(m[2]!, m[1]!); // ok: both groups always match
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-capture-guest-'));
  nats = await startNatsServer({ jetstream: true });
}, 60_000);

afterAll(async () => {
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a real guest on a captured disk', () => {
  it('what the guest writes is in the image, in gammaray ls --hash, and the stream replays to the same image', async () => {
    const { image, start } = await freshImage('guest1');
    const cap = await startCapture('guest1', image);
    const workload = [
      'set -e',
      'mkdir -p /mnt/root/dir',
      'dd if=/dev/urandom of=/mnt/root/dir/random.bin bs=64k count=16 2>/dev/null',
      'echo hello > /mnt/root/dir/a.txt',
      'mv /mnt/root/dir/a.txt /mnt/root/dir/b.txt',
      'echo gone > /mnt/root/dir/deleted.txt && rm /mnt/root/dir/deleted.txt',
      'for i in 1 2 3; do echo "line $i" >> /mnt/root/test.txt; sync; done',
      'cd /mnt && sha256sum root/dir/random.bin root/dir/b.txt root/test.txt',
    ].join('\n');
    const res = await runGuest({ nbd: cap.url, workload, timeoutMs: 90_000 });
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(0);
    expect(await cap.stop()).toBe(0);

    const records = await readRecords(nats.url, 'guest1');
    expect(records.length).toBeGreaterThan(5);
    expect(new Set(records.map((r) => r.msgId)).size).toBe(records.length);
    expect(sha256(replay(start, records))).toBe(sha256(readFileSync(image)));

    const { stdout } = await exec('node', [CLI, 'ls', image, '/root', '-R', '--json', '--hash']);
    const ours = new Map(stdout.trim().split('\n').map((l) => JSON.parse(l) as { path: string; sha256?: string }).map((e) => [e.path, e.sha256]));
    const hashes = guestHashes(res.console);
    expect(hashes.size).toBe(3);
    for (const [path, hash] of hashes) expect(ours.get(`/${path}`), path).toBe(hash);
    expect(ours.has('/root/dir/deleted.txt')).toBe(false);
    expect(ours.has('/root/dir/a.txt')).toBe(false);
  }, 180_000);

  it('stopping NATS while the guest writes loses and duplicates nothing: writes wait, then resume', async () => {
    const { image, start } = await freshImage('guest2');
    const cap = await startCapture('guest2', image);
    const workload = [
      'set -e',
      'mkdir -p /mnt/log',
      'echo WORKLOAD-WRITING',
      'i=0; while [ $i -lt 16 ]; do i=$((i+1)); echo "entry $i $(date +%s)" >> /mnt/log/app.log; dd if=/dev/urandom of=/mnt/log/blob$i bs=16k count=4 2>/dev/null; sync; sleep 0.5; done',
      'cd /mnt && sha256sum log/app.log log/blob16',
    ].join('\n');
    let writing: () => void = () => undefined;
    const started = new Promise<void>((r) => (writing = r));
    let seen = '';
    const guest = runGuest({
      nbd: cap.url,
      workload,
      timeoutMs: 150_000,
      onConsole: (t) => {
        seen += t;
        if (seen.includes('WORKLOAD-WRITING')) writing();
      },
    });
    // Once the guest is in its write loop, take NATS away for a few seconds.
    await Promise.race([started, guest]);
    await new Promise((r) => setTimeout(r, 1500));
    await nats.stop({ keepStore: true });
    await new Promise((r) => setTimeout(r, 4_000));
    await nats.restart();
    const res = await guest;
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(0);
    expect(await cap.stop()).toBe(0);
    // The outage really hit writes in flight: the capture retried publishes (with the same msg ids).
    expect(cap.logs()).toContain('publish failed; retrying with the same msg id');

    const records = await readRecords(nats.url, 'guest2');
    expect(new Set(records.map((r) => r.msgId)).size).toBe(records.length);
    expect(sha256(replay(start, records))).toBe(sha256(readFileSync(image)));
    const { stdout } = await exec('node', [CLI, 'ls', image, '/log/app.log', '--json', '--hash']);
    expect((JSON.parse(stdout) as { sha256: string }).sha256).toBe(guestHashes(res.console).get('log/app.log'));
  }, 240_000);
});
